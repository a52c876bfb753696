"""Waste found in samples the real SDK monitor produced.

A real process burns one CPU core while the real :class:`fleetdeck.monitor.ResourceMonitor`
samples it (no GPU here, so the monitor reports no GPU series: that path is exercised too). Its
``cpu.percent`` series goes to a real server next to the GPU series of the recorded H200 trace's
input-bound phase (run 1: 1 %), restamped to the same minutes. The server must flag the running
task with a reason that quotes the monitor's CPU (input pipeline bound when the core was busy),
and charge the waste in its report.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fleetdeck.client import Client
from fleetdeck.monitor import RESOURCE_TITLE, Nvml, ResourceMonitor
from tests.costs.traces import load, monitor_windows
from tests.support import wait_for


def _real_cpu_series(seconds: float = 3.0) -> tuple[list[float], list[float]]:
    """cpu.percent of a busy-looping child, as the monitor reports it (0.5 s averages of 0.1 s samples)."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        monitor = ResourceMonitor(burner.pid, report_s=0.5, nvml=Nvml(), gpu_indices=[])
        times: list[float] = []
        values: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report = monitor.sample()
            if report:
                assert not any(k.startswith("gpu.") for k in report), "a GPU series without a GPU"
                times.append(time.time())
                values.append(report["cpu.percent"])
            time.sleep(0.1)
        return times, values
    finally:
        burner.kill()
        burner.wait(10)


def test_real_cpu_samples_name_an_input_bound_task(client: Client, isolated_home) -> None:  # type: ignore[no-untyped-def]
    (isolated_home / "config" / "fleetdeck").mkdir(parents=True, exist_ok=True)
    (isolated_home / "config" / "fleetdeck" / "pricing.toml").write_text("[waste]\nwindow_minutes = 0.25\n")
    cpu_times, cpu = _real_cpu_series()
    assert len(cpu) >= 3 and max(cpu) > 0, f"the monitor saw no CPU use: {cpu}"

    trace = load(1)
    first, last = trace.phase("input_bound")
    windows = monitor_windows(trace.samples, first, last)
    gpu_times, util = windows["gpu.0.util"]
    shift = cpu_times[0] - gpu_times[0] + 1.0  # the CPU samples fall inside the input-bound windows
    gpu_times = [t + shift for t in gpu_times]
    task = client.create_task(name="loader-bound", project="costs-monitor",
                              runtime={"host": "h200-node", "gpus": [0]},
                              environment={"gpus": [{"index": 0, "name": trace.device["name"],
                                                     "memory_total_mib": 143771}]})
    client.set_status(task["id"], "in_progress")
    client.post_events(task["id"], {"batch_id": "monitor-1", "scalars": [
        {"metric": RESOURCE_TITLE, "variant": "cpu.percent", "iterations": list(range(len(cpu))),
         "values": cpu, "timestamps": cpu_times},
        {"metric": RESOURCE_TITLE, "variant": "gpu.0.util", "iterations": list(range(len(util))),
         "values": util, "timestamps": gpu_times}]})

    flags = wait_for(lambda: [f for f in client.get("/costs/flags")["items"] if f.get("task_id") == task["id"]],
                     message="a held-idle flag")
    assert flags[0]["kind"] == "held_idle"
    # the reason quotes the monitor's CPU mean over the span; a loaded test machine may give the
    # burner less than the 80 % that reads as "input pipeline bound"
    inside = [v for t, v in zip(cpu_times, cpu) if flags[0]["since"] < t]
    mean_cpu = sum(inside) / len(inside)
    if mean_cpu >= 80:
        assert f"while CPU {mean_cpu:.0f}%: input pipeline bound" in flags[0]["reason"], flags[0]["reason"]
    else:
        assert f"(CPU {mean_cpu:.0f}%): GPU underused" in flags[0]["reason"], flags[0]["reason"]
    report = client.get("/costs/report", by="task", since=time.time() - 3600)
    row = next(r for r in report["rows"] if r["key"] == task["id"])
    # the waste is at most the GPU-hours the span covers, and the held time so far bounds it
    assert 0 < row["waste"]["held_idle"]["gpu_hours"] <= row["gpu_hours"]
    assert row["waste"]["held_idle"]["cost"] == pytest.approx(row["waste"]["held_idle"]["gpu_hours"] * 3.80)
