"""Polynomial regression with mini-batch SGD and a learning-rate schedule, tracked with fleetdeck.

    python examples/train_regression.py --degree 5 --batch-size 64

Reports per-step training loss, per-epoch validation error and learning rate, a fitted-curve plot
(Plotly JSON) and the configuration file it read.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fleetdeck import Task


def main() -> None:
    task = Task.init(project_name="examples", task_name="regression")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--step-delay", type=float, default=0.02, help="seconds to sleep per epoch (demo pacing)")
    args = parser.parse_args()
    schedule_file = Path(tempfile.mkdtemp()) / "schedule.json"
    schedule_file.write_text(json.dumps({"warmup_epochs": 2, "decay": 0.85}))
    schedule = json.loads(Path(task.connect_configuration(schedule_file, name="schedule")).read_text())

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=2000)
    y = np.sin(3 * x) + rng.normal(scale=0.1, size=x.size)
    features = np.vander(x, args.degree + 1, increasing=True)
    train, val = slice(0, 1600), slice(1600, None)
    w = np.zeros(args.degree + 1)
    logger = task.get_logger()
    step = 0
    for epoch in range(args.epochs):
        lr = args.lr * min(1.0, (epoch + 1) / schedule["warmup_epochs"]) * schedule["decay"] ** epoch
        order = rng.permutation(1600)
        for start in range(0, 1600, args.batch_size):
            idx = order[start:start + args.batch_size]
            err = features[train][idx] @ w - y[train][idx]
            w -= lr * features[train][idx].T @ err / len(idx)
            logger.report_scalar("loss", "train", float(np.mean(err ** 2)), step)
            step += 1
        val_mse = float(np.mean((features[val] @ w - y[val]) ** 2))
        logger.report_scalar("loss", "val", val_mse, step)
        logger.report_scalar("lr", "lr", lr, epoch)
        print(f"epoch {epoch} val_mse={val_mse:.4f} lr={lr:.4f}")
        time.sleep(args.step_delay)
    grid = np.linspace(-1, 1, 50)
    logger.report_plotly("fit", "val", {"data": [
        {"type": "scatter", "mode": "markers", "name": "data", "x": x[val][:200].tolist(), "y": y[val][:200].tolist()},
        {"type": "scatter", "mode": "lines", "name": "model", "x": grid.tolist(),
         "y": (np.vander(grid, args.degree + 1, increasing=True) @ w).tolist()}]}, args.epochs)
    logger.report_single_value("val_mse", val_mse)


if __name__ == "__main__":
    main()
