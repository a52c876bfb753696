"""Benchmark the control centre against a real server holding 100,000 tasks.

    .venv/bin/python bench/bench_tui.py           # 100,000 tasks, a 1,000,000-point curve
    .venv/bin/python bench/bench_tui.py --quick   # 10,000 tasks, 100,000 points (smoke run)

Targets (issue 6):

- cold start to the first painted experiments table ≤ 1.5 s: a fresh ``python`` process that
  imports the app, connects, polls and paints (headless, 140x40), timed from just before the
  process is spawned to the first painted page;
- a filter keystroke → the table updated ≤ 150 ms: one character typed into ``/`` (sent to the
  server as ``name=``) until the first screen refresh after the table holds the new page (the
  rows' sparklines load after that and are not counted); median and worst of several keystrokes;
- a 1,000,000-point curve opens ≤ 0.5 s: from opening the experiment's metrics tab until the
  (server-downsampled) curve is drawn.

The data dir is written in-process through the embedded store's own commit path (tests/app/seeding.py,
fdatasync skipped while populating), then served by a real ``fleetdeck server`` process. It is
kept under ``.bench/tui-<N>`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import no_fdatasync  # noqa: E402

from fleetdeck.client import Client  # noqa: E402
from fleetdeck.server_lite.process import ServerProcess  # noqa: E402
from tests.app.seeding import FIXED_NOW, seed_events, seed_tasks, task_id  # noqa: E402

CHILD = r"""
import asyncio, os, sys, time
from fleetdeck.app.tui.app import FleetdeckApp
from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.settings import TuiSettings
from fleetdeck.client import Client

async def main():
    with Client() as client:
        app = FleetdeckApp(DataSource(client), TuiSettings(poll_s=60))
        async with app.run_test(size=(140, 40)) as pilot:
            while not getattr(app.screen, "painted", 0):
                await pilot.pause(0.005)
            print(time.time() - float(os.environ["BENCH_T0"]), len(app.screen.rows))
