"""Metric curves drawn with plotext, one or several series overlaid.

Plotting costs about 10–14 µs per point per series on every redraw, so the view asks the server
for about twice the plot width of points per series (min/max buckets keep spikes) and the chart
only redraws when its data or size changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from textual.message import Message
from textual_plotext import PlotextPlot

from fleetdeck.app.tui.fmt import clean


@dataclass(frozen=True)
class Curve:
    """One series to draw."""

    label: str
    iterations: Sequence[int]
    values: Sequence[float | None]


class MetricChart(PlotextPlot):
    """A line chart of :class:`Curve` objects with a title; empty with a message when no data.

    Its owner fetches :attr:`points_wanted` points per series. When the width the chart is drawn
    at asks for a different number than the curves were fetched for (the fetch ran before the
    first layout, or the terminal was resized), the chart posts :class:`WidthChanged` so the owner
    reads the series again at the right resolution.
    """

    class WidthChanged(Message):
        """The drawn curves were fetched for another width: fetch them again."""

        def __init__(self, chart: MetricChart) -> None:
            super().__init__()
            self.chart = chart

        @property
        def control(self) -> MetricChart:
            return self.chart

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 8; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.curves: list[Curve] = []
        self.title = ""
        self.fetched_for = 0
        """The :attr:`points_wanted` the drawn curves were fetched with."""

    def show(self, title: str, curves: list[Curve], fetched_for: int) -> None:
        """Replace the drawn curves (None values are gaps; NaN/inf points are skipped).

        ``fetched_for`` is the :attr:`points_wanted` the owner asked the server for.
        """
        self.title = clean(title, 200)
        self.curves = curves
        self.fetched_for = fetched_for
        self._check_width()
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title or "no series selected")
        for curve in curves:
            xs, ys = [], []
            for x, y in zip(curve.iterations, curve.values):
                if y is not None and math.isfinite(y):
                    xs.append(x)
                    ys.append(y)
            if xs:
                plt.plot(xs, ys, label=clean(curve.label, 60) if len(curves) > 1 else None, marker="braille")
        plt.xlabel("iteration")
        self.refresh()

    def on_resize(self) -> None:
        self._check_width()

    def _check_width(self) -> None:
        if self.curves and self.size.width and self.points_wanted != self.fetched_for:
            self.post_message(self.WidthChanged(self))

    @property
    def points_wanted(self) -> int:
        """Points per series worth fetching: about two per column of the plot."""
        return max(64, 2 * (self.size.width or 100))
