"""The experiments view: one page of tasks from the server, filtered and sorted by the server.

Only one page (``page_size`` rows) is ever in the table, so 100,000 tasks cost the same as 100:
``/`` sends the filter to ``GET /tasks``, sorting changes ``order_by``, ``[``/``]`` follow page
tokens. Rows are keyed by task id and diff-updated on each poll (changed cells only), so the cursor
and marks survive refreshes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from fleetdeck.app.tui.data import Page, TaskQuery
from fleetdeck.app.tui.fmt import (SPARK_CELLS, age, duration, literal, number, sparkline, status_text,
                                  task_duration)
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.screens.modals import ConfirmScreen, PromptScreen, TextScreen
from fleetdeck.app.tui.widgets.table import cursor_key, sync_rows
from fleetdeck.errors import FleetdeckError

SORTS = (("created", "created"), ("started", "started"), ("name", "name"), ("status", "status"),
         ("user", "user"), ("last_update", "updated"))
"""Server sort fields the ``o`` key cycles through, with the column label each one marks."""
ABORTABLE = {"queued", "in_progress"}
REQUEUEABLE = {"completed", "failed", "aborted", "stopped", "created"}
SPARK_POINTS = 24
MONITOR_PREFIX = ":monitor:/"


class ExperimentsScreen(ViewScreen):
    """Experiments: status, project, name, user, started, duration and key metrics with sparklines."""

    BINDINGS = [
        Binding("d", "open", "Describe", id="experiments.open"),
        Binding("l", "open('console')", "Logs", id="experiments.logs"),
        Binding("space", "mark", "Mark", id="experiments.mark"),
        Binding("c", "compare", "Compare", id="experiments.compare"),
        Binding("slash", "filter", "Filter", id="experiments.filter"),
        Binding("f", "faults", "Faults only", id="experiments.faults"),
        Binding("o", "sort", "Sort", id="experiments.sort"),
        Binding("O", "reverse", "Reverse", id="experiments.reverse", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", id="experiments.next-page", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", id="experiments.prev-page", show=False),
        Binding("y", "raw", "Raw", id="experiments.raw", show=False),
        Binding("a", "abort", "Abort", id="experiments.abort"),
        Binding("r", "requeue", "Requeue", id="experiments.requeue"),
        Binding("e", "enqueue", "Enqueue", id="experiments.enqueue"),
        Binding("escape", "clear", "Clear", id="experiments.clear", show=False),
    ]
    MUTATING = frozenset({"abort", "requeue", "enqueue"})

    def __init__(self, query: TaskQuery | None = None) -> None:
        super().__init__()
        self.base_query = query or TaskQuery()
        self.query_state = self.base_query
        self.filter_text = ""
        self.faults_only = False
        self.marked: set[str] = set()
        self.rows: dict[str, dict[str, Any]] = {}
        self.page_tokens: list[str | None] = [None]
        self.next_token: str | None = None
        self.metric_keys: list[str] = []
        self.sparks: dict[tuple[str, str], tuple[int, str]] = {}
        self.painted = 0
        """How many times the table was painted from a poll (benchmarks and tests wait on it)."""
        self._columns: tuple[str, ...] = ()
        self.poller: Poller[Page] = Poller(self, self._fetch, self._apply, self._failed, 2.0, "experiments")

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter: words match the name; status:failed project:NAME user:NAME tag:T",
                    id="filter")
        yield Static(id="table-info")
        table: DataTable[Any] = DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.poller.interval = self.fd_app.poll_s
        self.query_one("#tasks", DataTable).focus()
        self.poller.poll_now()

    # -- data ------------------------------------------------------------------------------

    def current_query(self) -> TaskQuery:
        query = self.query_state.with_filter(self.filter_text) if self.filter_text else replace(
            self.query_state, name="", status=self.base_query.status, project=self.base_query.project,
            user=self.base_query.user, tag=self.base_query.tag)
        if self.faults_only:
            query = replace(query, status=("failed",))
        return query

    def _fetch(self) -> Page:
        return self.source.tasks(self.current_query(), self.page_tokens[-1])

    def _stale_sparks(self, items: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
        """(task id, metric key, summary) of the sparklines missing or older than the row's metric."""
        wanted = []
        for task in items:
            for key in self.metric_keys:
                summary = (task.get("metrics") or {}).get(key)
                cached = self.sparks.get((task["id"], key))
                if summary and (cached is None or cached[0] != summary.get("count")):
                    wanted.append((task["id"], key, summary))
        return wanted

    def _load_sparks(self, items: list[dict[str, Any]]) -> None:
        """After the page is painted, read a short downsampled series per stale sparkline (a thread)."""
        wanted = self._stale_sparks(items)
        if not wanted:
            return

        def fetch() -> None:
            found: dict[tuple[str, str], tuple[int, str]] = {}
            for task_id, key, summary in wanted:
                try:
                    series = self.source.series(task_id, summary["metric"], summary["variant"], SPARK_POINTS)
                    line = sparkline(series["values"])
                except FleetdeckError:
                    line = ""  # no points stored (yet): the value column still shows
                found[(task_id, key)] = (summary.get("count", 0), line)
            self.app.call_from_thread(self._sparks_loaded, found)

        self.run_worker(fetch, thread=True, group="sparklines", exclusive=True, exit_on_error=False)

    def _sparks_loaded(self, found: dict[tuple[str, str], tuple[int, str]]) -> None:
        self.sparks.update(found)
        self._sync_cells()

    def _sync_cells(self) -> None:
        """Show :attr:`rows` in the table (only the cells that changed are redrawn)."""
        sync_rows(self.query_one("#tasks", DataTable), [(key, self._cells(task)) for key, task in self.rows.items()])

    def _apply(self, page: Page) -> None:
        self.poll_succeeded()
        self.next_token = page.next_token
        if not self.metric_keys:
            self.metric_keys = _pick_metric_keys(page.items, self.fd_app.key_metrics)
        self._paint(page.items)
        self._load_sparks(page.items)

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self._update_info(error=str(error))

    # -- table -----------------------------------------------------------------------------

    def _column_labels(self) -> list[tuple[str, str]]:
        field = self.query_state.order_by.lstrip("-")
        arrow = "▼" if self.query_state.order_by.startswith("-") else "▲"
        labels = []
        for key, label in (("mark", " "), ("status", "status"), ("project", "project"), ("name", "name"),
                           ("user", "user"), ("started", "started"), ("duration", "duration")):
            sorted_here = (key == field) or (key == "started" and field == "created")
            labels.append((key, f"{label} {arrow}" if sorted_here and key != "mark" else label))
        for key in self.metric_keys:
            labels.append((f"m:{key}", _metric_label(key)))
        return labels

    def _cells(self, task: dict[str, Any]) -> list[Any]:
        now = self.fd_app.clock()
        started = task.get("started") or task.get("created")
        cells: list[Any] = [
            Text("●", style="bold yellow") if task["id"] in self.marked else Text(" "),
            _status_cell(task, self.fd_app.waste.get(task["id"])),
            literal(task.get("project_name", ""), limit=40),
            literal(task.get("name", ""), limit=80),
            literal(task.get("user", ""), limit=30),
            Text(f"{age(now - started)} ago" if started else "-"),
            Text(duration(task_duration(task, now))),
        ]
        for key in self.metric_keys:
            summary = (task.get("metrics") or {}).get(key)
            if not summary:
                cells.append(Text("-", style="dim"))
                continue
            # The sparkline's cells are reserved before it loads, so the column does not jump when it arrives.
            spark = self.sparks.get((task["id"], key), (0, ""))[1]
            cell = Text(number(summary.get("last")))
            cell.append(" " + spark.ljust(SPARK_CELLS), style="cyan")
            cells.append(cell)
        return cells

    def _paint(self, items: list[dict[str, Any]]) -> None:
        table = self.query_one("#tasks", DataTable)
        labels = self._column_labels()
        columns = tuple(label for _, label in labels)
        with self.app.batch_update():
            selected = cursor_key(table)
            rebuilt = columns != self._columns
            if rebuilt:  # a metric column came or went, or the sort arrow moved
                table.clear(columns=True)
                for key, label in labels:
                    table.add_column(label, key=key)
                self._columns = columns
            self.rows = {task["id"]: task for task in items}
            self._sync_cells()
            if rebuilt and selected in self.rows:
                table.move_cursor(row=list(self.rows).index(selected), animate=False)
        self.painted += 1
        self._update_info()
        self.refresh_bindings()

    def _update_info(self, error: str | None = None) -> None:
        query = self.current_query()
        parts = [f"page {len(self.page_tokens)}", f"{len(self.rows)} rows" + (" (more: ])" if self.next_token else "")]
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if self.faults_only:
            parts.append("faults only")
        parts.append(f"sort: {query.order_by}")
        if self.marked:
            parts.append(f"{len(self.marked)} marked")
        info = Text(" · ".join(parts), style="dim")
        if error:
            info.append(f"  {error}", style="red")
        if not self.rows and not error:
            info.append("  no experiments match" if (self.filter_text or self.faults_only)
                        else "  no experiments yet: run `fleetdeck demo` or a script with Task.init", style="yellow")
        self.query_one("#table-info", Static).update(info)

    # -- selection -------------------------------------------------------------------------

    def selected(self) -> dict[str, Any] | None:
        key = cursor_key(self.query_one("#tasks", DataTable))
        return self.rows.get(key) if key else None

    def targets(self) -> list[dict[str, Any]]:
        """The marked rows on this page, else the row under the cursor."""
        marked = [task for key, task in self.rows.items() if key in self.marked]
        if marked:
            return marked
        row = self.selected()
        return [row] if row else []

    def allows(self, action: str) -> bool:
        if action == "abort":
            return any(t.get("status") in ABORTABLE for t in self.targets())
        if action == "requeue":
            return any(t.get("status") in REQUEUEABLE and t.get("queue") for t in self.targets())
        if action == "enqueue":
            return any(t.get("status") in REQUEUEABLE for t in self.targets())
        if action == "compare":
            return len(self.marked) >= 2
        return True

    @on(DataTable.RowHighlighted, "#tasks")
    def _row_highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#tasks")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenTask(str(event.row_key.value)))

    # -- actions ---------------------------------------------------------------------------

    def action_open(self, tab: str = "overview") -> None:
        row = self.selected()
        if row:
            self.post_message(OpenTask(row["id"], tab))

    def action_mark(self) -> None:
        key = cursor_key(self.query_one("#tasks", DataTable))
        if key is None:
            return
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        table = self.query_one("#tasks", DataTable)
        table.update_cell(key, "mark", self._cells(self.rows[key])[0])
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)
        self._update_info()
        self.refresh_bindings()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more experiments with space first", severity="warning")
            return
        from fleetdeck.app.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(sorted(self.marked, key=self._mark_order)))

    def _mark_order(self, key: str) -> int:
        order = list(self.rows)
        return order.index(key) if key in order else len(order)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._requery()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#tasks", DataTable).focus()

    def set_filter(self, text: str) -> None:
        """Apply a filter as if typed after ``/`` (used by ``:experiments TEXT``)."""
        box = self.query_one("#filter", Input)
        box.display = bool(text)
        box.value = text
        self.filter_text = text.strip()
        self._requery()

    def _requery(self) -> None:
        self.page_tokens = [None]
        self.poller.poll_now(invalidate=True)

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if self.filter_text or box.display:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.query_one("#tasks", DataTable).focus()
            self._requery()
        elif self.faults_only:
            self.action_faults()
        elif self.marked:
            self.marked.clear()
            self._columns = ()
            self._requery()

    def action_faults(self) -> None:
        self.faults_only = not self.faults_only
        self._requery()

    def action_sort(self) -> None:
        fields = [name for name, _ in SORTS]
        current = self.query_state.order_by.lstrip("-")
        following = fields[(fields.index(current) + 1) % len(fields)] if current in fields else fields[0]
        descending = following in ("created", "started", "last_update")
        self.query_state = replace(self.query_state, order_by=("-" if descending else "") + following)
        self._requery()

    def action_reverse(self) -> None:
        order = self.query_state.order_by
        self.query_state = replace(self.query_state, order_by=order[1:] if order.startswith("-") else "-" + order)
        self._requery()

    @on(DataTable.HeaderSelected, "#tasks")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        field = {"started": "started", "name": "name", "status": "status", "user": "user"}.get(
            str(event.column_key.value))
        if field is None:
            return
        order = self.query_state.order_by
        self.query_state = replace(self.query_state, order_by=("" if order == "-" + field else "-") + field)
        self._requery()

    def action_page(self, step: int) -> None:
        if step > 0 and self.next_token:
            self.page_tokens.append(self.next_token)
        elif step < 0 and len(self.page_tokens) > 1:
            self.page_tokens.pop()
        else:
            return
        self.poller.poll_now(invalidate=True)

    def action_raw(self) -> None:
        row = self.selected()
        if row:
            self.app.push_screen(TextScreen(f"task {row['id']}", json.dumps(row, indent=2, ensure_ascii=False)))

    def action_abort(self) -> None:
        tasks = [t for t in self.targets() if t.get("status") in ABORTABLE]
        self._confirm_then("Abort", tasks, self.source.abort)

    def action_requeue(self) -> None:
        tasks = [t for t in self.targets() if t.get("status") in REQUEUEABLE and t.get("queue")]
        self._confirm_then("Requeue", tasks, self.source.requeue)

    def action_enqueue(self) -> None:
        tasks = [t for t in self.targets() if t.get("status") in REQUEUEABLE]
        if not tasks:
            return

        def chosen(queue: str | None) -> None:
            if queue:
                self.run_action(f"enqueued {len(tasks)} on {queue}",
                                lambda: [self.source.requeue(t, queue) for t in tasks])

        self.app.push_screen(PromptScreen(f"Enqueue {len(tasks)} experiment(s) on queue:", "default"), chosen)

    def _confirm_then(self, verb: str, tasks: list[dict[str, Any]], act: Any) -> None:
        if not tasks:
            return
        names = [f"{t.get('name', '')} ({t['id'][:8]})" for t in tasks]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                self._columns = ()
                self.run_action(f"{verb.lower()}ed {len(tasks)} experiment(s)", lambda: [act(t) for t in tasks])

        self.app.push_screen(ConfirmScreen(verb, names), confirmed)


def _status_cell(task: dict[str, Any], waste: str | None) -> Text:
    """The status, with a ⚠ when the cost feature flags the run as wasting its GPUs right now."""
    cell = status_text(task.get("status", ""))
    if waste:
        cell.append(" ⚠", style="bold yellow")
    return cell


def _pick_metric_keys(items: list[dict[str, Any]], configured: list[str] | None, limit: int = 2) -> list[str]:
    """Key metrics to show: the configured ones, else the most common ones on this page."""
    if configured:
        return list(configured)[:4]
    counts: Counter[str] = Counter()
    for task in items:
        for key in task.get("metrics") or {}:
            if not key.startswith(MONITOR_PREFIX):
                counts[key] += 1
    return [key for key, _ in counts.most_common(limit)]


def _metric_label(key: str) -> str:
    from urllib.parse import unquote

    metric, _, variant = key.partition("/")
    return f"{unquote(metric)}/{unquote(variant)}"[:24]
