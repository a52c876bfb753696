"""Costs view: GPU cost and waste per group, a per-day chart, and the top wasters.

Import path: ``fleetdeck.app.tui.screens.costs.CostsScreen`` (constructed with a
:class:`fleetdeck.client.Client`; the app mounts it as the ``costs`` mode). Data comes from
``GET /costs/report``; ``Enter`` on a top waster (or on a task row when grouped by task) opens
that experiment. ``g`` cycles the grouping, ``p`` the period.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static
from textual_plotext import PlotextPlot

from fleetdeck.app.tui.fmt import literal
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError

GROUPINGS = ("project", "user", "host", "queue", "task")
PERIODS: tuple[tuple[str, float], ...] = (("1d", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))
WASTE_KINDS = (("held_idle", "held idle"), ("orphaned", "orphaned"), ("idle_capacity", "idle cap"))
COST_COLUMNS = ("key", "tasks", "gpu_hours", "cost", "held_idle", "orphaned", "idle_capacity", "waste")
WASTER_COLUMNS = ("task", "name", "kind", "waste", "reason")
REPORT_POLL_S = 30.0
"""A cost report changes slowly; poll it far less often than the live views."""


def money(value: float, currency: str) -> str:
    return f"${value:,.2f}" if currency == "USD" else f"{value:,.2f} {currency}"


class DayChart(PlotextPlot):
    """Cost and waste per UTC day as stacked bars; redrawn only when the days change."""

    DEFAULT_CSS = "DayChart { height: 1fr; min-height: 8; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.days: list[dict[str, Any]] = []
        self.currency = "USD"

    def show(self, days: list[dict[str, Any]], currency: str) -> None:
        if days == self.days and currency == self.currency:
            return
        self.days, self.currency = days, currency
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"per day ({currency}): cost, waste")
        if days:
            labels = [d["day"][5:] for d in days]
            plt.stacked_bar(labels, [[d["cost"] for d in days], [d["waste_cost"] for d in days]],
                            labels=["cost", "waste"])
        self.refresh()


class CostsScreen(ViewScreen):
    """The cost table on top; per-day chart and top wasters below."""

    DEFAULT_CSS = """
    CostsScreen #costs-info { height: 1; padding: 0 1; }
    CostsScreen #costs-table { height: 1fr; }
    CostsScreen #costs-bottom { height: 1fr; }
    CostsScreen #costs-chart { width: 2fr; }
    CostsScreen #costs-wasters-pane { width: 3fr; }
    """
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("g", "cycle_grouping", "Group by", id="costs.group"),
        Binding("p", "cycle_period", "Period", id="costs.period"),
        Binding("r", "refresh", "Refresh", id="costs.refresh"),
        Binding("tab", "switch_table", "Switch table", id="costs.switch", show=False),
    ]

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.by = "project"
        self.period = 1
        """Index into PERIODS (7 days by default)."""
        self.report: dict[str, Any] | None = None
        self.poller: Poller[dict[str, Any]] = Poller(self, self._fetch, self._apply, self._failed,
                                                      REPORT_POLL_S, "costs")

    def compose_body(self) -> ComposeResult:
        yield Static(id="costs-info")
        yield DataTable(id="costs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="costs-bottom"):
            yield DayChart(id="costs-chart")
            with Vertical(id="costs-wasters-pane"):
                yield Label("top wasters (Enter opens the experiment)")
                yield DataTable(id="wasters-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for key in WASTER_COLUMNS:
            self.query_one("#wasters-table", DataTable).add_column(key, key=key)
        self._set_cost_columns()
        self.query_one("#costs-table", DataTable).focus()
        self.poller.poll_now()

    # -- data ------------------------------------------------------------------------------

    def _fetch(self) -> dict[str, Any]:
        since = time.time() - PERIODS[self.period][1]
        return self.client.get("/costs/report", by=self.by, since=since, top=20)  # type: ignore[no-any-return]

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#costs-info", Static).update(Text(str(error), style="red"))

    def _apply(self, report: dict[str, Any]) -> None:
        self.poll_succeeded()
        if report.get("by") != self.by:
            return  # the grouping changed while this poll ran
        self.report = report
        currency = report["currency"]
        totals = report["totals"]
        spent = totals["cost"] + totals["waste"]["orphaned"]["cost"] + totals["waste"]["idle_capacity"]["cost"]
        share = f" ({100 * totals['waste_cost'] / spent:.0f}% of spend)" if spent else ""
        info = (f"last {PERIODS[self.period][0]} by {self.by} · cost {money(totals['cost'], currency)} · "
                f"{totals['gpu_hours']:,.1f} GPU-h · waste {money(totals['waste_cost'], currency)}{share} · "
                f"prices as of {report.get('pricing_as_of') or '?'}   [g] group  [p] period")
        self.query_one("#costs-info", Static).update(Text(info))
        with self.app.batch_update():
            self._sync_rows(self.query_one("#costs-table", DataTable),
                            {row["key"] or "-": self._cost_cells(row, currency) for row in report["rows"]})
            self._sync_rows(self.query_one("#wasters-table", DataTable),
                            {f"{w['kind']}:{w.get('task_id') or w.get('host')}:{n}": self._waster_cells(w, currency)
                             for n, w in enumerate(report["top_wasters"])})
        self.query_one(DayChart).show(report["days"], currency)

    def _cost_cells(self, row: dict[str, Any], currency: str) -> list[Text]:
        key = row["key"] or "-"
        label = f"{key[:8]} {row.get('name') or ''}" if self.by == "task" and not key.startswith("(") else key
        waste = row["waste"]
        return [literal(label, limit=60), Text(str(row["tasks"])), Text(f"{row['gpu_hours']:,.1f}"),
                Text(money(row["cost"], currency)),
                *[Text(money(waste[k]["cost"], currency) if waste[k]["cost"] else "-",
                       style="yellow" if waste[k]["cost"] else "") for k, _ in WASTE_KINDS],
                Text(money(row["waste_cost"], currency), style="bold yellow" if row["waste_cost"] else "")]

    @staticmethod
    def _waster_cells(waster: dict[str, Any], currency: str) -> list[Text]:
        return [Text((waster.get("task_id") or "-")[:8]), literal(waster.get("name") or "", limit=40),
                Text(waster["kind"].replace("_", " ")), Text(money(waster["waste_cost"], currency), style="yellow"),
                literal(waster.get("reason") or "", limit=200)]

    @staticmethod
    def _sync_rows(table: DataTable[Any], rows: dict[str, list[Text]]) -> None:
        """Update a keyed table in place when its rows are the same keys in the same order;
        otherwise rebuild it and put the cursor back on the row it was on."""
        keys = list(rows)
        if [str(k.value) for k in table.rows] == keys:
            columns = [str(c.value) for c in table.columns]
            for key, cells in rows.items():
                for column, cell in zip(columns, cells):
                    table.update_cell(key, column, cell)
            return
        selected = None
        if table.row_count:
            selected = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        if selected in rows:
            table.move_cursor(row=keys.index(selected), animate=False)

    def _set_cost_columns(self) -> None:
        table = self.query_one("#costs-table", DataTable)
        table.clear(columns=True)
        table.add_column(self.by, key="key")
        for key, title in (("tasks", "tasks"), ("gpu_hours", "GPU-h"), ("cost", "cost")):
            table.add_column(title, key=key)
        for key, title in WASTE_KINDS:
            table.add_column(title, key=key)
        table.add_column("waste", key="waste")

    # -- actions ---------------------------------------------------------------------------

    def action_cycle_grouping(self) -> None:
        self.by = GROUPINGS[(GROUPINGS.index(self.by) + 1) % len(GROUPINGS)]
        self._set_cost_columns()
        self.poller.poll_now(invalidate=True)

    def action_cycle_period(self) -> None:
        self.period = (self.period + 1) % len(PERIODS)
        self.poller.poll_now(invalidate=True)

    def action_refresh(self) -> None:
        self.poller.poll_now()

    def action_switch_table(self) -> None:
        target = "#wasters-table" if self.focused and self.focused.id == "costs-table" else "#costs-table"
        self.query_one(target).focus()

    @on(DataTable.RowSelected, "#wasters-table")
    def _waster_selected(self, event: DataTable.RowSelected) -> None:
        if self.report is None:
            return
        index = int(str(event.row_key.value).rsplit(":", 1)[1])
        task_id = self.report["top_wasters"][index].get("task_id")
        if task_id:
            self.post_message(OpenTask(task_id))

    @on(DataTable.RowSelected, "#costs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        if self.by == "task" and not key.startswith("("):
            self.post_message(OpenTask(key))
