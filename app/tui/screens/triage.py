"""Triage: the supervisor's findings (cause, evidence, suggested action) with one-key actions.

Findings come from ``GET /fleet/findings`` (the fleet manager, issue 5); actions run
``fleetdeck triage act ID restart|abort-requeue|drain``, the same code path as the CLI.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from fleetdeck.app.tui.data import Unavailable
from fleetdeck.app.tui.fmt import age, clean, literal
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.screens.modals import ConfirmScreen
from fleetdeck.app.tui.widgets.table import sync_rows
from fleetdeck.errors import FleetdeckError

ACTIONS = {"restart": "Restart the agent of", "abort-requeue": "Abort and requeue the task of",
           "drain": "Drain the host of"}


class TriageScreen(ViewScreen):
    """Findings newest first; the evidence of the highlighted one below the table."""

    BINDINGS = [
        Binding("R", "act('restart')", "Restart", id="triage.restart"),
        Binding("A", "act('abort-requeue')", "Abort+requeue", id="triage.abort-requeue"),
        Binding("D", "act('drain')", "Drain", id="triage.drain"),
        Binding("t", "open_task", "Open task", id="triage.open-task"),
    ]
    MUTATING = frozenset({"act"})

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[dict[str, Any]] = []
        self.unavailable: str | None = None
        self.poller: Poller[list[dict[str, Any]] | str] = Poller(self, self._fetch, self._apply, self._failed,
                                                                  2.0, "triage")

    def compose_body(self) -> ComposeResult:
        yield Static(id="triage-info")
        yield DataTable(id="triage-table", cursor_type="row", zebra_stripes=True)
        yield VerticalScroll(Static(id="triage-evidence"), id="triage-evidence-box")

    def on_mount(self) -> None:
        self.poller.interval = self.fd_app.poll_s * 2
        table = self.query_one("#triage-table", DataTable)
        for key in ("when", "target", "cause", "suggested"):
            table.add_column(key, key=key)
        table.focus()
        self.poller.poll_now()

    def _fetch(self) -> list[dict[str, Any]] | str:
        try:
            return self.source.findings()
        except Unavailable as exc:
            return str(exc)

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#triage-info", Static).update(Text(str(error), style="red"))

    def _apply(self, result: list[dict[str, Any]] | str) -> None:
        self.poll_succeeded()
        info = self.query_one("#triage-info", Static)
        if isinstance(result, str):
            self.unavailable = result
            self.findings = []
            info.update(Text(result, style="yellow"))
        else:
            self.unavailable = None
            self.findings = sorted(result, key=lambda f: f.get("created") or 0, reverse=True)
            info.update(Text(f"{len(self.findings)} findings" if self.findings else "no findings: the fleet is healthy",
                             style="dim"))
        now = self.fd_app.clock()
        table = self.query_one("#triage-table", DataTable)
        rows = []
        for index, finding in enumerate(self.findings):
            stamp = finding.get("created")
            rows.append((str(finding.get("id", index)), [
                Text(f"{age(now - stamp)} ago" if isinstance(stamp, (int, float)) else "-"),
                literal(finding.get("host") or finding.get("worker") or "-", limit=40),
                literal(finding.get("cause", ""), "bold red", limit=60),
                literal(finding.get("suggested_action") or "-", limit=30)]))
        with self.app.batch_update():
            sync_rows(table, rows)
        self._show_evidence()
        self.refresh_bindings()

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#triage-table", DataTable)
        if not self.findings or not table.row_count:
            return None
        return self.findings[min(table.cursor_row, len(self.findings) - 1)]

    @on(DataTable.RowHighlighted, "#triage-table")
    def _highlighted(self) -> None:
        self._show_evidence()
        self.refresh_bindings()

    def _show_evidence(self) -> None:
        finding = self.selected()
        box = self.query_one("#triage-evidence", Static)
        if finding is None:
            box.update("")
            return
        evidence = finding.get("evidence", "")
        text = evidence if isinstance(evidence, str) else json.dumps(evidence, indent=2, ensure_ascii=False)
        body = Text(clean(finding.get("cause", ""), 200) + ": " + clean(finding.get("summary", ""), 500) + "\n",
                    style="bold")
        body.append("\n".join(clean(line) for line in text.splitlines()[:400]))
        box.update(body)

    def allows(self, action: str) -> bool:
        finding = self.selected()
        if action == "act":
            return finding is not None and "id" in finding
        if action == "open_task":
            return bool(finding and finding.get("task_id"))
        return True

    def action_act(self, verb: str) -> None:
        finding = self.selected()
        if not finding or "id" not in finding:
            return
        target = str(finding.get("host") or finding["id"])

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_action(f"triage {verb} {target}", lambda: self.source.run_cli(
                    f"triage {verb}", target, ["triage", "act", str(finding["id"]), verb, "--yes"]))

        self.app.push_screen(ConfirmScreen(ACTIONS[verb], [target]), confirmed)

    def action_open_task(self) -> None:
        finding = self.selected()
        if finding and finding.get("task_id"):
            self.post_message(OpenTask(str(finding["task_id"])))
