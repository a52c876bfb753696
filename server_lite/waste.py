"""Waste detection: GPU time that was paid for and did no work.

Three kinds, each reported in GPU-hours (and, by the cost report, in money):

``held_idle``
    A running task's GPU whose mean utilisation stays under ``util_threshold_percent`` for at
    least ``window_s``. Found in the task's own resource samples (``:monitor:/gpu.{i}.util``, the
    monitor's 10 s averages). The unused share counts: a window at 27 % wastes 73 % of its
    GPU-hours. The reason names the likely cause: CPU busy (input pipeline bound), a lot of memory
    held without kernels, or plain idle.
``orphaned``
    Memory held on a GPU by compute processes while no running task owns that GPU: the
    processes of a finished or dead task. Found in host observations (the compute-process list).
``idle_capacity``
    A fleet GPU with no task and no orphaned memory: capacity paid for and not scheduled.

The functions here are pure (arrays and records in, spans out) so that the server, the benchmark
and the recorded-trace tests run exactly the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetdeck.server_lite.pricing import WastePolicy

HELD_IDLE = "held_idle"
ORPHANED = "orphaned"
IDLE_CAPACITY = "idle_capacity"
KINDS = (HELD_IDLE, ORPHANED, IDLE_CAPACITY)

GAP_FACTOR = 3.0
"""Samples further apart than this many sampling intervals break a run (the monitor was down)."""
CPU_BOUND_PERCENT = 80.0
"""Process CPU at or above this (of one core) while the GPU idles reads as an input-bound pipeline."""


@dataclass(frozen=True)
class Span:
    """One stretch of wasted GPU time."""

    kind: str
    start: float
    end: float
    gpu_hours: float
    """Wasted GPU-hours in the span (for held_idle, the unused share of the held time)."""
    gpu: int | None = None
    mean_util: float | None = None
    reason: str = ""
    task_id: str | None = None
    host: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "gpu_hours": self.gpu_hours,
                "gpu": self.gpu, "mean_util": self.mean_util, "reason": self.reason, "task_id": self.task_id,
                "host": self.host}


def sample_durations(times: np.ndarray) -> np.ndarray:
    """Seconds each sample covers: the time since the previous one, the typical interval for the first.

    A sample after a gap (monitor down) covers one typical interval, not the gap.
    """
    if len(times) == 0:
        return np.empty(0)
    if len(times) == 1:
        return np.array([10.0])
    diffs = np.diff(times)
    typical = float(np.median(diffs)) or 10.0
    durations = np.concatenate(([typical], diffs))
    return np.where(durations > GAP_FACTOR * typical, typical, durations)


def held_idle_spans(times: Sequence[float] | np.ndarray, util: Sequence[float | None] | np.ndarray,
                    policy: WastePolicy, *, gpu: int | None = None,
                    cpu: tuple[np.ndarray, np.ndarray] | None = None,
                    mem_used_mib: tuple[np.ndarray, np.ndarray] | None = None) -> list[Span]:
    """Stretches where a held GPU stayed under the utilisation threshold for at least the window.

    Args:
        times: sample timestamps (end of each averaging window), ascending.
        util: mean GPU utilisation of each window in percent (None/NaN: no reading).
        policy: threshold and window.
        gpu: the GPU index, carried into the spans.
        cpu: optional ``(times, percent)`` of the task's CPU series, to name an input-bound pipeline.
        mem_used_mib: optional ``(times, MiB)`` of the GPU's memory, to name memory held without kernels.

    Returns:
        One span per qualifying run, in time order.
    """
    t = np.asarray(times, dtype=np.float64)
    u = np.asarray(util, dtype=np.float64)
    if len(t) == 0:
        return []
    durations = sample_durations(t)
    gap_before = np.ones(len(t), dtype=bool)
    gap_before[1:] = np.diff(t) > GAP_FACTOR * durations[0]
    below = np.nan_to_num(u, nan=np.inf) < policy.util_threshold_percent
    # a run starts at a below-sample whose predecessor is not below, or after a gap
    starts = below & (gap_before | ~np.concatenate(([False], below[:-1])))
    run_id = np.cumsum(starts)
    spans = []
    for rid in np.unique(run_id[below]):
        idx = np.flatnonzero(below & (run_id == rid))
        start = float(t[idx[0]] - durations[idx[0]])
        end = float(t[idx[-1]])
        if end - start < policy.window_s:
            continue
        held = durations[idx]
        mean_util = float(np.sum(u[idx] * held) / np.sum(held))
        wasted = float(np.sum(held * (1.0 - u[idx] / 100.0)) / 3600.0)
        reason = _held_idle_reason(gpu, mean_util, start, end, cpu, mem_used_mib)
        spans.append(Span(HELD_IDLE, start, end, wasted, gpu=gpu, mean_util=mean_util, reason=reason))
    return spans


def _window_mean(series: tuple[np.ndarray, np.ndarray] | None, start: float, end: float) -> float | None:
    if series is None:
        return None
    times, values = (np.asarray(s, dtype=np.float64) for s in series)
    inside = (times > start) & (times <= end) & ~np.isnan(values)
    return float(values[inside].mean()) if inside.any() else None


def _held_idle_reason(gpu: int | None, util: float, start: float, end: float,
                      cpu: tuple[np.ndarray, np.ndarray] | None,
                      mem: tuple[np.ndarray, np.ndarray] | None) -> str:
    which = "GPU" if gpu is None else f"GPU {gpu}"
    head = f"{which} {util:.0f}% for {_minutes(end - start)}"
    cpu_mean = _window_mean(cpu, start, end)
    mem_mean = _window_mean(mem, start, end)
    if cpu_mean is not None and cpu_mean >= CPU_BOUND_PERCENT:
        return f"{head} while CPU {cpu_mean:.0f}%: input pipeline bound"
    if util < 0.5:
        if mem_mean is not None and mem_mean >= 1024:
            return f"{head} with {mem_mean / 1024:.1f} GiB held: memory allocated, no kernels running"
        return f"{head}: idle, no kernels running"
    suffix = f" (CPU {cpu_mean:.0f}%)" if cpu_mean is not None else ""
    return f"{head}{suffix}: GPU underused, short bursts between waits (data loading or host work)"


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- host observations: orphaned memory and idle capacity ------------------------------------

@dataclass(frozen=True)
class GpuObservation:
    """What a host saw on one GPU over one sampling window (from NVML, via the agent)."""

    time: float
    """End of the window."""
    util: float
    mem_used_mib: float
    procs: tuple[tuple[int, float], ...] | None = None
    """Compute processes as ``(pid, used MiB)``; None when the host did not report them."""

    @property
    def process_mib(self) -> float:
        """Memory held by compute processes (all used memory when no process list was reported)."""
        if self.procs is None:
            return self.mem_used_mib
        return float(sum(mib for _pid, mib in self.procs))


def classify_observation(obs: GpuObservation, owned_by_running_task: bool, policy: WastePolicy) -> str | None:
    """The host-side waste kind of one observation, or None when a running task owns the GPU.

    A running task's own utilisation is judged from its samples (``held_idle_spans``), not here.
    """
    if owned_by_running_task:
        return None
    if obs.process_mib >= policy.orphan_min_mib:
        return ORPHANED
    return IDLE_CAPACITY


def host_gpu_spans(observations: Sequence[GpuObservation], running: Iterable[tuple[float, float]],
                   policy: WastePolicy, *, gpu: int | None = None, host: str | None = None,
                   last_task_id: str | None = None) -> list[Span]:
    """Orphaned and idle-capacity spans of one GPU from its host observations.

    Args:
        observations: ascending in time.
        running: ``(start, end)`` intervals during which a running task owned the GPU.
        policy: the orphan memory threshold.
        gpu: GPU index; host: host name, both carried into the spans.
        last_task_id: the task that last ran on the GPU, blamed for orphaned memory.
    """
    if not observations:
        return []
    intervals = sorted(running)
    times = np.array([o.time for o in observations])
    durations = sample_durations(times)
    spans: list[Span] = []
    current: list[Any] | None = None  # [kind, start, end, seconds, max_mib]
    for obs, seconds in zip(observations, durations):
        owned = any(s < obs.time <= e for s, e in intervals)
        kind = classify_observation(obs, owned, policy)
        start = obs.time - float(seconds)
        if current is not None and (kind != current[0] or start > current[2] + 1e-6):
            spans.append(_close_host_span(current, gpu, host, last_task_id))
            current = None
        if kind is None:
            continue
        if current is None:
            current = [kind, start, obs.time, 0.0, 0.0]
        current[2] = obs.time
        current[3] += float(seconds)
        current[4] = max(current[4], obs.process_mib)
    if current is not None:
        spans.append(_close_host_span(current, gpu, host, last_task_id))
    return spans


def _close_host_span(current: list[Any], gpu: int | None, host: str | None, last_task_id: str | None) -> Span:
    kind, start, end, seconds, max_mib = current
    which = "GPU" if gpu is None else f"GPU {gpu}"
    where = f" on {host}" if host else ""
    if kind == ORPHANED:
        owner = f" of finished task {last_task_id[:8]}" if last_task_id else " of no running task"
        reason = f"{which}{where}: {max_mib / 1024:.1f} GiB held by processes{owner} for {_minutes(end - start)}"
        return Span(ORPHANED, start, end, seconds / 3600.0, gpu=gpu, reason=reason, task_id=last_task_id,
                    host=host)
    reason = f"{which}{where} idle with no task for {_minutes(end - start)}"
    return Span(IDLE_CAPACITY, start, end, seconds / 3600.0, gpu=gpu, reason=reason, host=host)


def uncovered_hours(window: tuple[float, float], covered: Iterable[tuple[float, float]]) -> float:
    """Hours of ``window`` not inside any ``covered`` interval (the intervals may overlap)."""
    lo, hi = window
    if hi <= lo:
        return 0.0
    busy = 0.0
    cursor = lo
    for start, end in sorted((max(s, lo), min(e, hi)) for s, e in covered):
        if end <= cursor:
            continue
        busy += end - max(start, cursor)
        cursor = end
    return max(0.0, (hi - lo) - busy) / 3600.0
