"""The Costs view in the real TUI app against a real server: the table, the per-day chart, the
top wasters, and Enter on a waster opening its experiment."""

from __future__ import annotations

import time
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from fleetdeck.app.tui.app import FleetdeckApp
from fleetdeck.app.tui.screens.costs import CostsScreen, DayChart
from fleetdeck.client import Client
from tests.app.pilot import drive, make_app, until
from tests.costs.traces import load, monitor_windows

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}


def _seed(client: Client, config_home: Path) -> tuple[str, str]:
    """A finished busy run in ``vision`` and a running input-bound one (recorded trace) in ``nlp``."""
    (config_home / "fleetdeck").mkdir(parents=True, exist_ok=True)
    (config_home / "fleetdeck" / "pricing.toml").write_text("[waste]\nwindow_minutes = 0.25\n")
    busy = client.create_task(name="resnet", project="vision", runtime={"host": "box", "gpus": [0, 1]},
                              environment={"gpus": [H100, {**H100, "index": 1}]})
    client.set_status(busy["id"], "in_progress")
    client.set_status(busy["id"], "completed")
    slow = client.create_task(name="bert-loader-bound", project="nlp", runtime={"host": "box", "gpus": [2]},
                              environment={"gpus": [{**H100, "index": 2}]})
    client.set_status(slow["id"], "in_progress")
    trace = load(1)
    start, end = trace.phase("busy")[0], trace.phase("input_bound")[1]
    shift = time.time() - end
    windows = monitor_windows(trace.samples, start, end)
    ts, values = windows["gpu.0.util"]
    client.post_events(slow["id"], {"batch_id": "trace-run1", "scalars": [{
        "metric": ":monitor:", "variant": "gpu.2.util", "iterations": list(range(len(ts))), "values": values,
        "timestamps": [t + shift for t in ts]}]})
    return busy["id"], slow["id"]


def test_costs_view_shows_table_chart_and_opens_a_waster(client: Client, isolated_home: Path) -> None:
    busy_id, slow_id = _seed(client, isolated_home / "config")

    async def scenario(app: FleetdeckApp, pilot: Pilot[None]) -> None:
        screen = app.screen
        assert isinstance(screen, CostsScreen)
        table = screen.query_one("#costs-table", DataTable)
        await until(pilot, lambda: table.row_count == 2, message="cost rows")
        assert sorted(str(k.value) for k in table.rows) == ["nlp", "vision"]
        assert str(table.get_cell("nlp", "held_idle")).startswith("$")
        assert str(table.get_cell("vision", "held_idle")) == "-"
        chart = screen.query_one(DayChart)
        assert [d["day"] for d in chart.days] == [time.strftime("%Y-%m-%d", time.gmtime())]
        wasters = screen.query_one("#wasters-table", DataTable)
        assert wasters.row_count == 1
        assert "underused" in str(wasters.get_row_at(0)[4])

        await pilot.press("g")  # group by user
        await until(pilot, lambda: [str(k.value) for k in table.rows] == ["bootstrap-admin"], message="user rows")
        assert screen.by == "user"

        await pilot.press("tab")
        assert app.focused is wasters
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "task_id", None) == slow_id, message="experiment opened")

    drive(make_app(client, view="costs"), scenario, size=(180, 50))
