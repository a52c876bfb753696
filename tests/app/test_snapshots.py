"""SVG snapshots of the main layouts (pytest-textual-snapshot): fixed size, frozen clock, fixed data.

The data is seeded into the data dir with fixed ids and timestamps (``tests/app/seeding.py``) and
served by a real server process; the app's clock is frozen at the data's "now", so ages and
durations are the same on every run. Update with ``pytest tests/app/test_snapshots.py --snapshot-update``
after a deliberate layout change, and look at the SVGs before committing them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from fleetdeck.app.tui.app import FleetdeckApp
from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.screens.compare import CompareScreen
from fleetdeck.app.tui.screens.detail import DetailScreen
from fleetdeck.app.tui.settings import TuiSettings
from fleetdeck.app.tui.widgets.chart import MetricChart
from fleetdeck.app.tui.widgets.series import SeriesPanel
from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess
from tests.app.pilot import until
from tests.app.seeding import FIXED_NOW, seed_events, seed_tasks, task_id

SIZE = (130, 34)
NAMES = {1: "[bold red]not markup[/] \x1b[31mnor escapes", 2: "ünïcødé 日本語 run ✓"}


@pytest.fixture(scope="module")
def snap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("snap")
    data = home / "server-data"
    seed_tasks(data, 24, project="vision", names=NAMES)
    iterations = list(range(0, 1000, 5))
    seed_events(data, task_id(0), {
        "scalars": [{"metric": "loss", "variant": "train", "iterations": iterations,
                     "values": [2.0 * math.exp(-i / 300) + 0.1 * math.sin(i / 20) for i in iterations],
                     "timestamps": [FIXED_NOW - 1000 + i for i in iterations]}],
        "console": [{"line": f"epoch {e}: loss={2.0 * math.exp(-e / 3):.4f}", "ts": FIXED_NOW} for e in range(40)]
        + [{"line": "[red]literal[/] and a very long line " + "=" * 400, "ts": FIXED_NOW}]})
    proc = ServerProcess(data, env={"XDG_CONFIG_HOME": str(home / "config")})
    proc.start()
    try:
        with Client(url=proc.url, token=proc.admin_token) as client:
            client.heartbeat("gpu-1-agent", queues=["default"], status="running", host="gpu-1", task_id=task_id(4), ttl_s=3600,
                             stats={"gpus": [{"util": 91, "mem_used": 70e9, "mem_total": 80e9}], "rss_bytes": 512e6})
            client.heartbeat("gpu-2-agent", queues=["default"], status="stuck", host="gpu-2", stats={}, ttl_s=3600)
            client.enqueue(task_id(7), "default", priority=3)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def snap_client(snap_server: ServerProcess) -> Iterator[Client]:
    with Client(url=snap_server.url, token=snap_server.admin_token) as client:
        yield client


def frozen_app(client: Client, view: str = "experiments", readonly: bool = False) -> FleetdeckApp:
    source = DataSource(client, readonly=readonly, clock=lambda: FIXED_NOW, label="http://127.0.0.1:8008")
    return FleetdeckApp(source, TuiSettings(poll_s=3600), clock=lambda: FIXED_NOW, view=view)


def charts_at_their_width(app: Any) -> bool:
    """Every drawn chart holds the points its laid-out width asks for (not a pre-layout guess)."""
    return all(chart.fetched_for == chart.points_wanted for chart in app.screen.query(MetricChart) if chart.curves)


async def settled(pilot: Any) -> None:
    """Wait until the header's polls (counts, fleet health), the charts and every worker have finished."""
    app = pilot.app
    await until(pilot, lambda: app.summary is not None and app.worker_count is not None
                and not app._summary_poller.in_flight and not app._fleet_poller.in_flight, message="header data")
    await until(pilot, lambda: charts_at_their_width(app), message="charts at their width")
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


def loaded(*keys: str) -> Callable[[Any], Awaitable[None]]:
    """A ``run_before`` that presses ``keys`` once the first view has its data, then lets it settle."""
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await until(pilot, lambda: app.last_ok is not None and getattr(app.screen, "painted", 1), message="data")
        await until(pilot, lambda: not getattr(app.screen, "metric_keys", None) or app.screen.sparks)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.05)
            await app.workers.wait_for_complete()
        await settled(pilot)
    return run_before


def test_experiments(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded())


def test_experiments_marked_and_sorted_by_name(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded("space", "space", "o", "o"))


def test_experiments_faults_only(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded("f"))


def test_experiments_readonly_footer(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client, readonly=True), terminal_size=SIZE, run_before=loaded())


def test_abort_confirmation(snap_compare: Any, snap_client: Client) -> None:
    async def run_before(pilot: Any) -> None:
        await loaded()(pilot)
        table = pilot.app.screen.query_one("#tasks")
        table.move_cursor(row=table.get_row_index(task_id(4)))  # in_progress
        await pilot.press("a")
        await settled(pilot)
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=run_before)


def _detail(tab: str, *keys: str) -> Callable[[Any], Awaitable[None]]:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await loaded()(pilot)
        app.open_task(task_id(0), tab)
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.record is not None)
        if tab == "metrics":
            await until(pilot, lambda: app.screen.query_one("#metric-panel", SeriesPanel).shown, message="curve")
        for key in keys:
            await pilot.press(key)
        await settled(pilot)
    return run_before


@pytest.mark.parametrize("tab", ["overview", "parameters", "metrics", "console", "artifacts", "code", "environment",
                                 "resources"])
def test_detail_tabs(snap_compare: Any, snap_client: Client, tab: str) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=_detail(tab))


def test_compare(snap_compare: Any, snap_client: Client) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await loaded()(pilot)
        app.push_screen(CompareScreen([task_id(0), task_id(1), task_id(2)]))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.tasks)
        await settled(pilot)
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=run_before)


def test_fleet(snap_compare: Any, snap_client: Client) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await until(pilot, lambda: app.last_ok is not None and app.screen.rows)
        await settled(pilot)
    app = frozen_app(snap_client, view="fleet")
    app.source.fleet_hosts = lambda: []  # type: ignore[method-assign]  # layout only: hosts come from issue 5
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_queues(snap_compare: Any, snap_client: Client) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await until(pilot, lambda: app.last_ok is not None and app.screen.entries)
        await settled(pilot)
    assert snap_compare(frozen_app(snap_client, view="queues"), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=(130, 50), run_before=loaded("question_mark"))



def test_experiments_filtered(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded("slash", "r", "u", "n"))


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_experiments_at_other_terminal_sizes(snap_compare: Any, snap_client: Client, size: tuple[int, int]) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=size, run_before=loaded())


def test_command_line(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded("colon", "f", "l"))


def test_raw_record(snap_compare: Any, snap_client: Client) -> None:
    assert snap_compare(frozen_app(snap_client), terminal_size=SIZE, run_before=loaded("y"))


@pytest.mark.parametrize("view", ["triage", "log", "datasets"])
def test_other_views(snap_compare: Any, snap_client: Client, view: str) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await until(pilot, lambda: app.last_ok is not None, message="first poll")
        await settled(pilot)
    assert snap_compare(frozen_app(snap_client, view=view), terminal_size=SIZE, run_before=run_before)
