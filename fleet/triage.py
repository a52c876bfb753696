"""Why is an agent or task stuck? Named causes, and the evidence an on-call person needs.

:class:`StuckDetector` runs inside the supervisor on the host, fed every few seconds with the
agent's heartbeat (task, phase, last output time) and local samples (CPU of the task's processes,
GPU utilisation and memory). It names one cause per episode:

- ``phase_timeout``: the task has been in a setup phase (clone, install, image_pull) too long;
- ``silent``: the task is running but has printed nothing and used next to no CPU and GPU for
  the whole window (a deadlock, a hung collective, a wait on a dead data source);
- ``gpu_idle``: the task holds GPU memory but the GPU has been idle for the window.

``agent_dead`` and ``crash_loop`` come from the supervisor's own process handling, and
``no_heartbeat`` from the server when a supervisor stops reporting.

When a finding opens, :func:`capture_evidence` takes the log tail, the process tree with CPU and
RSS, a ``py-spy dump`` of the task's Python processes (where py-spy is installed) and
``nvidia-smi`` (where present), each bounded in time and size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fleetdeck.fleet.inventory import AgentLimits

LOW_CPU_PERCENT = 5.0
"""A task tree below this CPU (percent of one core) counts as doing nothing."""
LOW_GPU_PERCENT = 5.0
EVIDENCE_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
SUGGESTED = {"phase_timeout": "abort-requeue", "silent": "abort-requeue", "gpu_idle": "abort-requeue",
             "agent_dead": "restart", "crash_loop": "drain", "no_heartbeat": "restart",
             "host_unreachable": "inspect", "memory_leak": "restart"}


@dataclass(frozen=True)
class Sample:
    """What the supervisor observed at one instant."""

    ts: float
    task_id: str | None = None
    phase: str | None = None
    phase_started: float | None = None
    last_output_ts: float | None = None
    task_cpu_percent: float = 0.0
    """CPU of the agent's descendants (the task), in percent of one core."""
    gpu_util: float | None = None
    """Mean utilisation of the GPUs the task uses; None without a GPU."""
    gpu_mem_mib: float | None = None
    """GPU memory held by the task's processes; None without a GPU."""


@dataclass
class Finding:
    id: str
    cause: str
    summary: str
    task_id: str | None = None
    phase: str | None = None
    suggested_action: str = "inspect"
    evidence: dict[str, Any] = field(default_factory=dict)


def finding_id(host: str, cause: str, task_id: str | None, since: float) -> str:
    """Stable per episode, so re-sending a finding updates it instead of adding a duplicate."""
    return hashlib.sha256(f"{host}\0{cause}\0{task_id}\0{since:.3f}".encode()).hexdigest()[:32]


