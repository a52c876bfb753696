"""``fleetdeck demo``: put a few real experiments on a server so a new user has something to look at.

The experiments are made the way users make them: the example training scripts in ``examples/``
run under ``Task.init`` (a small learning-rate sweep of the classifier, a regression, and a run
that diverges and fails), reporting to the server through the SDK. An installation without the
examples folder (a wheel) falls back to writing a similar sweep through the client.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import click

from fleetdeck.app.cli import make_client
from fleetdeck.client import Client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train_classifier.py", ("--lr", "0.05", "--step-delay", "0.02")),
    ("train_classifier.py", ("--lr", "0.3", "--step-delay", "0.02")),
    ("train_classifier.py", ("--lr", "1.5", "--step-delay", "0.02")),
    ("train_regression.py", ()),
    ("diverging_run.py", ()),
)
"""(example script, arguments) of each demo run."""
DEMO_PROJECT = "examples"


@click.command()
@click.option("--runs", default=len(RUNS), show_default=True, type=click.IntRange(1, 100),
              help="How many example runs to make.")
@click.option("--open", "open_after", is_flag=True,
              help="Start the embedded server if needed, fill it once, then open the control centre.")
@click.pass_context
def demo(ctx: click.Context, runs: int, open_after: bool) -> None:
    """Fill the server with example experiments (real training scripts under Task.init)."""
    if open_after:
        from fleetdeck.app.embedded import ensure_server

        root = ctx.find_root().obj
        settings = ensure_server(url=root.get("server_url"), token=root.get("token"))
        root.update(server_url=settings.url, token=settings.token)
    with make_client(ctx) as client:
        if open_after and client.list_tasks(project=DEMO_PROJECT, page_size=1)["items"]:
            click.echo("demo data already present")
        elif (EXAMPLES / RUNS[0][0]).is_file():
            _run_examples(client, runs)
        else:
            click.echo(f"examples not found in {EXAMPLES}: writing a demo sweep through the API instead")
            _fill(client, runs)
    if open_after:
        if sys.stdin.isatty() and sys.stdout.isatty():
            from fleetdeck.app.cli.tui import launch

            launch(ctx)
        else:
            from fleetdeck.app.cli.tasks import list_tasks

            ctx.invoke(list_tasks)


def _run_examples(client: Client, runs: int) -> None:
    env = {**os.environ, "FLEETDECK_SERVER_URL": client.url}
    if client.settings.token:
        env["FLEETDECK_API_TOKEN"] = client.settings.token
    for index in range(runs):
        script, args = RUNS[index % len(RUNS)]
        command = [sys.executable, str(EXAMPLES / script), *args]
        done = subprocess.run(command, env=env, cwd=EXAMPLES.parent, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            outcome = "ok"
        elif script == "diverging_run.py":
            outcome = "failed, as this example means to"
        else:
            outcome = f"exited {done.returncode}: {_last_line(done.stderr)}"
        click.echo(f"ran examples/{script} {' '.join(args)}: {outcome}")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _fill(client: Client, runs: int) -> None:
    rng = random.Random(7)
    for i in range(runs):
        lr = [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003][i % 6]
        task = client.create_task(name=f"resnet-lr{lr}", project=DEMO_PROJECT, tags=["demo", "sweep"],
                                  hyperparams={"Args": {"lr": {"value": lr, "type": "float"},
                                                        "epochs": {"value": 20, "type": "int"}}})
        client.set_status(task["id"], "in_progress")
        iterations = list(range(0, 2000, 10))
        loss = [2.3 * math.exp(-it * lr / 20) + 0.05 + rng.random() * 0.05 for it in iterations]
        acc = [1 - v / 2.5 for v in loss]
        client.post_events(task["id"], {
            "scalars": [{"metric": "loss", "variant": "train", "iterations": iterations, "values": loss},
                        {"metric": "accuracy", "variant": "val", "iterations": iterations, "values": acc}],
            "console": [{"line": f"epoch {e}: loss={loss[e * 10]:.4f}"} for e in range(20)]})
        client.set_status(task["id"], "completed" if i != 2 else "failed",
                          reason="" if i != 2 else "CUDA out of memory")
        click.echo(f"created {task['name']} ({task['id'][:8]})")
