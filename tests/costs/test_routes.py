"""``/costs/*`` on a real server process: costs of tasks run through the API, waste flags for a
running task fed recorded H200 samples, orphaned GPU memory reported by a worker heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import RequestRejected, ServerError
from fleetdeck.server_lite.process import ServerProcess
from tests.costs.traces import load, monitor_windows

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total_mib": 81559}
PRICING = """
[waste]
window_minutes = 0.25   # the recorded phases last 15-25 s

[hosts.lab-h200]
price_per_gpu_hour = 2.50
"""


@pytest.fixture(scope="module")
def pricing_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pricing") / "pricing.toml"
    path.write_text(PRICING)
    return path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pricing_file: Path) -> Iterator[Client]:
    """One server for the module (start-up is the slow part); each test uses its own project."""
    home = tmp_path_factory.mktemp("costs-home")
    proc = ServerProcess(home / "data", env={"XDG_CONFIG_HOME": str(home / "config"),
                                             "FLEETDECK_PRICING": str(pricing_file)})
    proc.start()
    try:
        with Client(url=proc.url, token=proc.admin_token) as client:
            yield client
    finally:
        proc.stop()


def _run(api: Client, project: str, host: str, gpus: list[int], *, finish: bool = True) -> dict[str, Any]:
    task = api.create_task(name="train", project=project, runtime={"host": host, "gpus": gpus},
                           environment={"gpus": [{**H100, "index": i} for i in gpus]})
    api.set_status(task["id"], "in_progress")
    if finish:
        api.set_status(task["id"], "completed")
    return api.get_task(task["id"])


def _monitor(api: Client, task_id: str, run: int, phase_from: str, phase_to: str) -> None:
    """Post the recorded trace's 10 s windows for the given phases, shifted to end now."""
    trace = load(run)
    start, end = trace.phase(phase_from)[0], trace.phase(phase_to)[1]
    windows = monitor_windows(trace.samples, start, end)
    shift = time.time() - end
    api.post_events(task_id, {"batch_id": f"trace-{task_id[:8]}", "scalars": [
        {"metric": ":monitor:", "variant": variant, "iterations": list(range(len(ts))),
         "values": values, "timestamps": [t + shift for t in ts]} for variant, (ts, values) in windows.items()]})


def test_cost_of_a_finished_task_is_gpu_hours_times_price(api: Client) -> None:
    task = _run(api, "costs-basic", "gpu-box", [0, 1])
    report = api.get("/costs/report", by="task", since=task["started"] - 1)
    (row,) = [r for r in report["rows"] if r["key"] == task["id"]]
    by_hand = (task["ended"] - task["started"]) / 3600 * 2 * 3.00  # two H100s at the default $3.00
    assert row["cost"] == pytest.approx(by_hand, rel=1e-9)
    assert row["gpu_hours"] == pytest.approx((task["ended"] - task["started"]) / 3600 * 2, rel=1e-9)
    assert row["name"] == "train" and row["project"] == "costs-basic" and row["status"] == "completed"
    assert report["currency"] == "USD" and report["pricing_as_of"]


def test_user_pricing_file_sets_the_host_price(api: Client, pricing_file: Path) -> None:
    task = _run(api, "costs-host", "lab-h200", [0])
    report = api.get("/costs/report", by="host", since=task["started"] - 1)
    row = next(r for r in report["rows"] if r["key"] == "lab-h200")
    assert row["cost"] == pytest.approx((task["ended"] - task["started"]) / 3600 * 2.50, rel=1e-9)
    book = api.get("/costs/pricing")
    assert book["hosts"]["lab-h200"] == {"price_per_gpu_hour": 2.5}
    assert book["sources"][-1] == str(pricing_file)


@pytest.mark.parametrize("run", [1, 2])
def test_an_input_bound_running_task_is_flagged_with_its_reason(api: Client, run: int) -> None:
    """Recorded trace: the task's last 25 s were the input-bound phase (1 % or 27 %)."""
    task = _run(api, f"costs-flag-{run}", "h200-node", [0], finish=False)
    _monitor(api, task["id"], run, "busy", "input_bound")
    flags = [f for f in api.get("/costs/flags")["items"] if f.get("task_id") == task["id"]]
    assert [f["kind"] for f in flags] == ["held_idle"]
    assert flags[0]["reason"].startswith("GPU 0 ")
    assert "underused" in flags[0]["reason"]
    api.set_status(task["id"], "completed")
    assert not [f for f in api.get("/costs/flags")["items"] if f.get("task_id") == task["id"]]


