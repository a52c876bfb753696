"""One experiment: overview, parameters, metric curves, console, artifacts, code, environment, resources.

The task document is read once in a thread; heavy tabs (curves, console, artifacts) read their
data only when first shown. The console keeps polling (follow mode) while the screen is open.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane

from fleetdeck.app.tui.fmt import age, clean, duration, literal, number, size, status_text, task_duration
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.screens.experiments import ABORTABLE
from fleetdeck.app.tui.screens.modals import ConfirmScreen, TextScreen
from fleetdeck.app.tui.widgets.console import ConsoleView
from fleetdeck.app.tui.widgets.series import SeriesPanel
from fleetdeck.errors import FleetdeckError

TABS = ("overview", "parameters", "metrics", "console", "artifacts", "code", "environment", "resources")
DIFF_LINES = 5000
"""Lines of the uncommitted diff drawn (highlighting is per line; the rest is summarised)."""


class DetailScreen(ViewScreen):
    """Drill-down into one task; ``Esc``/``q`` goes back to the list."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="detail.back"),
        Binding("o", "tab('overview')", "Overview", id="detail.overview", show=False),
        Binding("p", "tab('parameters')", "Params", id="detail.parameters"),
        Binding("m", "tab('metrics')", "Metrics", id="detail.metrics"),
        Binding("l", "tab('console')", "Console", id="detail.console"),
        Binding("A", "tab('artifacts')", "Artifacts", id="detail.artifacts", show=False),
        Binding("g", "tab('code')", "Git", id="detail.code"),
        Binding("v", "tab('environment')", "Env", id="detail.environment", show=False),
        Binding("R", "tab('resources')", "Resources", id="detail.resources", show=False),
        Binding("slash", "search", "Search log", id="detail.search"),
        Binding("y", "raw", "Raw", id="detail.raw", show=False),
        Binding("a", "abort", "Abort", id="detail.abort"),
    ]
    MUTATING = frozenset({"abort"})

    def __init__(self, task_id: str, tab: str = "overview") -> None:
        super().__init__()
        self.task_id = task_id
        self.initial_tab = tab if tab in TABS else "overview"
        self.record: dict[str, Any] | None = None
        self.parent_task: dict[str, Any] | None = None
        self.built: set[str] = set()
        """Tabs whose widgets exist (each is built when first shown)."""
        self._mounted: dict[str, asyncio.Event] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(Text(f"experiment {self.task_id}", style="bold"), id="detail-title")
        with TabbedContent(initial=self.initial_tab, id="detail-tabs"):
            for tab in TABS:
                # The first tab shown is composed with the screen (one layout pass); the others
                # are built when first shown.
                content = self._pane_widgets(tab) if tab == self.initial_tab else []
                yield TabPane(tab.capitalize(), *content, id=tab)

    def _pane_widgets(self, tab: str) -> list[Widget]:
        """The widgets of one tab, built the first time the tab is shown (opening stays cheap)."""
        if tab == "overview":
            return [VerticalScroll(Static("loading…", id="overview-body"))]
        if tab == "parameters":
            return [DataTable(id="params-table", cursor_type="row", zebra_stripes=True)]
        if tab == "metrics":
            return [SeriesPanel(self.source, self.task_id, id="metric-panel")]
        if tab == "console":
            return [Static(id="console-status"),
                    Input(placeholder="search the console (Enter; n: next match)", id="console-search"),
                    ConsoleView(self.source, self.task_id, poll_s=self.fd_app.poll_s / 2, id="console-view")]
        if tab == "artifacts":
            return [DataTable(id="artifacts-table", cursor_type="row", zebra_stripes=True)]
        if tab == "code":
            return [VerticalScroll(Static("loading…", id="code-body"))]
        if tab == "environment":
            return [VerticalScroll(Static("loading…", id="env-body")),
                    DataTable(id="packages-table", cursor_type="row", zebra_stripes=True)]
        return [SeriesPanel(self.source, self.task_id, resources=True, id="resource-panel")]

    def on_mount(self) -> None:
        self._mounted[self.initial_tab] = asyncio.Event()
        self._mounted[self.initial_tab].set()
        self.built.add(self.initial_tab)
        self.refresh_data()
        self.call_after_refresh(self._activated, self.initial_tab)

    def refresh_data(self) -> None:
        def fetch() -> None:
            try:
                task = self.source.task(self.task_id)
                parent = None
                if task.get("parent"):
                    try:
                        parent = self.source.task(task["parent"])
                    except FleetdeckError:
                        parent = None  # the parent was deleted: nothing to compare against
            except FleetdeckError as exc:
                self.app.call_from_thread(self._failed, exc)
                return
            self.app.call_from_thread(self._loaded, task, parent)

        self.run_worker(fetch, thread=True, group="detail", exclusive=True, exit_on_error=False)

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#detail-title", Static).update(Text(f"cannot load experiment {self.task_id}: {error}",
                                                            style="bold red"))

    def _loaded(self, task: dict[str, Any], parent: dict[str, Any] | None) -> None:
        self.poll_succeeded()
        self.record = task
        self.parent_task = parent
        title = Text("experiment ", style="bold")
        title.append_text(literal(task.get("name", ""), "bold"))
        title.append("  ")
        title.append_text(status_text(task.get("status", "")))
        self.query_one("#detail-title", Static).update(title)
        for tab in self.built:
            self._fill(tab)
        self.refresh_bindings()

    def _fill(self, tab: str) -> None:
        """Show the loaded task in a built tab (tabs with their own data load it themselves)."""
        task = self.record
        if task is None:
            return
        if tab == "overview":
            self.query_one("#overview-body", Static).update(self._overview(task))
        elif tab == "parameters":
            self._fill_params(task, self.parent_task)
        elif tab == "code":
            self.query_one("#code-body", Static).update(self._code(task))
        elif tab == "environment":
            self._fill_environment(task)

    # -- tabs ------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one("#detail-tabs", TabbedContent).active = tab

    @on(TabbedContent.TabActivated, "#detail-tabs")
    async def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        await self._activated(str(event.pane.id))

    async def _activated(self, tab: str) -> None:
        if tab not in self._mounted:
            self._mounted[tab] = asyncio.Event()
            await self.query_one(f"#{tab}", TabPane).mount(*self._pane_widgets(tab))
            self.built.add(tab)
            self._fill(tab)
            self._mounted[tab].set()
        await self._mounted[tab].wait()
        if tab == "metrics":
            self.query_one("#metric-panel", SeriesPanel).load()
        elif tab == "resources":
            self.query_one("#resource-panel", SeriesPanel).load()
        elif tab == "artifacts":
            self._load_artifacts()
        elif tab == "console":
            self.query_one("#console-view", ConsoleView).focus()
        self.refresh_bindings()

    def allows(self, action: str) -> bool:
        if action == "abort":
            return bool(self.record and self.record.get("status") in ABORTABLE)
        if action == "search":
            return "console" in self.built and self.query_one("#detail-tabs", TabbedContent).active == "console"
        return True

    def action_back(self) -> None:
        search = self.query("#console-search").first(Input) if "console" in self.built else None
        if search is not None and search.display:
            search.display = False
            self.query_one("#console-view", ConsoleView).focus()
            return
        self.dismiss()

    # -- overview --------------------------------------------------------------------------

    def _overview(self, task: dict[str, Any]) -> Table:
        now = self.fd_app.clock()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        runtime = task.get("runtime") or {}

        def when(stamp: Any) -> Text:
            return Text(f"{age(now - stamp)} ago" if isinstance(stamp, (int, float)) else "-")

        rows: list[tuple[str, Text]] = [
            ("id", literal(task.get("id"))),
            ("name", literal(task.get("name"))),
            ("project", literal(task.get("project_name"))),
            ("status", status_text(task.get("status", ""))),
            ("reason", literal(task.get("status_reason"))),
            ("type", literal(task.get("type"))),
            ("user", literal(task.get("user"))),
            ("tags", literal(", ".join(task.get("tags") or []))),
            ("created", when(task.get("created"))),
            ("started", when(task.get("started"))),
            ("duration", Text(duration(task_duration(task, now)))),
            ("queue", literal(task.get("queue") or "-")),
            ("worker", literal(runtime.get("worker", "-"))),
            ("attempt", Text(str(task.get("attempt", 0)))),
            ("comment", literal(task.get("comment"))),
        ]
        for key, value in rows:
            grid.add_row(key, value)
        metrics = task.get("metrics") or {}
        if metrics:
            grid.add_row("", Text(""))
            grid.add_row("last values", Text(f"{len(metrics):,} series", style="dim"))
            for summary in list(metrics.values())[:20]:
                grid.add_row(literal(f"{summary.get('metric')}/{summary.get('variant')}", limit=60),
                             Text(f"{number(summary.get('last'))}  (min {number(summary.get('min'))}, "
                                  f"max {number(summary.get('max'))}, iter {summary.get('iteration')})"))
            if len(metrics) > 20:
                grid.add_row("", Text(f"… {len(metrics) - 20:,} more in Metrics", style="dim"))
        return grid

    def _fill_params(self, task: dict[str, Any], parent: dict[str, Any] | None) -> None:
        table = self.query_one("#params-table", DataTable)
        table.clear(columns=True)
        table.add_columns(" ", "section", "name", "value", "type")
        base = (parent or {}).get("hyperparams") or {}
        for section, params in sorted((task.get("hyperparams") or {}).items()):
            for name, param in sorted(params.items()):
                value = param.get("value") if isinstance(param, dict) else param
                before = (base.get(section) or {}).get(name)
                changed = parent is not None and (before is None or before.get("value") != value)
                mark = Text("●", style="bold yellow") if changed else Text(" ")
                table.add_row(mark, literal(section, limit=40), literal(name, limit=60),
                              literal(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value,
                                      "bold yellow" if changed else "", limit=200),
                              literal(param.get("type", "") if isinstance(param, dict) else ""))
        for name, obj in sorted((task.get("configuration") or {}).items()):
            text = obj.get("value", "") if isinstance(obj, dict) else str(obj)
            first = text.splitlines()[0] if text else ""
            table.add_row(Text(" "), Text("configuration"), literal(name), literal(first, limit=200),
                          literal(obj.get("type", "") if isinstance(obj, dict) else ""))

    def _code(self, task: dict[str, Any]) -> Group:
        script = task.get("script") or {}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key in ("repository", "branch", "commit", "entry_point", "working_dir", "binary"):
            grid.add_row(key, literal(script.get(key) or "-"))
        untracked = script.get("untracked") or []
        if untracked:
            grid.add_row("untracked", literal(", ".join(untracked[:20]) + (" …" if len(untracked) > 20 else "")))
        parts: list[Any] = [grid, Text("")]
        diff = script.get("diff") or ""
        if diff:
            lines = diff.splitlines()
            shown = "\n".join(clean(line) for line in lines[:DIFF_LINES])
            parts.append(Text("uncommitted changes", style="bold"))
            parts.append(Syntax(shown, "diff", theme="ansi_dark", word_wrap=False, background_color="default"))
            if len(lines) > DIFF_LINES:
                parts.append(Text(f"… {len(lines) - DIFF_LINES:,} more lines of diff", style="dim"))
        else:
            parts.append(Text("no uncommitted changes recorded", style="dim"))
        return Group(*parts)

    def _fill_environment(self, task: dict[str, Any]) -> None:
        env = task.get("environment") or {}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key in ("python", "executable", "os", "host", "cuda", "driver"):
            grid.add_row(key, literal(env.get(key) or "-"))
        for index, gpu in enumerate(env.get("gpus") or []):
            grid.add_row(f"gpu {index}", literal(", ".join(f"{k}={v}" for k, v in gpu.items()), limit=200))
        self.query_one("#env-body", Static).update(grid)
        table = self.query_one("#packages-table", DataTable)
        table.clear(columns=True)
        table.add_columns("package", "version")
        for name, version in sorted((env.get("packages") or {}).items()):
            table.add_row(literal(name, limit=80), literal(version, limit=60))

    def _load_artifacts(self) -> None:
        def fetch() -> None:
            try:
                items = self.source.artifacts(self.task_id)
            except FleetdeckError as exc:
                self.app.call_from_thread(self.notify, f"artifacts: {exc}", severity="error")
                return
            self.app.call_from_thread(self._show_artifacts, items)

        self.run_worker(fetch, thread=True, group="artifacts", exclusive=True, exit_on_error=False)

    def _show_artifacts(self, items: list[dict[str, Any]]) -> None:
        table = self.query_one("#artifacts-table", DataTable)
        table.clear(columns=True)
        table.add_columns("name", "kind", "mode", "size", "sha256", "uri")
        for item in items:
            table.add_row(literal(item.get("name"), limit=80), literal(item.get("kind")), literal(item.get("mode")),
                          Text(size(item.get("size"))), literal((item.get("sha256") or "-")[:12]),
                          literal(item.get("uri") or "-", limit=120), key=item.get("id"))
        if not items:
            table.add_row(Text("no artifacts or models", style="dim"), "", "", "", "", "")

    # -- console ---------------------------------------------------------------------------

    @on(ConsoleView.Status)
    def _console_status(self, event: ConsoleView.Status) -> None:
        self.query_one("#console-status", Static).update(Text(event.text, style="dim"))

    def action_search(self) -> None:
        box = self.query_one("#console-search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#console-search")
    def _search(self, event: Input.Submitted) -> None:
        view = self.query_one("#console-view", ConsoleView)
        view.search(event.value.strip())
        view.focus()

    # -- actions ---------------------------------------------------------------------------

    def action_raw(self) -> None:
        if self.record:
            self.app.push_screen(TextScreen(f"task {self.task_id}", json.dumps(self.record, indent=2, ensure_ascii=False)))

    def action_abort(self) -> None:
        task = self.record
        if not task or task.get("status") not in ABORTABLE:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_action("aborted 1 experiment", lambda: self.source.abort(cast(dict, task)))

        self.app.push_screen(ConfirmScreen("Abort", [f"{task.get('name', '')} ({self.task_id[:8]})"]), confirmed)
