"""``fleetdeck workers list``."""

from __future__ import annotations

import json
import time

import click

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table


@click.group()
def workers() -> None:
    """Agents that heartbeat to the server."""


@workers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.pass_context
def list_workers(ctx: click.Context, as_json: bool) -> None:
    """Live workers: queues, current task and phase, memory, CPU and last output."""
    with make_client(ctx) as client:
        items = client.list_workers()
    if as_json:
        for worker in items:
            click.echo(json.dumps(worker))
        return
    now = time.time()
    rows = []
    for w in items:
        stats = w.get("stats") or {}
        rss = stats.get("rss")
        rows.append((w["id"], w.get("status", ""), ",".join(w.get("queues", [])), (w.get("task_id") or "-")[:8],
                     stats.get("phase") or "-", f"{rss / 1024**2:.0f} MiB" if isinstance(rss, (int, float)) else "-",
                     stats.get("cpu_percent", "-"), ago(stats.get("last_output_ts"), now), ago(w.get("last_seen"), now)))
    console.print(table(["WORKER", "STATUS", "QUEUES", "TASK", "PHASE", "RSS", "CPU%", "LAST OUTPUT", "SEEN"], rows))
