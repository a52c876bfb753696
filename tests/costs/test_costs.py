"""The cost report engine over a real embedded store and real event files, checked by hand.

Tasks are written straight into the store (as the server would after their status changes) so
that their run times are exact and the expected totals can be worked out on paper below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetdeck.server_lite.costs import GPU_WASTE, IDLE_KEY, cost_report, running_flags, split_by_day
from fleetdeck.server_lite.pricing import PriceBook, PricingLoader
from fleetdeck.server_lite.routes.fleet import HOSTS
from fleetdeck.server_lite.runner import open_state
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.tasks import TASKS

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()
H = 3600.0
NOW = T0 + 30 * H
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-x", "memory_total_mib": 81559}
A100 = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-y", "memory_total_mib": 81920}

USER_PRICING = """
[hosts.lab-a100]
price_per_gpu_hour = 0.90   # on-prem: depreciation + power

[queues.spot]
price_per_gpu_hour = 1.10
"""


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ServerState]:
    st = open_state(tmp_path / "data")
    try:
        yield st
    finally:
        st.events.close()
        st.store.close()


@pytest.fixture
def book(tmp_path: Path) -> PriceBook:
    path = tmp_path / "pricing.toml"
    path.write_text(USER_PRICING)
    return PricingLoader(user=path).load()


def _task(state: ServerState, tid: str, **fields: Any) -> None:
    doc = {"id": tid * 32, "name": f"task-{tid}", "type": "training", "status": "completed", "queue": "default",
           "last_update": fields.get("ended") or NOW, "runtime": {}, "environment": {}, **fields}
    state.store.insert(TASKS, doc)


def _samples(state: ServerState, tid: str, variant: str, times: np.ndarray, values: np.ndarray) -> None:
    state.events.append(tid * 32, {"batch_id": f"{tid}-{variant}-{times[0]:.0f}", "scalars": [{
        "metric": ":monitor:", "variant": variant, "iterations": list(range(len(times))),
        "values": values.tolist(), "timestamps": times.tolist()}]})


@pytest.fixture
def fleet(state: ServerState) -> ServerState:
    """The worked example.

    ====  =========  =====  ==========  =====  ======  ==============  =========================
    task  project    user   host        queue  GPUs    run (h from T0)  price per GPU-hour
    ====  =========  =====  ==========  =====  ======  ==============  =========================
    a     vision     ana    gpu-1       -      0,1     22 - 26          3.00 (H100 model)
    b     vision     bo     lab-a100    spot   0       10 - 11.5        0.90 (host beats queue)
    c     nlp        ana    gpu-1       spot   2       24 - running     1.10 (queue)
    d     nlp        bo     cpu-1       -      none    1 - 6            0.40 per host-hour (inventory)
    e     old        bo     gpu-1       -      3       -50 - -40        outside the period
    ====  =========  =====  ==========  =====  ======  ==============  =========================

    Task c's GPU sat at 3 % for 40 min (25:00-25:40) with its CPU at 100 %; task a's process
    kept its memory on GPU 0 for 30 min after it ended (an orphan episode).
    """
    state.store.insert(HOSTS, {"id": "h1" * 16, "name": "gpu-1", "gpus": {"count": 4, "model": H100["name"]},
                               "price_per_gpu_hour": None, "price_per_hour": None, "created": T0})
    state.store.insert(HOSTS, {"id": "h2" * 16, "name": "cpu-1", "gpus": {"count": 0, "model": None},
                               "price_per_gpu_hour": None, "price_per_hour": 0.40, "created": T0})
    _task(state, "a", project_name="vision", user="ana", started=T0 + 22 * H, ended=T0 + 26 * H,
          runtime={"host": "gpu-1", "gpus": [0, 1]}, environment={"gpus": [H100, {**H100, "index": 1}]})
    _task(state, "b", project_name="vision", user="bo", started=T0 + 10 * H, ended=T0 + 11.5 * H, queue="spot",
          runtime={"host": "lab-a100", "gpus": [0]}, environment={"gpus": [A100]})
    _task(state, "c", project_name="nlp", user="ana", started=T0 + 24 * H, ended=None, status="in_progress",
          queue="spot", runtime={"host": "gpu-1", "gpus": [2]}, environment={"gpus": [{**H100, "index": 2}]})
    _task(state, "d", project_name="nlp", user="bo", started=T0 + 1 * H, ended=T0 + 6 * H,
          runtime={"host": "cpu-1"})
    _task(state, "e", project_name="old", user="bo", started=T0 - 50 * H, ended=T0 - 40 * H,
          runtime={"host": "gpu-1", "gpus": [3]}, environment={"gpus": [H100]})
    times = np.arange(T0 + 24 * H + 10, NOW + 1, 10.0)
    idle = (times > T0 + 25 * H) & (times <= T0 + 25 * H + 2400)
    _samples(state, "c", "gpu.2.util", times, np.where(idle, 3.0, 95.0))
    _samples(state, "c", "cpu.percent", times, np.where(idle, 100.0, 40.0))
    state.store.insert(GPU_WASTE, {"id": "o1" * 16, "kind": "orphaned", "host": "gpu-1", "gpu": 0, "task_id": "a" * 32,
                                   "start": T0 + 26 * H, "end": T0 + 26.5 * H, "gpu_hours": 0.5,
                                   "reason": "GPU 0 on gpu-1: 20.1 GiB held by processes of finished task aaaaaaaa"})
    return state


HELD_IDLE_HOURS = 2400 / H * 0.97
IDLE_CAPACITY_HOURS = (30 - 4 - 0.5) + (30 - 4) + (30 - 6) + 30  # gpu-1 GPUs 0..3 since T0, minus held and orphaned


def _rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in report["rows"]}


def test_totals_match_the_hand_computation(fleet: ServerState, book: PriceBook) -> None:
    report = cost_report(fleet, book, by="project", since=T0, now=NOW)
    totals = report["totals"]
    assert totals["tasks"] == 4
    assert totals["gpu_hours"] == pytest.approx(2 * 4 + 1.5 + 6)
    assert totals["cost"] == pytest.approx(8 * 3.00 + 1.5 * 0.90 + 6 * 1.10 + 5 * 0.40)
    waste = totals["waste"]
    assert waste["held_idle"]["gpu_hours"] == pytest.approx(HELD_IDLE_HOURS)
    assert waste["held_idle"]["cost"] == pytest.approx(HELD_IDLE_HOURS * 1.10)
    assert waste["orphaned"] == pytest.approx({"gpu_hours": 0.5, "cost": 0.5 * 3.00})
    assert waste["idle_capacity"]["gpu_hours"] == pytest.approx(IDLE_CAPACITY_HOURS)
    assert waste["idle_capacity"]["cost"] == pytest.approx(IDLE_CAPACITY_HOURS * 3.00)
    assert totals["waste_cost"] == pytest.approx(HELD_IDLE_HOURS * 1.10 + 1.5 + IDLE_CAPACITY_HOURS * 3.00)


def test_grouped_by_project_user_host_queue(fleet: ServerState, book: PriceBook) -> None:
    by_project = _rows(cost_report(fleet, book, by="project", since=T0, now=NOW))
    assert by_project["vision"]["cost"] == pytest.approx(24 + 1.35)
    assert by_project["vision"]["waste"]["orphaned"]["cost"] == pytest.approx(1.5)
    assert by_project["nlp"]["cost"] == pytest.approx(6.6 + 2.0)
    assert by_project["nlp"]["waste_cost"] == pytest.approx(HELD_IDLE_HOURS * 1.10)
    assert by_project[IDLE_KEY]["cost"] == 0
    assert by_project[IDLE_KEY]["waste"]["idle_capacity"]["gpu_hours"] == pytest.approx(IDLE_CAPACITY_HOURS)
    assert "old" not in by_project
    by_user = _rows(cost_report(fleet, book, by="user", since=T0, now=NOW))
    assert by_user["ana"]["cost"] == pytest.approx(24 + 6.6)
    assert by_user["bo"]["cost"] == pytest.approx(1.35 + 2.0)
    by_host = _rows(cost_report(fleet, book, by="host", since=T0, now=NOW))
    assert by_host["gpu-1"]["cost"] == pytest.approx(30.6)
    assert by_host["gpu-1"]["waste_cost"] == pytest.approx(HELD_IDLE_HOURS * 1.1 + 1.5 + IDLE_CAPACITY_HOURS * 3)
    assert by_host["lab-a100"]["cost"] == pytest.approx(1.35)
    assert by_host["cpu-1"]["cost"] == pytest.approx(2.0)
    assert by_host["cpu-1"]["gpu_hours"] == 0
    by_queue = _rows(cost_report(fleet, book, by="queue", since=T0, now=NOW))
    assert by_queue["spot"]["cost"] == pytest.approx(1.35 + 6.6)
    assert by_queue["default"]["cost"] == pytest.approx(24 + 2.0)
    by_task = _rows(cost_report(fleet, book, by="task", since=T0, now=NOW))
    assert by_task["c" * 32]["name"] == "task-c" and by_task["c" * 32]["status"] == "in_progress"


def test_per_day_split_at_utc_midnight(fleet: ServerState, book: PriceBook) -> None:
    days = {d["day"]: d for d in cost_report(fleet, book, since=T0, now=NOW)["days"]}
    assert set(days) == {"2026-11-20", "2026-11-21"}
    assert days["2026-11-20"]["cost"] == pytest.approx(2 * 2 * 3.00 + 1.35 + 2.0)  # a's first 2 h, b, d
    assert days["2026-11-21"]["cost"] == pytest.approx(2 * 2 * 3.00 + 6.6)
    assert sum(d["waste_cost"] for d in days.values()) == pytest.approx(
        HELD_IDLE_HOURS * 1.1 + 1.5 + IDLE_CAPACITY_HOURS * 3)
    assert list(split_by_day(T0 - 1800, T0 + 5400)) == [("2026-11-19", 0.25), ("2026-11-20", 0.75)]


def test_period_clips_run_time_and_waste(fleet: ServerState, book: PriceBook) -> None:
    """From 25:20 on: a's last 40 min, c's 4 h 40 min, and the last 20 of c's 40 idle minutes."""
    since = T0 + 25 * H + 1200
    report = cost_report(fleet, book, by="task", since=since, now=NOW)
    rows = _rows(report)
    assert set(rows) - {IDLE_KEY} == {"a" * 32, "c" * 32}
    assert rows["a" * 32]["gpu_hours"] == pytest.approx(2 * 40 / 60)
    assert rows["c" * 32]["cost"] == pytest.approx((NOW - since) / H * 1.10)
    assert rows["c" * 32]["waste"]["held_idle"]["gpu_hours"] == pytest.approx(HELD_IDLE_HOURS / 2)


