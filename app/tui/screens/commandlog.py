"""The command log: every action run from this session, with its target and outcome."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from fleetdeck.app.tui.fmt import literal
from fleetdeck.app.tui.screens.base import ViewScreen


class CommandLogScreen(ViewScreen):
    """Newest action last; refreshed whenever it is shown and once a second while shown."""

    def __init__(self) -> None:
        super().__init__()
        self._shown = 0

    def compose_body(self) -> ComposeResult:
        yield Static(Text("actions run from this session (read-only sessions log refusals too)", style="dim"))
        yield DataTable(id="log-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#log-table", DataTable)
        for key in ("time", "action", "target", "outcome"):
            table.add_column(key, key=key)
        self.set_interval(1.0, self.refresh_data, name="command-log")
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        entries = self.source.log.entries
        table = self.query_one("#log-table", DataTable)
        for entry in entries[self._shown:]:
            table.add_row(Text(time.strftime("%H:%M:%S", time.localtime(entry.at))), literal(entry.action, limit=40),
                          literal(entry.target, limit=60),
                          literal(entry.outcome, "green" if entry.ok else "bold red", limit=200))
        if len(entries) > self._shown:
            table.move_cursor(row=table.row_count - 1, animate=False)
        self._shown = len(entries)
