"""``fleetdeck queues list|create``."""

from __future__ import annotations

import json

import click

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table


@click.group()
def queues() -> None:
    """List and create queues."""


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.pass_context
def list_queues(ctx: click.Context, as_json: bool) -> None:
    """Queues with their length and the workers serving them."""
    with make_client(ctx) as client:
        items = client.list_queues()
    if as_json:
        for queue in items:
            click.echo(json.dumps(queue))
        return
    console.print(table(["QUEUE", "LENGTH", "WORKERS", "CREATED"],
                        ((q["name"], q["length"], ", ".join(q["workers"]) or "-", ago(q.get("created")))
                         for q in items)))


@queues.command("create")
@click.argument("name")
@click.pass_context
def create_queue(ctx: click.Context, name: str) -> None:
    """Create a queue (creating an existing one is a no-op)."""
    with make_client(ctx) as client:
        queue = client.create_queue(name)
    click.echo(f"queue {queue['name']}")