def test_top_wasters_name_the_task_and_the_reason(fleet: ServerState, book: PriceBook) -> None:
    wasters = cost_report(fleet, book, since=T0, now=NOW)["top_wasters"]
    assert [(w["task_id"], w["kind"]) for w in wasters] == [("a" * 32, "orphaned"), ("c" * 32, "held_idle")]
    held = wasters[1]
    assert held["reason"] == "GPU 2 3% for 40 min while CPU 100%: input pipeline bound"
    assert held["waste_cost"] == pytest.approx(HELD_IDLE_HOURS * 1.1)
    assert held["project"] == "nlp" and held["status"] == "in_progress"


def test_a_running_task_is_flagged_only_while_it_idles(fleet: ServerState, book: PriceBook) -> None:
    assert running_flags(fleet, book) == []  # c's GPU is busy again after 25:40
    times = np.arange(NOW + 10, NOW + 1800, 10.0)
    _samples(fleet, "c", "gpu.2.util", times, np.full(len(times), 2.0))
    fleet.store.update(TASKS, "c" * 32, {"$set": {"last_update": NOW + 1800}})
    (flag,) = running_flags(fleet, book)
    assert flag["task_id"] == "c" * 32 and flag["kind"] == "held_idle" and flag["gpu"] == 2
    assert flag["reason"].startswith("GPU 2 2% for 30 min")


