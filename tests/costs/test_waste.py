"""Waste detection on the recorded H200 traces (``tests/costs/traces.py``): each kind of waste is
found in the phase where it happened and nowhere else.

The traces are real NVML readings (0.5 s) of one H200 through the phases idle, busy (98 %),
input-bound (1 % in run 1, 27 % in run 2), 20 GiB held with no kernels, released. They are
replayed as the monitor reports them (10 s averages of the documented ``gpu.0.*`` variants) into
the same detector the server runs. The scenario: a task starts when the matmuls start and ends
when its input-bound loop ends, but its process keeps 20 GiB on the GPU (orphaned) until it frees
them; before and after, the GPU has no task (idle capacity).
"""

from __future__ import annotations

import numpy as np
import pytest

from fleetdeck.server_lite.pricing import WastePolicy
from fleetdeck.server_lite.waste import (
    HELD_IDLE, IDLE_CAPACITY, ORPHANED, GpuObservation, Span, classify_observation, held_idle_spans, host_gpu_spans,
    uncovered_hours,
)
from tests.costs.traces import WINDOW_S, Trace, host_observations, load, monitor_windows

POLICY = WastePolicy(util_threshold_percent=50.0, window_s=20.0, orphan_min_mib=1024.0)
"""The shipped threshold and orphan floor; a 20 s window because the recorded phases last 15-25 s."""
PHASES = ("idle", "busy", "input_bound", "held_idle", "released")


def _task_run(trace: Trace) -> tuple[float, float]:
    return trace.phase("busy")[0], trace.phase("input_bound")[1]


def _assert_in_phase(spans: list[Span], trace: Trace, phase: str) -> None:
    """Every span lies in the phase (give or take one 10 s window at its edges) and covers its inside."""
    first, last = trace.phase(phase)
    assert spans, f"no span found in phase {phase}"
    for span in spans:
        assert span.start >= first - WINDOW_S - 1 and span.end <= last + WINDOW_S + 1, \
            f"{span.kind} span {span.start - trace.start:.1f}-{span.end - trace.start:.1f}s leaks out of {phase}"
    covered = uncovered_hours((first + WINDOW_S, last - WINDOW_S), [(s.start, s.end) for s in spans])
    assert covered == 0.0, f"{phase} interior not fully covered by {[(s.start, s.end) for s in spans]}"


def _held_idle(trace: Trace, end: float | None = None) -> list[Span]:
    start, stop = _task_run(trace)
    series = monitor_windows(trace.samples, start, end or stop)
    times, util = series["gpu.0.util"]
    return held_idle_spans(times, util, POLICY, gpu=0, mem_used_mib=series["gpu.0.mem_used_mib"])


@pytest.mark.parametrize("run", [1, 2])
def test_held_idle_found_in_the_input_bound_phase_only(run: int) -> None:
    trace = load(run)
    spans = _held_idle(trace)
    assert {s.kind for s in spans} == {HELD_IDLE}
    _assert_in_phase(spans, trace, "input_bound")
    busy_first, busy_last = trace.phase("busy")
    assert all(s.start >= busy_last - WINDOW_S for s in spans), "the 98 % matmul phase was flagged"


@pytest.mark.parametrize("run, mean_util", [(1, 1.0), (2, 26.7)])
def test_held_idle_waste_matches_a_hand_computation(run: int, mean_util: float) -> None:
    """Wasted GPU-hours = phase length x unused share, from the raw 0.5 s readings; 10 s averaging
    may move one window's worth at the edges."""
    trace = load(run)
    raw = [s["gpu_util"] for s in trace.samples if s["phase"] == "input_bound"]
    assert np.mean(raw) == pytest.approx(mean_util, abs=0.1)
    first, last = trace.phase("input_bound")
    by_hand = (last - first + 0.5) * (1 - np.mean(raw) / 100) / 3600
    found = sum(s.gpu_hours for s in _held_idle(trace))
    assert found == pytest.approx(by_hand, abs=WINDOW_S / 3600)
    span = max(_held_idle(trace), key=lambda s: s.end - s.start)
    assert span.mean_util is not None and span.mean_util == pytest.approx(mean_util, abs=15)


def test_input_bound_reason_names_the_cpu_when_the_cpu_is_busy() -> None:
    trace = load(2)
    start, stop = _task_run(trace)
    series = monitor_windows(trace.samples, start, stop)
    times, util = series["gpu.0.util"]
    cpu_times = np.asarray(times)
    busy_cpu = np.where(cpu_times > trace.phase("input_bound")[0], 100.0, 35.0)
    (span,) = held_idle_spans(times, util, POLICY, gpu=0, cpu=(cpu_times, busy_cpu))
    assert "while CPU 100%: input pipeline bound" in span.reason
    assert span.reason.startswith("GPU 0 ")


