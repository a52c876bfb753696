"""Resource monitor: recorded H200 NVML traces replayed through the live code path; no GPU here, no error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleetdeck.monitor import Nvml, ResourceMonitor, _Average, gpu_sample, visible_gpu_indices

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "gpu-traces"
if not TRACES.is_dir():
    TRACES = Path("/work/shared/data/gpu-traces")


def _trace(name: str) -> tuple[dict, list[dict]]:
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"recorded trace {path} not available")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[0]["device"], lines[1:]


@pytest.mark.parametrize("run", ["h200-phases-run1.jsonl", "h200-phases-run2.jsonl"])
def test_recorded_trace_averages_per_phase(run: str) -> None:
    """A real H200 trace (0.5 s samples): phase averages show busy vs idle vs memory held idle."""
    _, samples = _trace(run)
    by_phase: dict[str, _Average] = {}
    for sample in samples:
        by_phase.setdefault(sample["phase"], _Average()).add(gpu_sample(0, sample))
    means = {phase: avg.take() for phase, avg in by_phase.items()}
    assert means["busy"]["gpu.0.util"] > 90 and means["busy"]["gpu.0.power_w"] > 500
    assert means["idle"]["gpu.0.util"] < 1 and means["idle"]["gpu.0.power_w"] < 120
    assert means["held_idle"]["gpu.0.util"] < 1
    assert means["held_idle"]["gpu.0.mem_used_mib"] > means["idle"]["gpu.0.mem_used_mib"] + 15_000
    assert means["idle"]["gpu.0.mem_total_mib"] == 143771
    assert set(means["busy"]) == {f"gpu.0.{v}" for v in ("util", "mem_used_mib", "mem_total_mib", "power_w", "temp_c")}


def test_unsupported_nvml_fields_give_no_variant() -> None:
    assert gpu_sample(1, {"gpu_util": 50, "power_w": None}) == {"gpu.1.util": 50.0}


def test_cuda_visible_devices_selects_gpus() -> None:
    uuids = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
    assert visible_gpu_indices(3, {}) == [0, 1, 2]
    assert visible_gpu_indices(3, {"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]
    assert visible_gpu_indices(3, {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, uuids) == [1]
    assert visible_gpu_indices(3, {"CUDA_VISIBLE_DEVICES": ""}) == []


def test_no_gpu_means_no_gpu_series_and_no_error() -> None:
    nvml = Nvml()
    if nvml.handles:
        pytest.skip("this machine has a GPU")
    monitor = ResourceMonitor(os.getpid(), report_s=0.0, nvml=nvml)
    monitor.read()
    sample = monitor.sample()
    assert {"cpu.percent", "process.rss_mb", "system.mem_used_mb", "system.mem_percent", "disk.read_mb_s",
            "net.recv_mb_s"} <= set(sample)
    assert not any(key.startswith("gpu.") for key in sample)
    assert sample["process.rss_mb"] > 10
