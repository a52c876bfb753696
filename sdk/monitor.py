"""Resource monitoring: CPU, memory, disk, network and per-GPU readings of a training process.

Runs in the helper process, never in the training process. Samples are taken every
``sample_s`` (1 s by default) and averaged over ``report_s`` (10 s) into scalars under the metric
title ``":monitor:"`` with these variants (the cost and waste reports read them):

``cpu.percent`` (the process tree, 100 = one core), ``process.rss_mb`` (the process tree),
``system.mem_used_mb``, ``system.mem_percent``, ``disk.read_mb_s``, ``disk.write_mb_s``,
``net.recv_mb_s``, ``net.sent_mb_s`` and for each GPU ``i`` the task uses: ``gpu.{i}.util``,
``gpu.{i}.mem_used_mib``, ``gpu.{i}.mem_total_mib``, ``gpu.{i}.power_w``, ``gpu.{i}.temp_c``.

NVML readings go through :func:`gpu_sample`, one pure function, so recorded traces (the same
fields: ``gpu_util``, ``mem_used_mib``, ``mem_total_mib``, ``power_w``, ``temp_c``) replay
through exactly the code that live readings take. Without NVML or without a GPU there are no
GPU series and no error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RESOURCE_TITLE = ":monitor:"
"""Metric title of resource series (the server's ``events.RESOURCE_TITLE``)."""

_MB = 1024 * 1024


def gpu_sample(index: int, reading: Mapping[str, Any]) -> dict[str, float]:
    """Turn one NVML reading of GPU ``index`` into monitor variants.

    Args:
        index: the GPU's NVML index.
        reading: ``gpu_util`` (%), ``mem_used_mib``, ``mem_total_mib``, ``power_w``, ``temp_c``;
            a missing or None field (an unsupported NVML query) gives no variant.
    """
    out: dict[str, float] = {}
    for key, variant in (("gpu_util", "util"), ("mem_used_mib", "mem_used_mib"),
                         ("mem_total_mib", "mem_total_mib"), ("power_w", "power_w"), ("temp_c", "temp_c")):
        value = reading.get(key)
        if value is not None:
            out[f"gpu.{index}.{variant}"] = float(value)
    return out


def read_nvml(handle: Any) -> dict[str, Any]:
    """One live NVML reading of a device handle, in :func:`gpu_sample`'s fields."""
    import pynvml

    reading: dict[str, Any] = {}
    try:
        reading["gpu_util"] = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except pynvml.NVMLError:
        pass
    try:
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        reading["mem_used_mib"] = mem.used / _MB
        reading["mem_total_mib"] = mem.total / _MB
    except pynvml.NVMLError:
        pass
    try:
        reading["power_w"] = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
    except pynvml.NVMLError:
        pass
    try:
        reading["temp_c"] = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    except pynvml.NVMLError:
        pass
    return reading


def visible_gpu_indices(count: int, env: Mapping[str, str] | None = None,
                        uuids: list[str] | None = None) -> list[int]:
    """NVML indices of the GPUs this task may use (``CUDA_VISIBLE_DEVICES``, else all)."""
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(count))
    picked: list[int] = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        if part.isdigit() and int(part) < count:
            picked.append(int(part))
        elif uuids and part.startswith("GPU-"):
            picked.extend(i for i, u in enumerate(uuids) if u.startswith(part))
        else:
            break  # CUDA stops at the first invalid entry
    return picked


class Nvml:
    """The GPUs NVML can see; an absent library or driver means no GPUs, never an exception."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.inventory: list[dict[str, Any]] = []
        self.driver = ""
        self.cuda = ""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no library, no driver, no GPU: the documented "no GPU series" case
            return
        try:
            self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            self.cuda = f"{cuda // 1000}.{cuda % 1000 // 10}"
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self.handles.append(handle)
                self.inventory.append({"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle)),
                                       "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                                       "memory_total_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total // _MB})
        except pynvml.NVMLError:
            self.handles = self.handles[:len(self.inventory)]

    def readings(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        return {i: read_nvml(self.handles[i]) for i in indices if i < len(self.handles)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class _Average:
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, sample: Mapping[str, float]) -> None:
        for key, value in sample.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def take(self) -> dict[str, float]:
        result = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return result


class ResourceMonitor:
    """Samples one process tree and the machine; :meth:`sample` returns an average when one is due.

    Args:
        pid: the training process.
        report_s: seconds averaged into one reported point.
        nvml: GPU access (an empty :class:`Nvml` means no GPU series).
        gpu_indices: the GPUs to report.
    """

    def __init__(self, pid: int, report_s: float = 10.0, nvml: Nvml | None = None,
                 gpu_indices: list[int] | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.process = psutil.Process(pid)
        self.report_s = report_s
        self.nvml = nvml if nvml is not None else Nvml()
        self.gpu_indices = gpu_indices if gpu_indices is not None else visible_gpu_indices(
            len(self.nvml.handles), uuids=[g["uuid"] for g in self.nvml.inventory])
        self._average = _Average()
        self._start = time.monotonic()
        self._last_report = self._start
        self._last_io: tuple[float, Any, Any] | None = None
        self._cpu_seen: dict[int, Any] = {}

    def sample(self) -> dict[str, float]:
        """Take one sample now; returns ``{variant: mean}`` when ``report_s`` has passed, else ``{}``."""
        self._average.add(self.read())
        if time.monotonic() - self._last_report >= self.report_s:
            return self.report()
        return {}

    def report(self) -> dict[str, float]:
        """The average of the samples since the last report (``{}`` when there were none)."""
        self._last_report = time.monotonic()
        return self._average.take()

    @property
    def elapsed(self) -> int:
        return int(time.monotonic() - self._start)

    def read(self) -> dict[str, float]:
        psutil = self._psutil
        sample: dict[str, float] = {}
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            procs = []
        cpu = rss = 0.0
        for proc in procs:
            try:
                if proc.pid not in self._cpu_seen:
                    self._cpu_seen[proc.pid] = proc
                    proc.cpu_percent(None)  # the first call only starts the measurement
                else:
                    cpu += self._cpu_seen[proc.pid].cpu_percent(None)
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
        if procs:
            sample["cpu.percent"] = cpu
            sample["process.rss_mb"] = rss / _MB
        mem = psutil.virtual_memory()
        sample["system.mem_used_mb"] = (mem.total - mem.available) / _MB
        sample["system.mem_percent"] = mem.percent
        now = time.monotonic()
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        if self._last_io is not None:
            then, last_disk, last_net = self._last_io
            dt = max(now - then, 1e-6)
            if disk is not None and last_disk is not None:
                sample["disk.read_mb_s"] = (disk.read_bytes - last_disk.read_bytes) / _MB / dt
                sample["disk.write_mb_s"] = (disk.write_bytes - last_disk.write_bytes) / _MB / dt
            if net is not None and last_net is not None:
                sample["net.recv_mb_s"] = (net.bytes_recv - last_net.bytes_recv) / _MB / dt
                sample["net.sent_mb_s"] = (net.bytes_sent - last_net.bytes_sent) / _MB / dt
        self._last_io = (now, disk, net)
        for index, reading in self.nvml.readings(self.gpu_indices).items():
            sample.update(gpu_sample(index, reading))
        return sample