asyncio.run(main())
"""


def prepare(tasks: int, points: int) -> Path:
    folder = ROOT / ".bench" / f"tui-{tasks}-{points}"
    data = folder / "server-data"
    if (folder / "ready").exists():
        return folder
    started = time.perf_counter()
    with no_fdatasync():
        seed_tasks(data, tasks, project="bench")
        iterations = list(range(points))
        values = [((i * 7919) % 1000) / 1000 + 1.0 / (1 + i / 10000) for i in iterations]
        seed_events(data, task_id(0), {"scalars": [{"metric": "loss", "variant": "train", "iterations": iterations,
                                                    "values": values, "timestamps": [FIXED_NOW] * points}]})
    (folder / "ready").write_text("ok\n")
    print(f"populated {tasks:,} tasks and a {points:,}-point curve in {time.perf_counter() - started:.1f} s")
    return folder


def cold_start(server: ServerProcess, home: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
               "XDG_CONFIG_HOME": str(home / "config"), "BENCH_T0": repr(time.time())}
        env["BENCH_T0"] = repr(time.time())
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"cold-start child failed:\n{done.stderr[-2000:]}")
        elapsed, rows = done.stdout.split()
        assert int(rows) == 50, rows
        times.append(float(elapsed))
    return times


async def in_app(client: Client, keystrokes: str) -> tuple[list[float], float, int, float]:
    from fleetdeck.app.tui.app import FleetdeckApp
    from fleetdeck.app.tui.data import DataSource
    from fleetdeck.app.tui.screens.detail import DetailScreen
    from fleetdeck.app.tui.settings import TuiSettings
    from fleetdeck.app.tui.widgets.series import SeriesPanel

    app = FleetdeckApp(DataSource(client), TuiSettings(poll_s=60))
    filter_times: list[float] = []
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        while not screen.painted:
            await pilot.pause(0.005)
        await app.workers.wait_for_complete()
        await pilot.press("slash")
        for char in keystrokes:
            before = screen.painted
            shown = asyncio.Event()
            started = time.perf_counter()
            # Not ``await pilot.press``: it returns only once the whole process is idle, which
            # includes the sparklines that load after the page (50 more requests); the user sees
            # the new rows at the first screen refresh after the table got them.
            typing = asyncio.create_task(pilot.press(char))
            while screen.painted == before:
                await asyncio.sleep(0.0005)
            app.call_after_refresh(shown.set)
            await shown.wait()
            filter_times.append(time.perf_counter() - started)
            await typing
            await app.workers.wait_for_complete()
        matched = len(screen.rows)
        started = time.perf_counter()
        app.open_task(task_id(0), "metrics")
        while not (isinstance(app.screen, DetailScreen) and app.screen.query(SeriesPanel)
                   and app.screen.query_one("#metric-panel", SeriesPanel).shown):
            await pilot.pause(0.002)
        curve_s = time.perf_counter() - started
        shown = app.screen.query_one("#metric-panel", SeriesPanel).shown
        assert shown is not None
    return filter_times, curve_s, len(shown["values"]), matched  # type: ignore[return-value]


def server_share(client: Client, keystrokes: str) -> tuple[float, list[float], float]:
    """The same requests without the TUI: first page + summary, each filter prefix, the series."""
    def timed(call: Any) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    first = timed(lambda: (client.list_tasks(page_size=50), client.get("/tasks-summary")))
    prefixes = [keystrokes[: i + 1] for i in range(len(keystrokes))]
    filters = [timed(lambda p=p: client.list_tasks(name=p, page_size=50)) for p in prefixes]
    series = timed(lambda: (client.list_series(task_id(0)),
                            client.get_series(task_id(0), "loss", "train", max_points=200)))
    return first, filters, series


KEYSTROKES = "resnet-0999"
"""Typed one character at a time after ``/``; each prefix is a new server query."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 tasks and 100,000 points")
    parser.add_argument("--runs", type=int, default=3, help="cold starts to time")
    args = parser.parse_args()
    tasks, points = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    folder = prepare(tasks, points)
    home = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    server = ServerProcess(folder / "server-data", env={"XDG_CONFIG_HOME": str(home / "config")},
                           log_path=home / "server.log")
    opened = time.perf_counter()
    server.start(timeout=300)
    print(f"server open on {tasks:,} tasks: {time.perf_counter() - opened:.1f} s")
    try:
        with Client(url=server.url, token=server.admin_token) as client:
            warm = time.perf_counter()
            client.list_tasks(page_size=50)
            print(f"GET /tasks (first page, warm-up): {(time.perf_counter() - warm) * 1000:.0f} ms")
            cold = cold_start(server, home, args.runs)
            filters, curve_s, drawn, matched = asyncio.run(in_app(client, KEYSTROKES))
            first_s, server_filters, series_s = server_share(client, KEYSTROKES)
    finally:
        server.stop()
    rows = [
        ("cold start → first painted table", f"{tasks:,} tasks", statistics.median(cold), max(cold), first_s, 1.5),
        ("filter keystroke → table updated", f"{tasks:,} tasks", statistics.median(filters), max(filters),
         statistics.median(server_filters), 0.150),
        ("curve opens (metrics tab)", f"{points:,} points, {drawn} drawn", curve_s, curve_s, series_s, 0.5),
    ]
    print()
    print(f"{'measure':<36}{'data':<28}{'median':>10}{'worst':>10}{'server':>10}{'target':>10}  ok")
    for name, data, median, worst, server_s, target in rows:
        print(f"{name:<36}{data:<28}{median * 1000:>8.0f}ms{worst * 1000:>8.0f}ms{server_s * 1000:>8.0f}ms"
              f"{target * 1000:>8.0f}ms  {'yes' if median <= target else 'NO'}")
    print("\nserver = the same HTTP requests timed without the TUI (median for the filter prefixes)")
    print(f"filter keystrokes: {len(filters)} ({', '.join(f'{t * 1000:.0f}' for t in filters)} ms); "
          f"last filter matched {matched} rows on the page")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
