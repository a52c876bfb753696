"""Queues: length, waiting tasks and serving workers; enqueue, move and remove entries."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from fleetdeck.app.tui.fmt import age, literal
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.screens.modals import ConfirmScreen, PromptScreen
from fleetdeck.app.tui.widgets.table import cursor_key, sync_rows
from fleetdeck.errors import FleetdeckError

Snapshot = tuple[list[dict[str, Any]], str | None, list[dict[str, Any]]]


class QueuesScreen(ViewScreen):
    """Queues on the left, the waiting tasks of the highlighted queue on the right."""

    BINDINGS = [
        Binding("tab", "switch_table", "Switch table", id="queues.switch", show=False),
        Binding("e", "enqueue", "Enqueue", id="queues.enqueue"),
        Binding("m", "move", "Move", id="queues.move"),
        Binding("x,delete", "remove", "Remove", id="queues.remove"),
    ]
    MUTATING = frozenset({"enqueue", "move", "remove"})

    def __init__(self) -> None:
        super().__init__()
        self.queues: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self.current: str | None = None
        self.poller: Poller[Snapshot] = Poller(self, self._fetch, self._apply, self._failed, 2.0, "queues")

    def compose_body(self) -> ComposeResult:
        yield Static(id="queues-info")
        with Horizontal():
            with Vertical(id="queues-left"):
                yield Label("queues")
                yield DataTable(id="queues-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="queues-right"):
                yield Label("waiting", id="entries-label")
                yield DataTable(id="entries-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.poller.interval = self.fd_app.poll_s
        queues = self.query_one("#queues-table", DataTable)
        queues.add_column("name", key="name")
        queues.add_column("length", key="length")
        queues.add_column("workers", key="workers")
        entries = self.query_one("#entries-table", DataTable)
        for key in ("task", "id", "priority", "waiting"):
            entries.add_column(key, key=key)
        queues.focus()
        self.poller.poll_now()

    def _fetch(self) -> Snapshot:
        queues = self.source.queues()
        names = [q["name"] for q in queues]
        current = self.current if self.current in names else (names[0] if names else None)
        entries = self.source.queue_entries(current) if current else []
        return queues, current, entries

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#queues-info", Static).update(Text(str(error), style="red"))

    def _apply(self, snapshot: Snapshot) -> None:
        self.poll_succeeded()
        self.queues, self.current, self.entries = snapshot
        now = self.fd_app.clock()
        queues = self.query_one("#queues-table", DataTable)
        entries = self.query_one("#entries-table", DataTable)
        with self.app.batch_update():
            sync_rows(queues, [(queue["name"], [literal(queue["name"], limit=40), Text(str(queue.get("length", 0))),
                                                literal(", ".join(queue.get("workers") or []) or "-", limit=60)])
                               for queue in self.queues])
            if self.current is not None and cursor_key(queues) != self.current:
                queues.move_cursor(row=queues.get_row_index(self.current), animate=False)
            sync_rows(entries, [(entry["id"], [literal(entry.get("task_name", ""), limit=60), Text(entry["id"][:8]),
                                               Text(str(entry.get("priority", 0))),
                                               Text(f"{age(now - entry['created'])}" if entry.get("created") else "-")])
                                for entry in self.entries])
        label = f"waiting on {self.current}" if self.current else "waiting"
        self.query_one("#entries-label", Label).update(Text(label))
        total = sum(int(q.get("length", 0)) for q in self.queues)
        info = f"{len(self.queues)} queues · {total} waiting" if self.queues else \
            "no queues yet: enqueue an experiment (e in Experiments) or run `fleetdeck queues create`"
        self.query_one("#queues-info", Static).update(Text(info, style="dim"))
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#queues-table")
    def _queue_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value)
        if name != self.current:
            self.current = name
            self.poller.poll_now(invalidate=True)

    @on(DataTable.RowHighlighted, "#entries-table")
    def _entry_highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#entries-table")
    def _entry_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenTask(str(event.row_key.value)))

    def action_switch_table(self) -> None:
        target = "#entries-table" if self.focused and self.focused.id == "queues-table" else "#queues-table"
        self.query_one(target).focus()

    def selected_entry(self) -> dict[str, Any] | None:
        table = self.query_one("#entries-table", DataTable)
        if not table.row_count or not self.entries:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((e for e in self.entries if e["id"] == key), None)

    def allows(self, action: str) -> bool:
        if action in ("move", "remove"):
            return self.selected_entry() is not None
        return True

    def action_enqueue(self) -> None:
        queue = self.current or "default"

        def chosen(task_id: str | None) -> None:
            if task_id:
                self.run_action(f"enqueued {task_id[:8]} on {queue}", lambda: self.source.act(
                    f"enqueue on {queue}", task_id, lambda: self.source.client.enqueue(task_id, queue)))

        self.app.push_screen(PromptScreen(f"Task id to enqueue on {queue}:"), chosen)

    def action_move(self) -> None:
        entry = self.selected_entry()
        source = self.current
        if entry is None or source is None:
            return

        def chosen(target: str | None) -> None:
            if target and target != source:
                self.run_action(f"moved {entry.get('task_name', '')} to {target}",
                                lambda: self.source.move_entry(source, target, entry))

        self.app.push_screen(PromptScreen(f"Move {entry.get('task_name', '')} from {source} to queue:"), chosen)

    def action_remove(self) -> None:
        entry = self.selected_entry()
        queue = self.current
        if entry is None or queue is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_action(f"removed {entry.get('task_name', '')} from {queue}",
                                lambda: self.source.remove_entry(queue, entry))

        self.app.push_screen(ConfirmScreen(f"Remove from queue {queue}",
                                           [f"{entry.get('task_name', '')} ({entry['id'][:8]})"]), confirmed)
