"""Logistic-regression classifier on synthetic data, tracked with fleetdeck.

    python examples/train_classifier.py --epochs 20 --lr 0.5

Pure numpy, runs in a couple of seconds: argparse parameters, a connected config dict, per-epoch
train/validation loss and accuracy, a progress line, a confusion table, the final accuracy as a
single value and the weights as an artifact.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fleetdeck import Task


def make_data(rng: np.random.Generator, n: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    true_w = rng.normal(size=features)
    x = rng.normal(size=(n, features))
    y = (x @ true_w + rng.normal(scale=0.5, size=n) > 0).astype(np.float64)
    return x, y


def main() -> None:
    task = Task.init(project_name="examples", task_name="classifier")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-delay", type=float, default=0.05, help="seconds to sleep per epoch (demo pacing)")
    args = parser.parse_args()
    config = task.connect({"samples": 4000, "features": 20, "val_fraction": 0.2, "l2": 1e-3}, name="data")

    rng = np.random.default_rng(args.seed)
    x, y = make_data(rng, config["samples"], config["features"])
    split = int(len(x) * (1 - config["val_fraction"]))
    (x_train, y_train), (x_val, y_val) = (x[:split], y[:split]), (x[split:], y[split:])
    w = np.zeros(x.shape[1])
    logger = task.get_logger()

    def evaluate(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
        p = 1 / (1 + np.exp(-(xs @ w)))
        loss = -np.mean(ys * np.log(p + 1e-12) + (1 - ys) * np.log(1 - p + 1e-12))
        return float(loss), float(np.mean((p > 0.5) == ys))

    for epoch in range(args.epochs):
        p = 1 / (1 + np.exp(-(x_train @ w)))
        w -= args.lr * (x_train.T @ (p - y_train) / len(x_train) + config["l2"] * w)
        for name, (xs, ys) in (("train", (x_train, y_train)), ("val", (x_val, y_val))):
            loss, acc = evaluate(xs, ys)
            logger.report_scalar("loss", name, loss, epoch)
            logger.report_scalar("accuracy", name, acc, epoch)
        print(f"\repoch {epoch + 1}/{args.epochs} val_acc={acc:.3f}", end="", flush=True)
        time.sleep(args.step_delay)
    print()
    p_val = 1 / (1 + np.exp(-(x_val @ w))) > 0.5
    confusion = [["", "predicted 0", "predicted 1"],
                 ["actual 0", int(np.sum(~p_val & (y_val == 0))), int(np.sum(p_val & (y_val == 0)))],
                 ["actual 1", int(np.sum(~p_val & (y_val == 1))), int(np.sum(p_val & (y_val == 1)))]]
    logger.report_table("confusion", "val", args.epochs, table_plot=confusion)
    logger.report_single_value("val_accuracy", acc)
    task.upload_artifact("weights", w)
    print(f"final validation accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
