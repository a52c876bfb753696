"""``fleetdeck demo``: put a few experiments on a server so a new user has something to look at."""

from __future__ import annotations

import math
import random

import click

from fleetdeck.app.cli import make_client
from fleetdeck.client import Client


@click.command()
@click.option("--runs", default=6, show_default=True, type=click.IntRange(1, 100))
@click.option("--open", "open_after", is_flag=True, help="Start the embedded server if needed; show the result.")
@click.pass_context
def demo(ctx: click.Context, runs: int, open_after: bool) -> None:
    """Fill the server with example experiments (a small learning-rate sweep)."""
    if open_after:
        from fleetdeck.app.embedded import ensure_server

        settings = ensure_server()
        ctx.find_root().obj.update(server_url=settings.url, token=settings.token)
    with make_client(ctx) as client:
        if open_after and client.list_tasks(project="demo/vision", page_size=1)["items"]:
            click.echo("demo data already present")
        else:
            _fill(client, runs)
    if open_after:
        from fleetdeck.app.cli.tasks import list_tasks

        ctx.invoke(list_tasks)


def _fill(client: Client, runs: int) -> None:
    rng = random.Random(7)
    for i in range(runs):
        lr = [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003][i % 6]
        task = client.create_task(name=f"resnet-lr{lr}", project="demo/vision", tags=["demo", "sweep"],
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
