"""The status header: views, server, counts and how fresh the data is.

It reads the app's last poll results (no I/O of its own) and re-renders once a second so the
"updated 2 s ago" age keeps moving; a failed poll turns it into a red "stale" with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.widgets import Static

from fleetdeck.app.tui.fmt import age, clean

if TYPE_CHECKING:
    from fleetdeck.app.tui.app import FleetdeckApp

VIEWS = (("1", "experiments", "Experiments"), ("2", "fleet", "Fleet"), ("3", "queues", "Queues"),
         ("4", "triage", "Triage"), ("5", "costs", "Costs"), ("6", "datasets", "Datasets"),
         ("L", "log", "Log"))
"""(key, mode, label) of each top-level view, in the order the header shows them."""


class StatusHeader(Static):
    """Two lines: the view tabs, then server · runs · workers · freshness."""

    DEFAULT_CSS = """
    StatusHeader { height: 2; background: $panel; color: $foreground; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.set_interval(1.0, self.update_text, name="header-clock")
        self.update_text()

    def update_text(self) -> None:
        self.update(self.render_status())

    def render_status(self) -> Text:
        app = cast("FleetdeckApp", self.app)
        tabs = Text("fleetdeck ", style="bold")
        for key, mode, label in VIEWS:
            style = "reverse bold" if mode == app.current_mode else ""
            tabs.append(f" {key} {label} ", style=style)
        status = Text(clean(app.source.label, 80), style="bold")
        summary = app.summary
        if summary is not None:
            counts = summary.get("counts", {})
            status.append(f"  runs {counts.get('in_progress', 0)} running · {counts.get('queued', 0)} queued · ")
            status.append(f"{counts.get('failed', 0)} failed", style="red" if counts.get("failed") else "")
            status.append(f" · {summary.get('total', 0)} total")
        if app.worker_count is not None:
            status.append(f"  workers {app.worker_count}")
        if app.host_health:
            status.append("  hosts ")
            parts = [(state, app.host_health.get(state, 0)) for state in ("ok", "degraded", "down")]
            parts += [(state, count) for state, count in sorted(app.host_health.items()) if state not in dict(parts)]
            for index, (state, count) in enumerate(parts):
                style = "bold red" if state == "down" and count else "yellow" if state == "degraded" and count else ""
                status.append(("" if index == 0 else " · ") + f"{count} {state}", style=style)
        if app.waste:
            status.append(f"  ⚠ {len(app.waste)} wasting GPUs", style="bold yellow")
        now = app.clock()
        if app.readonly:
            status.append("  read-only", style="bold yellow")
        if app.paused:
            status.append("  paused", style="bold yellow")
        if app.last_error is not None:
            since = age(now - app.last_ok) if app.last_ok is not None else "never updated"
            status.append(f"  stale ({since}): {clean(app.last_error, 120)}", style="bold red")
        elif app.last_ok is not None:
            status.append(f"  updated {age(now - app.last_ok)} ago", style="dim")
        else:
            status.append("  connecting…", style="dim")
        return Text("\n").join([tabs, status])