def test_finished_tasks_are_summarised_once_and_again_after_late_samples(fleet: ServerState, book: PriceBook) -> None:
    """The first report stores each finished task's waste; later reports read that, not the samples,
    until new samples move the task's last_update."""
    _task(fleet, "f", project_name="vision", user="ana", started=T0 + 2 * H, ended=T0 + 3 * H,
          runtime={"host": "gpu-1", "gpus": [3]}, environment={"gpus": [{**H100, "index": 3}]})
    times = np.arange(T0 + 2 * H + 10, T0 + 3 * H + 1, 10.0)
    _samples(fleet, "f", "gpu.3.util", times, np.full(len(times), 1.0))
    first = _rows(cost_report(fleet, book, by="task", since=T0, now=NOW))["f" * 32]
    assert first["waste"]["held_idle"]["gpu_hours"] == pytest.approx(0.99)
    fleet.events.delete_task("f" * 32)  # the samples are gone: only the stored summary can answer
    again = _rows(cost_report(fleet, book, by="task", since=T0, now=NOW))["f" * 32]
    assert again["waste"] == first["waste"]
    _samples(fleet, "f", "gpu.3.util", times, np.full(len(times), 90.0))  # re-sent, now busy
    fleet.store.update(TASKS, "f" * 32, {"$set": {"last_update": T0 + 4 * H}})
    late = _rows(cost_report(fleet, book, by="task", since=T0, now=NOW))["f" * 32]
    assert late["waste"]["held_idle"]["gpu_hours"] == 0


def test_bad_grouping_and_empty_period_are_refused(fleet: ServerState, book: PriceBook) -> None:
    from fleetdeck.server_lite.costs import BadReportQuery

    with pytest.raises(BadReportQuery, match="by must be one of project, user, host, queue, task"):
        cost_report(fleet, book, by="colour", since=T0, now=NOW)
    with pytest.raises(BadReportQuery, match="period is empty"):
        cost_report(fleet, book, since=NOW + 10, now=NOW)
