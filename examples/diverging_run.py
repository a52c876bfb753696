"""A run whose loss diverges and that crashes: what a failed task looks like in fleetdeck.

    python examples/diverging_run.py --lr 3.0

The learning rate is too high for this quadratic; the loss grows until it overflows and the script
raises, so the task ends ``failed`` with the traceback as its reason (the TUI's triage view).
"""

from __future__ import annotations

import argparse
import math

from fleetdeck import Task


def main() -> None:
    task = Task.init(project_name="examples", task_name="diverging")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    logger = task.get_logger()
    x = 1.0
    for step in range(args.steps):
        x -= args.lr * 2 * x  # gradient of x**2: diverges when lr > 1
        loss = x * x
        logger.report_scalar("loss", "train", loss, step)
        if not math.isfinite(loss) or loss > 1e30:
            raise FloatingPointError(f"loss diverged at step {step} (lr={args.lr})")
        print(f"step {step} loss {loss:.3e}")


if __name__ == "__main__":
    main()
