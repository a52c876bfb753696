"""A list of a task's scalar series beside a chart of the highlighted one.

The listing (``GET /tasks/{id}/scalars``) carries only summaries; the points of one series are
read when it is highlighted, downsampled by the server to about twice the chart's width, so a
1,000,000-point curve costs a few hundred points on the wire and on screen.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.fmt import clean, number
from fleetdeck.app.tui.widgets.chart import Curve, MetricChart
from fleetdeck.errors import FleetdeckError

RESOURCE_TITLE = ":monitor:"
"""Metric title the SDK uses for resource samples (CPU, memory, GPU)."""


class SeriesPanel(Horizontal):
    """Series list (filterable) and a chart.

    Args:
        source: the server.
        task_id: whose series.
        resources: show only resource series (``:monitor:``) instead of only the metrics.
    """

    DEFAULT_CSS = """
    SeriesPanel { height: 1fr; }
    SeriesPanel > Vertical { width: 36; }
    SeriesPanel OptionList { height: 1fr; }
    SeriesPanel #series-note { height: auto; color: $text-muted; }
    """

    def __init__(self, source: DataSource, task_id: str, resources: bool = False, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.task_id = task_id
        self.resources = resources
        self.series: list[dict[str, Any]] = []
        self.shown: dict[str, Any] | None = None
        """The last series drawn (the server's reply), for tests and the status line."""
        self.loaded = False
        self._entry: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(placeholder="filter series", id="series-filter")
            yield OptionList(id="series-list")
            yield Static("loading…", id="series-note")
        yield MetricChart(id="series-chart")

    def on_mount(self) -> None:
        self.load()

    def load(self) -> None:
        """Read the series listing (once; the pane calls it when first shown)."""
        if self.loaded:
            return
        self.loaded = True

        def fetch() -> None:
            try:
                items = self.source.series_list(self.task_id)
            except FleetdeckError as exc:
                self.app.call_from_thread(self._note, f"series unavailable: {exc}")
                return
            self.app.call_from_thread(self._listed, items)

        self.run_worker(fetch, thread=True, group="series-list", exit_on_error=False)

    def _note(self, text: str) -> None:
        self.query_one("#series-note", Static).update(Text(text))

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self.series = [s for s in items if (s["metric"] == RESOURCE_TITLE) == self.resources]
        self._fill("")
        what = "resource series" if self.resources else "metric series"
        self._note(f"{len(self.series):,} {what}" if self.series else f"no {what} recorded")
        if self.series:
            self.show_series(self.series[0])

    def _fill(self, needle: str) -> None:
        options = self.query_one("#series-list", OptionList)
        options.clear_options()
        needle = needle.lower()
        batch = []
        for index, entry in enumerate(self.series):
            label = self._label(entry)
            if needle and needle not in label.lower():
                continue
            prompt = Text(clean(label, 80))
            prompt.append(f"  {number(entry.get('last'))}", style="dim")
            batch.append(Option(prompt, id=str(index)))
        options.add_options(batch)

    def _label(self, entry: dict[str, Any]) -> str:
        return entry["variant"] if self.resources else f"{entry['metric']}/{entry['variant']}"

    @on(Input.Changed, "#series-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value.strip())

    @on(OptionList.OptionHighlighted, "#series-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.show_series(self.series[int(event.option.id)])

    @on(MetricChart.WidthChanged)
    def _refetch(self) -> None:
        if self._entry is not None:
            self.show_series(self._entry)

    def show_series(self, entry: dict[str, Any]) -> None:
        chart = self.query_one(MetricChart)
        metric, variant = entry["metric"], entry["variant"]
        wanted = chart.points_wanted
        self._entry = entry

        def fetch() -> None:
            try:
                data = self.source.series(self.task_id, metric, variant, wanted)
            except FleetdeckError as exc:
                self.app.call_from_thread(self._note, f"{metric}/{variant}: {exc}")
                return
            self.app.call_from_thread(self._draw, entry, data, wanted)

        self.run_worker(fetch, thread=True, group="series-points", exclusive=True, exit_on_error=False)

    def _draw(self, entry: dict[str, Any], data: dict[str, Any], wanted: int) -> None:
        self.shown = data
        title = self._label(entry)
        note = f"{data['total']:,} points" + (f", {len(data['values']):,} drawn" if data.get("downsampled") else "")
        self.query_one(MetricChart).show(f"{title} · {note}", [Curve(title, data["iterations"], data["values"])],
                                          wanted)
