"""Benchmark: a cost and waste report over 10,000 tasks with 10 s resource samples (target <= 1 s).

    .venv/bin/python bench/bench_costs.py           # 10,000 tasks
    .venv/bin/python bench/bench_costs.py --quick   # 1,000 tasks, a smoke run

An embedded data dir is populated in-process through the store's and the event store's own write
paths (journal commit, crash-atomic event batches; fdatasync skipped while populating): tasks over the last 7 days, 10 min to 2 h
each, on 1, 2, 4 or 8 GPUs of 24 hosts, each with the monitor's series (``cpu.percent``,
``process.rss_mb`` and per GPU ``util``, ``mem_used_mib``, ``power_w``) at one point per 10 s.
One task in five has an input-bound stretch (GPU 3 %, CPU 100 %) of 15-60 min, so the waste
path finds something. Then the report runs the way the server runs it:

- at finish: each finished task's held-idle summary is computed once and stored, as the server's
  status route does in the background when a task ends (reported as the mean per task);
- first: the first report on this data (summaries stored; running tasks read from their samples);
- restarted: a freshly opened store and event store (nothing in memory; the stored summaries are
  read; the OS page cache is warm);
- warm: the same report again (summaries in memory; running tasks re-read when they changed);
- each grouping, and the live flags of running tasks.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import no_fdatasync

from fleetdeck.server_lite.costs import cost_report, running_flags, summarise_finished_task
from fleetdeck.server_lite.pricing import PricingLoader
from fleetdeck.server_lite.routes.fleet import HOSTS
from fleetdeck.server_lite.routes.projects import project_id_for
from fleetdeck.server_lite.runner import open_state
from fleetdeck.server_lite.tasks import TASKS, TERMINAL

SAMPLE_S = 10.0
HOST_COUNT = 24
GPUS_PER_HOST = 8
GPU_MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S")


def populate(data_dir: Path, count: int, now: float, seed: int = 8) -> dict[str, int]:
    """Write ``count`` tasks and their monitor samples; returns the volume written."""
    rng = np.random.default_rng(seed)
    state = open_state(data_dir)
    points = series = 0
    try:
        for h in range(HOST_COUNT):
            state.store.insert(HOSTS, {"id": f"{h:032x}", "name": f"gpu-{h:02d}", "created": now - 8 * 86400,
                                       "gpus": {"count": GPUS_PER_HOST, "model": GPU_MODELS[h % 3]},
                                       "price_per_gpu_hour": None, "price_per_hour": None})
        records = []
        for i in range(count):
            gpus = int(rng.choice([1, 1, 1, 2, 2, 4, 8]))
            host = int(rng.integers(HOST_COUNT))
            first = int(rng.integers(0, GPUS_PER_HOST - gpus + 1))
            length = float(rng.uniform(600, 7200))
            started = now - float(rng.uniform(length, 7 * 86400))
            running = i % 500 == 0
            ended = None if running else started + length
            end = now if running else started + length
            model = GPU_MODELS[host % 3]
            task = {"id": f"{i + 1:032x}", "name": f"run-{i:05d}", "project": project_id_for(f"p{i % 12}"),
                    "project_name": f"p{i % 12}", "user": f"user{i % 9}", "queue": ("default", "big", "spot")[i % 3],
                    "type": "training", "status": "in_progress" if running else "completed", "created": started - 5,
                    "started": started, "ended": ended, "last_update": end, "tags": [], "metrics": {},
                    "runtime": {"host": f"gpu-{host:02d}", "gpus": list(range(first, first + gpus))},
                    "environment": {"gpus": [{"index": g, "name": model, "memory_total_mib": 81559}
                                             for g in range(first, first + gpus)]}}
            records.append({"o": "p", "c": TASKS, "d": task})
            if len(records) == 2000:
                state.store._commit(records)  # the store's own journal path, one fsync per 2000 tasks
                records = []
            times = np.arange(started + SAMPLE_S, end + 1e-9, SAMPLE_S)
            n = len(times)
            util = np.clip(rng.normal(93, 4, n), 0, 100)
            cpu = np.clip(rng.normal(60, 10, n), 0, 400)
            if i % 5 == 0 and n > 200:
                stall = int(rng.uniform(90, min(360, n - 10)))
                at = int(rng.integers(0, n - stall))
                util[at:at + stall] = 3.0
                cpu[at:at + stall] = 100.0
            groups = [("cpu.percent", cpu), ("process.rss_mb", np.full(n, 5200.0))]
            for g in range(first, first + gpus):
                groups += [(f"gpu.{g}.util", util), (f"gpu.{g}.mem_used_mib", np.full(n, 61000.0)),
                           (f"gpu.{g}.power_w", util * 6.5)]
            state.events.append(task["id"], {"batch_id": f"seed-{i}", "scalars": [
                {"metric": ":monitor:", "variant": v, "iterations": list(range(n)), "values": vals.tolist(),
                 "timestamps": times.tolist()} for v, vals in groups]})
            points += n * len(groups)
            series += len(groups)
        if records:
            state.store._commit(records)
    finally:
        state.events.close()
        state.store.close()
    return {"tasks": count, "series": series, "points": points}


def timed(fn, repeat: int = 1) -> tuple[tuple[float, float], object]:  # type: ignore[no-untyped-def]
    """Median wall-clock and CPU seconds of ``repeat`` calls, and the last result.

    CPU time is shown next to wall time because a report is single-threaded and CPU-bound: on a
    busy shared machine wall time mostly measures the wait for a core.
    """
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return (statistics.median(walls), statistics.median(cpus)), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks instead of 10,000")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep the populated data dir here")
    args = parser.parse_args()
    count = args.tasks or (1_000 if args.quick else 10_000)
    now = time.time()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-costs-"))
    data_dir = root / "data"
    book = PricingLoader(user=root / "no-user-pricing.toml").load()
    try:
        t0 = time.perf_counter()
        if not (data_dir / "docs").exists():
            with no_fdatasync():
                volume = populate(data_dir, count, now)
        else:
            volume = {"tasks": count, "series": -1, "points": -1}
        populate_s = time.perf_counter() - t0
        since = now - 7 * 86400

        def report_once(by: str = "project") -> dict:  # type: ignore[type-arg]
            return cost_report(state, book, by=by, since=since, now=now)

        state = open_state(data_dir)
        try:
            # What the status route does when a task ends (a background task after the answer).
            ended = [t["id"] for t in state.store.find(TASKS, {"status": {"$in": sorted(TERMINAL)}}, fields=["id"])]
            started = time.perf_counter()
            for task_id in ended:
                summarise_finished_task(state, task_id, book.waste)
            at_finish_s = (time.perf_counter() - started) / max(1, len(ended))
            first_s, _ = timed(report_once)
        finally:
            state.events.close()
            state.store.close()
        state = open_state(data_dir)  # a restarted server: nothing in memory, summaries stored
        try:
            cold_s, report = timed(report_once)
            warm_s, _ = timed(report_once, repeat=3)
            by_s = {by: timed(lambda by=by: report_once(by), repeat=3)[0] for by in ("user", "host", "queue", "task")}
            flags_s, flags = timed(lambda: running_flags(state, book), repeat=3)
        finally:
            state.events.close()
            state.store.close()
        assert isinstance(report, dict)
        totals = report["totals"]
        print(f"cost report over {volume['tasks']:,} tasks, {volume['series']:,} series, "
              f"{volume['points']:,} points at {SAMPLE_S:.0f} s (populated in {populate_s:.1f} s)")
        print(f"each finished task summarised once when it ends: {at_finish_s * 1000:.1f} ms a task "
              f"({len(ended):,} tasks), off the report's path")
        print(f"{'case':<36}{'wall s':>9}{'cpu s':>9}{'target':>9}")
        rows = [("first report", first_s, "<= 1.0"),
                ("report by project, restarted", cold_s, "<= 1.0"), ("report by project, warm", warm_s, "<= 1.0")]
        rows += [(f"report by {by}, warm", s, "") for by, s in by_s.items()]
        rows.append((f"live flags ({len(flags)} flagged of running)", flags_s, ""))  # type: ignore[arg-type]
        for name, (wall, cpu), target in rows:
            print(f"{name:<36}{wall:>9.3f}{cpu:>9.3f}{target:>9}")
        waste = totals["waste"]
        print(f"tasks priced {report['stats']['tasks']:,}; cost ${totals['cost']:,.0f}; waste: held idle "
              f"{waste['held_idle']['gpu_hours']:,.0f} GPU-h, idle capacity {waste['idle_capacity']['gpu_hours']:,.0f} "
              f"GPU-h; top waster: {report['top_wasters'][0]['reason'] if report['top_wasters'] else '-'}")
        return 0 if max(cold_s[0], warm_s[0]) <= 1.0 or args.quick else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
