"""``fleetdeck tasks list|show``."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, duration, status_text, table


@click.group()
def tasks() -> None:
    """List, show and act on tasks."""


@tasks.command("list")
@click.option("--project", "-p", multiple=True, help="Project name (repeatable).")
@click.option("--status", "-s", multiple=True,
              type=click.Choice(["created", "queued", "in_progress", "completed", "failed", "aborted", "stopped"]))
@click.option("--tag", "-t", multiple=True, help="Only tasks with all these tags.")
@click.option("--user", help="Only this user's tasks.")
@click.option("--name", help="Case-insensitive substring of the task name.")
@click.option("--order-by", default="-created", show_default=True, help="Field, '-' prefix for descending.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.pass_context
def list_tasks(ctx: click.Context, project: tuple[str, ...], status: tuple[str, ...], tag: tuple[str, ...],
               user: str | None, name: str | None, order_by: str, limit: int, as_json: bool) -> None:
    """List tasks, newest first."""
    with make_client(ctx) as client:
        rows = []
        for task in client.iter_tasks(project=list(project) or None, status=list(status) or None,
                                      tag=list(tag) or None, user=user, name=name, order_by=order_by,
                                      page_size=min(limit, 500)):
            rows.append(task)
            if len(rows) >= limit:
                break
    if as_json:
        for task in rows:
            click.echo(json.dumps(task))
        return
    now = time.time()
    console.print(table(
        ["ID", "STATUS", "PROJECT", "NAME", "USER", "STARTED", "DURATION"],
        ([t["id"][:8], status_text(t["status"]), t.get("project_name", ""), t["name"], t.get("user", ""),
          ago(t.get("started")), duration((t.get("ended") or now) - t["started"]) if t.get("started") else "-"]
         for t in rows)))
    if not rows:
        console.print(Text("no tasks match", style="dim"))


def resolve_task(client: Any, prefix: str) -> dict[str, Any]:
    """A task by full id or unique id prefix (as shown by ``tasks list``)."""
    from fleetdeck.errors import NotFound, RequestRejected

    if len(prefix) == 32:
        return client.get_task(prefix)
    matches = [t for t in client.iter_tasks(page_size=500) if t["id"].startswith(prefix)]
    if not matches:
        raise NotFound(f"no task with id {prefix!r}")
    if len(matches) > 1:
        raise RequestRejected(f"id prefix {prefix!r} matches {len(matches)} tasks; give more characters", 400)
    return client.get_task(matches[0]["id"])


@tasks.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw task record.")
@click.pass_context
def show_task(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show one task: status, parameters, metrics, code and environment."""
    with make_client(ctx) as client:
        task = resolve_task(client, task_id)
    if as_json:
        click.echo(json.dumps(task, indent=2))
        return
    overview = [("id", task["id"]), ("name", task["name"]), ("project", task.get("project_name", "")),
                ("status", f"{task['status']} {task.get('status_reason') or ''}".strip()),
                ("user", task.get("user", "")), ("started", ago(task.get("started"))),
                ("worker", task.get("runtime", {}).get("worker", "-"))]
    console.print(table(["FIELD", "VALUE"], overview, title="task"))
    params = [(f"{section}/{name}", p.get("value"), p.get("type", ""))
              for section, values in task.get("hyperparams", {}).items() for name, p in values.items()]
    if params:
        console.print(table(["PARAMETER", "VALUE", "TYPE"], params, title="parameters"))
    metrics = [(m["metric"], m["variant"], m.get("last"), m.get("min"), m.get("max"))
               for m in task.get("metrics", {}).values()]
    if metrics:
        console.print(table(["METRIC", "SERIES", "LAST", "MIN", "MAX"], metrics, title="metrics"))
    script = task.get("script") or {}
    if script:
        console.print(table(["FIELD", "VALUE"], [(k, v if k != "diff" else f"{len(v)} bytes")
                                                 for k, v in script.items() if v], title="code"))