@pytest.mark.parametrize("run", [1, 2])
def test_orphaned_memory_found_in_the_held_idle_phase_only(run: int) -> None:
    trace = load(run)
    spans = host_gpu_spans(host_observations(trace), [_task_run(trace)], POLICY, gpu=0, host="h200-a",
                           last_task_id="ab" * 16)
    orphaned = [s for s in spans if s.kind == ORPHANED]
    _assert_in_phase(orphaned, trace, "held_idle")
    (span,) = orphaned
    assert span.task_id == "ab" * 16
    held_mib = trace.samples[-1]["procs"][0]["used_mib"]
    assert "GiB held by processes of finished task abababab" in span.reason
    assert held_mib < POLICY.orphan_min_mib  # the released phase keeps only a CUDA context


@pytest.mark.parametrize("run", [1, 2])
def test_idle_capacity_found_before_and_after_the_task_only(run: int) -> None:
    trace = load(run)
    spans = host_gpu_spans(host_observations(trace), [_task_run(trace)], POLICY, gpu=0, host="h200-a")
    idle = [s for s in spans if s.kind == IDLE_CAPACITY]
    before = [s for s in idle if s.end <= trace.phase("busy")[0] + WINDOW_S]
    after = [s for s in idle if s.start >= trace.phase("held_idle")[1] - WINDOW_S]
    assert len(before) + len(after) == len(idle), "idle capacity found while the task ran or memory was held"
    _assert_in_phase(before, trace, "idle")
    _assert_in_phase(after, trace, "released")
    idle_hours = sum(s.gpu_hours for s in before)
    first, last = trace.phase("idle")
    assert idle_hours == pytest.approx((last - first + 0.5) / 3600, abs=WINDOW_S / 3600)


def test_no_waste_in_the_busy_phase_of_any_kind() -> None:
    for run in (1, 2):
        trace = load(run)
        busy_first, busy_last = trace.phase("busy")
        inside = (busy_first + WINDOW_S, busy_last - WINDOW_S)
        spans = _held_idle(trace) + host_gpu_spans(host_observations(trace), [_task_run(trace)], POLICY, gpu=0)
        for span in spans:
            assert span.end <= inside[0] or span.start >= inside[1], f"{span.kind} inside the busy phase"


def test_a_task_still_running_over_held_memory_is_held_idle_not_orphaned() -> None:
    trace = load(1)
    start, _ = _task_run(trace)
    end = trace.phase("held_idle")[1]
    spans = _held_idle(trace, end=end)
    assert spans and max(s.end for s in spans) >= end - 1
    assert all(s.kind == HELD_IDLE for s in spans)
    host = host_gpu_spans(host_observations(trace), [(start, end)], POLICY, gpu=0)
    assert not [s for s in host if s.kind == ORPHANED]


def test_short_dips_under_the_window_are_not_waste() -> None:
    times = np.arange(10.0, 610.0, 10.0)
    util = np.full(len(times), 95.0)
    util[20:25] = 2.0  # 50 s of checkpoint saving
    policy = WastePolicy(util_threshold_percent=50, window_s=600)
    assert held_idle_spans(times, util, policy) == []
    util[10:] = 3.0  # then the loader stalls for good: 500 s, still under 10 min
    assert held_idle_spans(times, util, policy) == []
    times = np.arange(10.0, 3010.0, 10.0)
    util = np.full(len(times), 3.0)
    (span,) = held_idle_spans(times, util, policy, gpu=3)
    assert span.gpu_hours == pytest.approx(3000 / 3600 * 0.97)
    assert span.reason.startswith("GPU 3 3% for 50 min")


def test_a_monitor_gap_splits_runs_and_is_not_charged() -> None:
    times = np.concatenate([np.arange(10.0, 310.0, 10.0), np.arange(4000.0, 4300.0, 10.0)])
    util = np.zeros(len(times))
    spans = held_idle_spans(times, util, WastePolicy(window_s=200))
    assert len(spans) == 2
    assert sum(s.gpu_hours for s in spans) == pytest.approx(600 / 3600)


def test_missing_readings_never_count_as_idle() -> None:
    times = np.arange(10.0, 1210.0, 10.0)
    util = [None] * len(times)
    assert held_idle_spans(times, util, WastePolicy(window_s=60)) == []


def test_orphan_needs_more_than_a_cuda_context() -> None:
    context_only = GpuObservation(1.0, 0.0, 1241.0, procs=((416, 618.0),))
    held = GpuObservation(1.0, 0.0, 22233.0, procs=((416, 21610.0),))
    assert classify_observation(context_only, False, POLICY) == IDLE_CAPACITY
    assert classify_observation(held, False, POLICY) == ORPHANED
    assert classify_observation(held, True, POLICY) is None
