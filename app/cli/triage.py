"""``fleetdeck triage``: what is stuck or dead in the fleet, why, and one command to act on it."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table

CAUSE_STYLE = {"no_heartbeat": "red", "agent_dead": "red", "crash_loop": "red", "host_unreachable": "red",
               "phase_timeout": "yellow", "silent": "yellow", "gpu_idle": "yellow", "memory_leak": "yellow"}
ACTIONS = ("restart", "abort-requeue", "drain")


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include resolved findings.")
@click.option("--host", help="Only this host.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON (with evidence).")
@click.pass_context
def triage(ctx: click.Context, show_all: bool, host: str | None, as_json: bool) -> None:
    """List current findings, newest first, with cause and suggested action."""
    if ctx.invoked_subcommand is not None:
        return
    with make_client(ctx) as client:
        items = client.get("/fleet/findings", status="all" if show_all else "open", host=host)["items"]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no findings: every supervised host reports and no task looks stuck")
        return
    console.print(table(["ID", "AGE", "HOST", "CAUSE", "TASK", "SUGGESTED", "SUMMARY"], (
        (f["id"][:8], ago(f["created"]), f["host"], Text(f["cause"], style=CAUSE_STYLE.get(f["cause"], "")),
         (f.get("task_id") or "-")[:8], _suggest(f), f["summary"]) for f in items)))
    console.print("details: fleetdeck triage show ID   act: fleetdeck triage act ID restart|abort-requeue|drain")


def _suggest(finding: dict[str, Any]) -> str:
    if finding.get("state") == "resolved":
        return f"resolved: {finding.get('resolution') or ''}"
    return str(finding.get("suggested_action", "inspect"))


def _find(client: Any, prefix: str) -> dict[str, Any]:
    items = client.get("/fleet/findings", status="all", limit=1000)["items"]
    matches = [f for f in items if f["id"].startswith(prefix.lower())]
    if not matches:
        raise click.BadParameter(f"no finding with id {prefix!r}", param_hint="ID")
    if len(matches) > 1:
        raise click.BadParameter(f"{prefix!r} matches {len(matches)} findings; give more of the id", param_hint="ID")
    return matches[0]


@triage.command("show")
@click.argument("finding_id")
@click.pass_context
def show(ctx: click.Context, finding_id: str) -> None:
    """Show one finding with its evidence (log tail, process tree, py-spy, nvidia-smi)."""
    with make_client(ctx) as client:
        finding = _find(client, finding_id)
    console.print(Text(f"{finding['cause']} on {finding['host']}: {finding['summary']}", style="bold"))
    console.print(Text(f"id {finding['id']}  task {finding.get('task_id') or '-'}  phase {finding.get('phase') or '-'}"
                       f"  state {finding['state']}  suggested {finding.get('suggested_action')}"))
    evidence = finding.get("evidence") or {}
    for key, value in evidence.items():
        console.print(Text(f"\n-- {key}", style="bold"))
        if key == "process_tree" and isinstance(value, list):
            console.print(table(["PID", "PPID", "CPU%", "RSS MB", "STATUS", "COMMAND"],
                                ((p["pid"], p["ppid"], p["cpu_percent"], p["rss_mb"], p["status"], p["cmdline"])
                                 for p in value)))
        elif isinstance(value, list):
            console.print(Text("\n".join(str(v) for v in value)))
        elif isinstance(value, dict):
            console.print(Text("\n".join(f"{k}: {v}" for k, v in value.items())))
        else:
            console.print(Text(str(value)))


@triage.command("act")
@click.argument("finding_id")
@click.argument("action", type=click.Choice(ACTIONS))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def act(ctx: click.Context, finding_id: str, action: str, yes: bool) -> None:
    """Apply ACTION to finding ID: restart the agent, abort and requeue its task, or drain the host."""
    with make_client(ctx) as client:
        finding = _find(client, finding_id)
        target = f"task {finding['task_id']}" if action == "abort-requeue" else f"host {finding['host']}"
        if not yes:
            click.confirm(f"{action} {target} ({finding['cause']})?", abort=True)
        if action == "abort-requeue":
            note = _abort_requeue(client, finding)
        else:
            note = _on_host(finding["host"], action)
        client.post(f"/fleet/findings/{finding['id']}/resolve", {"action": action, "note": note})
    click.echo(f"{action}: {note}")


def _abort_requeue(client: Any, finding: dict[str, Any]) -> str:
    task_id = finding.get("task_id")
    if not task_id:
        raise click.UsageError(f"finding {finding['id'][:8]} names no task; use restart or drain")
    task = client.get_task(task_id)
    queue = task.get("queue")
    if not queue:
        raise click.UsageError(f"task {task_id} has no queue to requeue it on")
    if task["status"] in ("in_progress", "queued", "created"):
        client.set_status(task_id, "aborted", reason=f"triage: {finding['cause']} on {finding['host']}")
    client.enqueue(task_id, queue)
    return f"task {task_id} aborted and requeued on {queue}"


def _on_host(host_name: str, action: str) -> str:
    """The same code as ``fleetdeck fleet restart|drain HOST``."""
    from fleetdeck.app.cli.fleet import drain_agent, restart_agent
    from fleetdeck.fleet import inventory
    from fleetdeck.fleet.provision import remote_root
    from fleetdeck.fleet.ssh import ConnectionPool

    inv = inventory.load()
    with ConnectionPool(inv) as pool:
        conn = pool.get(inv.host(host_name).name)
        return (restart_agent if action == "restart" else drain_agent)(conn, remote_root(conn))