class StuckDetector:
    """Turns a stream of samples into findings that open once per episode and close when it ends."""

    def __init__(self, host: str, limits: AgentLimits) -> None:
        self.host = host
        self.limits = limits
        self._low_since: float | None = None
        self._gpu_idle_since: float | None = None
        self._task: str | None = None
        self.open: dict[str, Finding] = {}
        """Cause -> the finding currently open for it."""

    def observe(self, sample: Sample) -> tuple[list[Finding], list[Finding]]:
        """Feed one sample; returns (newly opened, now resolved) findings."""
        if sample.task_id != self._task:
            self._task, self._low_since, self._gpu_idle_since = sample.task_id, None, None
        active: dict[str, tuple[str, float]] = {}
        if sample.task_id:
            self._phase(sample, active)
            self._silent(sample, active)
            self._gpu(sample, active)
        opened, resolved = [], []
        for cause, (summary, since) in active.items():
            if cause not in self.open:
                finding = Finding(finding_id(self.host, cause, sample.task_id, since), cause, summary,
                                  sample.task_id, sample.phase, SUGGESTED[cause])
                self.open[cause] = finding
                opened.append(finding)
        for cause in [c for c in self.open if c not in active]:
            resolved.append(self.open.pop(cause))
        return opened, resolved

    def _phase(self, s: Sample, active: dict[str, tuple[str, float]]) -> None:
        timeout = self.limits.phase_timeouts.get(s.phase or "")
        if timeout and s.phase_started and s.ts - s.phase_started > timeout:
            active["phase_timeout"] = (f"task {s.task_id} has been in phase {s.phase!r} for "
                                       f"{s.ts - s.phase_started:.0f}s (limit {timeout:.0f}s)", s.phase_started)

    def _silent(self, s: Sample, active: dict[str, tuple[str, float]]) -> None:
        if s.phase in self.limits.phase_timeouts:
            self._low_since = None  # setup phases are judged by their timeout
            return
        busy = s.task_cpu_percent >= LOW_CPU_PERCENT or (s.gpu_util or 0.0) >= LOW_GPU_PERCENT
        if busy:
            self._low_since = None
            return
        if self._low_since is None:
            self._low_since = s.ts
        last_output = max(filter(None, (s.last_output_ts, s.phase_started)), default=self._low_since)
        quiet = s.ts - max(last_output, 0.0)
        idle = s.ts - self._low_since
        window = self.limits.silent_window_s
        if quiet >= window and idle >= window:
            active["silent"] = (f"task {s.task_id} printed nothing for {quiet:.0f}s and used "
                                f"{s.task_cpu_percent:.1f}% CPU"
                                + (f", {s.gpu_util:.0f}% GPU" if s.gpu_util is not None else "")
                                + f" for {idle:.0f}s (window {window:.0f}s)", self._low_since)

    def _gpu(self, s: Sample, active: dict[str, tuple[str, float]]) -> None:
        holding = (s.gpu_mem_mib or 0.0) > 0
        if not holding or (s.gpu_util or 0.0) >= LOW_GPU_PERCENT:
            self._gpu_idle_since = None
            return
        if self._gpu_idle_since is None:
            self._gpu_idle_since = s.ts
        idle = s.ts - self._gpu_idle_since
        if idle >= self.limits.gpu_idle_window_s:
            active["gpu_idle"] = (f"task {s.task_id} holds {s.gpu_mem_mib:.0f} MiB of GPU memory but the GPU "
                                  f"has been idle ({s.gpu_util or 0:.0f}%) for {idle:.0f}s", self._gpu_idle_since)


# -- evidence --------------------------------------------------------------------------------------


def capture_evidence(agent_pid: int | None, log_file: Path | None, extra_bins: Iterable[Path] = ()) -> dict[str, Any]:
    """What an on-call person needs to see, captured at once (each part bounded in time and size)."""
    evidence: dict[str, Any] = {"captured": time.time()}
    if log_file is not None:
        evidence["log_tail"] = tail(log_file, LOG_TAIL_LINES)
    if agent_pid is not None:
        evidence["process_tree"] = process_tree(agent_pid)
        pyspy = _which("py-spy", extra_bins)
        if pyspy is not None:
            evidence["py_spy"] = {str(pid): _run([pyspy, "dump", "--pid", str(pid)])
                                  for pid in python_descendants(agent_pid)[:3]}
        else:
            evidence["py_spy"] = "py-spy not installed on the host"
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        evidence["nvidia_smi"] = _run([smi])
    return evidence


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file, reading only its end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return []
    return [line.decode("utf-8", "replace")[:500] for line in data.splitlines()[-lines:]]


def process_tree(root_pid: int) -> list[dict[str, Any]]:
    """The process and its descendants with CPU percent and RSS."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    for proc in procs:
        try:
            proc.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.2)
    rows = []
    for proc in procs:
        try:
            with proc.oneshot():
                rows.append({"pid": proc.pid, "ppid": proc.ppid(), "name": proc.name(),
                             "cmdline": " ".join(proc.cmdline())[:200], "status": proc.status(),
                             "cpu_percent": round(proc.cpu_percent(None), 1),
                             "rss_mb": round(proc.memory_info().rss / 2**20, 1)})
        except psutil.Error:
            continue
    return rows


def python_descendants(root_pid: int) -> list[int]:
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if "python" in child.name().lower():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def _which(name: str, extra_bins: Iterable[Path]) -> str | None:
    for folder in extra_bins:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=EVIDENCE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{Path(argv[0]).name} did not answer within {EVIDENCE_TIMEOUT_S:.0f}s"
    except OSError as exc:
        return f"{Path(argv[0]).name} failed: {exc}"
    text = (result.stdout + result.stderr).strip()
    return text[-8000:] if text else f"{Path(argv[0]).name} exited {result.returncode} with no output"
