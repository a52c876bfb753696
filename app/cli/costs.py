"""``fleetdeck costs``: what GPUs cost per project, user, host, queue or task, and what was wasted."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import click
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import console, table

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
GROUP_TITLES = {"project": "PROJECT", "user": "USER", "host": "HOST", "queue": "QUEUE", "task": "TASK"}


def parse_since(text: str, now: float | None = None) -> float:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO date/time (UTC unless it names a zone).

    Raises:
        click.BadParameter: the text is neither.
    """
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 7d, 12h, 30m, 2w or a date like 2026-11-01") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def money(value: float, currency: str) -> str:
    if currency == "USD":
        return f"${value:,.2f}"
    return f"{value:,.2f} {currency}"


def hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def _waste_cells(row: dict[str, Any], currency: str) -> list[str]:
    waste = row["waste"]
    return [money(waste[k]["cost"], currency) if waste[k]["cost"] else "-"
            for k in ("held_idle", "orphaned", "idle_capacity")]


@click.command()
@click.option("--by", "by", type=click.Choice(list(GROUP_TITLES)), default="project", show_default=True,
              help="Group costs by this.")
@click.option("--since", default="7d", show_default=True, help="Period start: 7d, 12h, 2w ago, or a date (UTC).")
@click.option("--until", default=None, help="Period end (default: now), same forms as --since.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(0, 100), help="How many top wasters to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw report as JSON.")
@click.pass_context
def costs(ctx: click.Context, by: str, since: str, until: str | None, top: int, as_json: bool) -> None:
    """GPU cost and waste per project, user, host, queue or task.

    Cost = GPU-hours held x price per GPU-hour (configs/pricing.toml, overridable). Waste:
    HELD IDLE = a running task's GPU under the utilisation threshold; ORPHANED = GPU memory
    left by finished tasks' processes; IDLE CAP = fleet GPUs with no task.
    """
    now = time.time()
    start = parse_since(since, now)
    end = parse_since(until, now) if until else None
    if end is not None and end <= start:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    with make_client(ctx) as client:
        report = client.get("/costs/report", by=by, since=start, until=end, top=top)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    render(report)


def render(report: dict[str, Any]) -> None:
    currency = report["currency"]
    by = report["by"]
    columns = [GROUP_TITLES[by], "TASKS", "GPU-H", "COST", "HELD IDLE", "ORPHANED", "IDLE CAP", "WASTE", "WASTE %"]
    if by == "task":
        columns[1:2] = ["NAME", "PROJECT"]
    rows = []
    for row in report["rows"]:
        key = row["key"] if by != "task" or row["key"].startswith("(") else row["key"][:8]
        cells: list[Any] = [Text(key or "-")]
        if by == "task":
            cells += [Text(row.get("name") or ""), Text(row.get("project") or "")]
        rows.append(cells + _numbers(row, currency, by == "task"))
    totals = report["totals"]
    total_cells: list[Any] = [Text("TOTAL", style="bold")] + ([""] * 2 if by == "task" else [])
    rows.append(total_cells + _numbers(totals, currency, by == "task"))
    period = (f"{_date(report['since'])} to {_date(report['until'])}, "
              f"prices in {currency} as of {report.get('pricing_as_of') or '?'}")
    console.print(table(columns, rows, title=f"GPU cost by {by}: {period}"))
    if not report["rows"]:
        console.print(Text("no task ran in this period", style="dim"))
    wasters = report.get("top_wasters") or []
    if wasters:
        console.print(table(["TASK", "NAME", "PROJECT", "KIND", "WASTE", "REASON"], (
            [Text((w.get("task_id") or "-")[:8]), Text(w.get("name") or ""), Text(w.get("project") or ""),
             w["kind"].replace("_", " "), money(w["waste_cost"], currency), Text(w.get("reason") or "")]
            for w in wasters), title="top wasters"))


def _numbers(row: dict[str, Any], currency: str, by_task: bool) -> list[Any]:
    # held-idle time is part of a task's cost; orphaned and idle-capacity time come on top of it
    spent = row["cost"] + row["waste"]["orphaned"]["cost"] + row["waste"]["idle_capacity"]["cost"]
    share = f"{100 * row['waste_cost'] / spent:.0f}%" if spent > 0 else "-"
    return [*([] if by_task else [str(row["tasks"])]), hours(row["gpu_hours"]), money(row["cost"], currency),
            *_waste_cells(row, currency), money(row["waste_cost"], currency), share]


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