def test_a_busy_running_task_is_not_flagged(api: Client) -> None:
    """Recorded trace: idle phase, then 25 s of 98 % matmuls as the latest samples."""
    task = _run(api, "costs-busy", "h200-node", [0], finish=False)
    _monitor(api, task["id"], 1, "idle", "busy")
    assert not [f for f in api.get("/costs/flags")["items"] if f.get("task_id") == task["id"]]
    api.set_status(task["id"], "completed")


def test_orphaned_memory_from_a_heartbeat_is_flagged_and_charged(api: Client) -> None:
    """The heartbeat carries the recorded held_idle reading: pid 416 holding 21610 MiB, 0 % util."""
    trace = load(1)
    held = next(s for s in trace.samples if s["phase"] == "held_idle")
    released = trace.samples[-1]
    task = _run(api, "costs-orphan", "orphan-host", [0])
    gpu = {"index": 0, "util": held["gpu_util"], "mem_used_mib": held["mem_used_mib"], "procs": held["procs"]}
    api.heartbeat("orphan-worker", host="orphan-host", ttl_s=60, stats={"gpus": [gpu]})
    first = [f for f in api.get("/costs/flags")["items"] if f["kind"] == "orphaned"]
    assert [(f["host"], f["gpu"], f["task_id"]) for f in first] == [("orphan-host", 0, task["id"])]
    assert "21.1 GiB held by processes of finished task" in first[0]["reason"]
    report = api.get("/costs/report", by="host", since=task["started"] - 1)  # a report looks again too
    row = next(r for r in report["rows"] if r["key"] == "orphan-host")
    assert row["waste"]["orphaned"]["gpu_hours"] > 0
    assert any(w["kind"] == "orphaned" and w["task_id"] == task["id"] for w in report["top_wasters"])
    gpu = {"index": 0, "util": 0, "mem_used_mib": released["mem_used_mib"], "procs": released["procs"]}
    api.heartbeat("orphan-worker", host="orphan-host", ttl_s=60, stats={"gpus": [gpu]})
    assert not [f for f in api.get("/costs/flags")["items"] if f["kind"] == "orphaned"]


def test_a_gpu_owned_by_a_running_task_is_never_orphaned(api: Client) -> None:
    _run(api, "costs-owned", "owned-host", [0], finish=False)
    gpu = {"index": 0, "util": 0, "mem_used_mib": 22233, "procs": [{"pid": 9, "used_mib": 21610}]}
    api.heartbeat("owned-worker", host="owned-host", ttl_s=60, stats={"gpus": [gpu]})
    assert not [f for f in api.get("/costs/flags")["items"] if f.get("host") == "owned-host"]


def test_bad_report_queries_are_refused_with_the_reason(api: Client) -> None:
    with pytest.raises(RequestRejected, match="by"):
        api.get("/costs/report", by="colour")
    with pytest.raises(RequestRejected, match="period is empty"):
        api.get("/costs/report", since=time.time() + 3600)
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(RequestRejected, match="since"):
            api.get("/costs/report", since=value)
    with pytest.raises(RequestRejected, match="period is empty"):
        api.get("/costs/report", since=1e308)
    assert api.get("/costs/report", since=-1e308, until=1e308)["by"] == "project"


def test_a_broken_pricing_file_is_named_in_the_error(api: Client, pricing_file: Path) -> None:
    good = pricing_file.read_text()
    try:
        pricing_file.write_text("[hosts.x]\nprice_per_gpu_hour = 'cheap'\n")
        with pytest.raises(ServerError, match=f"{pricing_file}.*price_per_gpu_hour must be a number"):
            api.get("/costs/report")
    finally:
        pricing_file.write_text(good + "\n")
    assert api.get("/costs/report")["by"] == "project"
