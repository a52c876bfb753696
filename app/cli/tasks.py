"""``fleetdeck tasks list|show``."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, duration, status_text, table
from fleetdeck.task import clone_fields


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


# -- actions: enqueue, clone, abort, requeue, reset ------------------------------------------------


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``Section/name=value`` (a name without section goes to ``Args``); the value is JSON when it parses."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} must be SECTION/NAME=VALUE", param_hint="--set")
    section, slash, name = key.partition("/")
    if not slash:
        section, name = "Args", key
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return section, name, value


def _typed(value: Any, existing: dict[str, Any] | None) -> dict[str, Any]:
    kind = (existing or {}).get("type", "")
    if kind in ("float", "int") and isinstance(value, str):
        raise click.BadParameter(f"{value!r} is not a number (the parameter is {kind})", param_hint="--set")
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return {**(existing or {}), "value": value, "type": kind or type(value).__name__}


@tasks.command("clone")
@click.argument("task_id")
@click.option("--name", help="Name of the copy (default: '<source name> (clone)').")
@click.option("--set", "assignments", multiple=True, metavar="SECTION/NAME=VALUE",
              help="Change a parameter of the copy (repeatable), e.g. Args/lr=0.01.")
@click.option("--queue", help="Enqueue the copy on this queue.")
@click.pass_context
def clone_task(ctx: click.Context, task_id: str, name: str | None, assignments: tuple[str, ...],
               queue: str | None) -> None:
    """Copy a task (code, environment, parameters) as a new draft; optionally change parameters and enqueue."""
    changes = [parse_assignment(a) for a in assignments]
    with make_client(ctx) as client:
        source = resolve_task(client, task_id)
        fields = clone_fields(source)
        params = {section: dict(values) for section, values in fields.get("hyperparams", {}).items()}
        for section, key, value in changes:
            params.setdefault(section, {})[key] = _typed(value, params.get(section, {}).get(key))
        if params:
            fields["hyperparams"] = params
        copy = client.create_task(name=name or f"{source['name']} (clone)", project=source["project_name"],
                                  parent=source["id"], comment=f"cloned from {source['id']}", **fields)
        if queue:
            client.enqueue(copy["id"], queue)
    click.echo(copy["id"])
    click.echo(f"cloned {source['id'][:8]} as {copy['id'][:8]}" + (f", queued on {queue}" if queue else ""), err=True)


@tasks.command("enqueue")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--queue", "-q", default="default", show_default=True)
@click.option("--priority", default=0, show_default=True, type=click.IntRange(-1000, 1000),
              help="Higher runs first; equal priorities run in enqueue order.")
@click.pass_context
def enqueue_tasks(ctx: click.Context, task_ids: tuple[str, ...], queue: str, priority: int) -> None:
    """Put draft (or finished) tasks on a queue."""
    with make_client(ctx) as client:
        for prefix in task_ids:
            task = resolve_task(client, prefix)
            client.enqueue(task["id"], queue, priority=priority)
            click.echo(f"queued {task['id'][:8]} on {queue}")


@tasks.command("abort")
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def abort_tasks(ctx: click.Context, task_ids: tuple[str, ...]) -> None:
    """Abort running or queued tasks; an agent stops a running job within seconds."""
    from fleetdeck.errors import RequestRejected

    with make_client(ctx) as client:
        for prefix in task_ids:
            task = resolve_task(client, prefix)
            if task["status"] == "queued" and task.get("queue"):
                client.remove_from_queue(task["queue"], task["id"])
            elif task["status"] != "in_progress":
                raise RequestRejected(f"task {task['id'][:8]} is {task['status']}, not running or queued", 409)
            client.set_status(task["id"], "aborted", "aborted by the user")
            click.echo(f"aborted {task['id'][:8]}")


@tasks.command("requeue")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--queue", "-q", help="Queue (default: the queue the task last ran from, else 'default').")
@click.option("--priority", default=0, show_default=True, type=click.IntRange(-1000, 1000))
@click.pass_context
def requeue_tasks(ctx: click.Context, task_ids: tuple[str, ...], queue: str | None, priority: int) -> None:
    """Run finished, failed or aborted tasks again."""
    with make_client(ctx) as client:
        for prefix in task_ids:
            task = resolve_task(client, prefix)
            target = queue or task.get("queue") or "default"
            client.enqueue(task["id"], target, priority=priority)
            click.echo(f"requeued {task['id'][:8]} on {target}")


@tasks.command("reset")
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def reset_tasks(ctx: click.Context, task_ids: tuple[str, ...]) -> None:
    """Turn tasks back into drafts (status created); a queued task leaves its queue."""
    from fleetdeck.errors import RequestRejected

    with make_client(ctx) as client:
        for prefix in task_ids:
            task = resolve_task(client, prefix)
            if task["status"] == "in_progress":
                raise RequestRejected(f"task {task['id'][:8]} is running; abort it before resetting it", 409)
            if task["status"] == "queued" and task.get("queue"):
                client.remove_from_queue(task["queue"], task["id"])
            else:
                client.set_status(task["id"], "created", "reset by the user")
            click.echo(f"reset {task['id'][:8]}")
