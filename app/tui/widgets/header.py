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


SHORT_LABELS = {"experiments": "Exp", "datasets": "Data", "queues": "Queue"}
"""Tab labels used when the full ones do not fit (an 80-column terminal)."""


class StatusHeader(Static):
    """Two lines: the view tabs, then server · runs · workers · freshness.

    Each line fits the header's width: the tabs shorten their labels, and the status line drops
    its least urgent parts (server address, workers, hosts, runs) before the freshness and the
    warnings, which always show.
    """

    DEFAULT_CSS = """
    StatusHeader { height: 2; background: $panel; color: $foreground; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.set_interval(1.0, self.update_text, name="header-clock")
        self.update_text()

    def on_resize(self) -> None:
        self.update_text()

    def update_text(self) -> None:
        self.update(self.render_status(self.content_size.width or None))

    def render_status(self, width: int | None = None) -> Text:
        """The header's two lines, each fitted to ``width`` cells (unlimited when None)."""
        return Text("\n").join([self._tabs(width), self._status(width)])

    def _tabs(self, width: int | None) -> Text:
        app = cast("FleetdeckApp", self.app)
        for brand, short in ((True, False), (False, False), (False, True)):
            tabs = Text("fleetdeck ", style="bold") if brand else Text()
            for key, mode, label in VIEWS:
                style = "reverse bold" if mode == app.current_mode else ""
                tabs.append(f" {key} {SHORT_LABELS.get(mode, label) if short else label} ", style=style)
            if width is None or tabs.cell_len <= width:
                return tabs
        tabs.truncate(width)
        return tabs

    def _status(self, width: int | None) -> Text:
        app = cast("FleetdeckApp", self.app)
        parts: dict[str, Text] = {}  # in reading order
        summary = app.summary
        if summary is not None:
            counts = summary.get("counts", {})
            runs = Text(f"  runs {counts.get('in_progress', 0)} running · {counts.get('queued', 0)} queued · ")
            runs.append(f"{counts.get('failed', 0)} failed", style="red" if counts.get("failed") else "")
            runs.append(f" · {summary.get('total', 0)} total")
            parts["runs"] = runs
        if app.worker_count is not None:
            parts["workers"] = Text(f"  workers {app.worker_count}")
        if app.host_health:
            hosts = Text("  hosts ")
            states = [(state, app.host_health.get(state, 0)) for state in ("ok", "degraded", "down")]
            states += [(state, count) for state, count in sorted(app.host_health.items()) if state not in dict(states)]
            for index, (state, count) in enumerate(states):
                style = "bold red" if state == "down" and count else "yellow" if state == "degraded" and count else ""
                hosts.append(("" if index == 0 else " · ") + f"{count} {state}", style=style)
            parts["hosts"] = hosts
        label = Text(clean(app.source.label, 80), style="bold")
        tail = self._flags_and_freshness(app)
        expendable = [name for name in ("workers", "hosts", "runs") if name in parts]
        while True:
            line = Text.assemble(label, *parts.values(), tail)
            if width is None or line.cell_len <= width:
                return line
            if label.cell_len > 12:  # the server address shortens first, down to a stub
                label.truncate(max(12, label.cell_len - (line.cell_len - width)), overflow="ellipsis")
            elif expendable:
                del parts[expendable.pop(0)]
            else:
                line.truncate(width, overflow="ellipsis")
                return line

    @staticmethod
    def _flags_and_freshness(app: FleetdeckApp) -> Text:
        tail = Text()
        if app.waste:
            tail.append(f"  ⚠ {len(app.waste)} wasting GPUs", style="bold yellow")
        now = app.clock()
        if app.readonly:
            tail.append("  read-only", style="bold yellow")
        if app.paused:
            tail.append("  paused", style="bold yellow")
        if app.last_error is not None:
            since = age(now - app.last_ok) if app.last_ok is not None else "never updated"
            tail.append(f"  stale ({since}): {clean(app.last_error, 120)}", style="bold red")
        elif app.last_ok is not None:
            tail.append(f"  updated {age(now - app.last_ok)} ago", style="dim")
        else:
            tail.append("  connecting…", style="dim")
        return tail
