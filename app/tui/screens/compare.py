"""Compare marked experiments: parameters side by side (differences highlighted), curves overlaid."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, OptionList, TabbedContent, TabPane
from textual.widgets.option_list import Option

from fleetdeck.app.tui.fmt import clean, literal
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.widgets.chart import Curve, MetricChart
from fleetdeck.errors import FleetdeckError


class CompareScreen(ViewScreen):
    """Two or more experiments side by side."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="compare.back"),
        Binding("d", "only_differences", "Only differences", id="compare.differences"),
    ]

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__()
        self.task_ids = task_ids
        self.tasks: list[dict[str, Any]] = []
        self.only_differences = False
        self.metrics: list[tuple[str, str]] = []
        self.differing: list[str] = []
        """Parameter keys (``section/name``) whose values differ between the experiments."""
        self.shown_curves: list[Curve] = []
        self.shown_metric: tuple[str, str] | None = None
        """(metric, variant) the chart shows or is loading."""

    def compose_body(self) -> ComposeResult:
        with TabbedContent(id="compare-tabs"):
            with TabPane("Parameters", id="compare-params"):
                yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Curves", id="compare-curves"):
                with Horizontal():
                    yield OptionList(id="compare-metrics")
                    yield MetricChart(id="compare-chart")

    def on_mount(self) -> None:
        def fetch() -> None:
            try:
                tasks = [self.source.task(task_id) for task_id in self.task_ids]
                series = [self.source.series_list(task_id) for task_id in self.task_ids]
            except FleetdeckError as exc:
                self.app.call_from_thread(self.poll_failed, exc)
                return
            self.app.call_from_thread(self._loaded, tasks, series)

        self.run_worker(fetch, thread=True, group="compare", exclusive=True, exit_on_error=False)

    def _loaded(self, tasks: list[dict[str, Any]], series: list[list[dict[str, Any]]]) -> None:
        self.poll_succeeded()
        self.tasks = tasks
        self._fill_params()
        common = None
        for listing in series:
            keys = {(s["metric"], s["variant"]) for s in listing if s["metric"] != ":monitor:"}
            common = keys if common is None else common & keys
        self.metrics = sorted(common or ())
        options = self.query_one("#compare-metrics", OptionList)
        options.clear_options()
        options.add_options([Option(Text(clean(f"{m}/{v}", 60)), id=str(i)) for i, (m, v) in enumerate(self.metrics)])
        if self.metrics:
            self.show_metric(*self.metrics[0])

    def _fill_params(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_column("parameter", key="parameter")
        for task in self.tasks:
            table.add_column(Text(clean(task.get("name", ""), 30)), key=task["id"])
        keys: set[tuple[str, str]] = set()
        for task in self.tasks:
            for section, params in (task.get("hyperparams") or {}).items():
                keys.update((section, name) for name in params)
        self.differing = []
        for section, name in sorted(keys):
            values = []
            for task in self.tasks:
                param = ((task.get("hyperparams") or {}).get(section) or {}).get(name)
                value = param.get("value") if isinstance(param, dict) else param
                values.append("—" if param is None else value if isinstance(value, str) else json.dumps(value))
            differs = len(set(values)) > 1
            if differs:
                self.differing.append(f"{section}/{name}")
            elif self.only_differences:
                continue
            style = "bold yellow" if differs else ""
            table.add_row(literal(f"{section}/{name}", style, limit=60), *(literal(v, style, limit=60) for v in values))

    def action_only_differences(self) -> None:
        self.only_differences = not self.only_differences
        self._fill_params()

    def action_back(self) -> None:
        self.dismiss()

    @on(OptionList.OptionHighlighted, "#compare-metrics")
    def _metric(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.show_metric(*self.metrics[int(event.option.id)])

    @on(MetricChart.WidthChanged, "#compare-chart")
    def _refetch(self) -> None:
        if self.shown_metric is not None:
            self.show_metric(*self.shown_metric)

    def show_metric(self, metric: str, variant: str) -> None:
        chart = self.query_one("#compare-chart", MetricChart)
        wanted = chart.points_wanted
        self.shown_metric = (metric, variant)

        def fetch() -> None:
            curves = []
            try:
                for task in self.tasks:
                    data = self.source.series(task["id"], metric, variant, wanted)
                    curves.append(Curve(task.get("name", task["id"][:8]), data["iterations"], data["values"]))
            except FleetdeckError as exc:
                self.app.call_from_thread(self.notify, f"{metric}/{variant}: {exc}", severity="error")
                return
            self.app.call_from_thread(self._draw, f"{metric}/{variant}", curves, wanted)

        self.run_worker(fetch, thread=True, group="compare-series", exclusive=True, exit_on_error=False)

    def _draw(self, title: str, curves: list[Curve], wanted: int) -> None:
        self.shown_curves = curves
        self.query_one("#compare-chart", MetricChart).show(title, curves, wanted)
