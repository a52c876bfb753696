"""Replay of the recorded H200 NVML traces (``/work/shared/data/gpu-traces``) as monitor samples.

The traces are real: one NVIDIA H200 sampled every 0.5 s through nvidia-ml-py while it idled, ran
bf16 matmuls (98 %), ran an input-bound loop (1 % in run 1, 27 % in run 2), held 20 GiB with no
kernels, then released it. ``monitor_windows`` passes the 0.5 s readings through the SDK
monitor's own code path (``gpu_sample``, then its window aggregator) into ``gpu.0.*`` averages over
10 s windows, which is what a task's ``:monitor:`` series hold and what the waste detector reads.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.monitor import _Average, gpu_sample
from fleetdeck.server_lite.waste import GpuObservation

TRACES = Path(os.environ.get("FLEETDECK_GPU_TRACES", "/work/shared/data/gpu-traces"))
WINDOW_S = 10.0


@dataclass(frozen=True)
class Trace:
    device: dict[str, Any]
    samples: list[dict[str, Any]]

    def phase(self, name: str) -> tuple[float, float]:
        """``(first, last)`` sample time of a phase."""
        times = [s["t"] for s in self.samples if s["phase"] == name]
        return times[0], times[-1]

    @property
    def start(self) -> float:
        return float(self.samples[0]["t"])


def load(run: int) -> Trace:
    path = TRACES / f"h200-phases-run{run}.jsonl"
    if not path.exists():
        pytest.skip(f"recorded GPU trace {path} is not on this machine")
    lines = path.read_text().splitlines()
    return Trace(json.loads(lines[0])["device"], [json.loads(line) for line in lines[1:]])


def monitor_windows(readings: list[dict[str, Any]], start: float, end: float,
                    window_s: float = WINDOW_S) -> dict[str, tuple[list[float], list[float]]]:
    """The monitor's 10 s averages of the readings in ``[start, end]``.

    Each reading goes through the SDK monitor's own code: :func:`fleetdeck.monitor.gpu_sample`
    turns it into the ``gpu.0.*`` variants and the monitor's window aggregator averages them.
    Windows start at ``start`` (the monitor starts with the task); each point is stamped with the
    end of its window (or the last reading, for the final partial window).

    Returns:
        variant -> (timestamps, values)
    """
    series: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    window = _Average()
    edge = start + window_s
    last_t = start

    def flush(stamp: float) -> None:
        for variant, value in window.take().items():
            series[variant][0].append(stamp)
            series[variant][1].append(value)

    for reading in readings:
        t = reading["t"]
        if t < start or t > end:
            continue
        while t >= edge:
            if window.sums:
                flush(edge)
            edge += window_s
        window.add(gpu_sample(0, reading))
        last_t = t
    if window.sums:
        flush(min(edge, last_t))
    return dict(series)


def host_observations(trace: Trace, window_s: float = WINDOW_S) -> list[GpuObservation]:
    """What a host agent would report for the GPU: 10 s means, and the process list at the window's end."""
    out = []
    bucket: list[dict[str, Any]] = []
    edge = trace.start + window_s
    for reading in [*trace.samples, None]:
        if reading is None or reading["t"] >= edge:
            if bucket:
                last = bucket[-1]
                out.append(GpuObservation(
                    time=last["t"], util=sum(r["gpu_util"] for r in bucket) / len(bucket),
                    mem_used_mib=sum(r["mem_used_mib"] for r in bucket) / len(bucket),
                    procs=tuple((p["pid"], float(p["used_mib"])) for p in last["procs"])))
            bucket = []
            if reading is None:
                break
            while reading["t"] >= edge:
                edge += window_s
        bucket.append(reading)
    return out
