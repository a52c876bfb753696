#!/usr/bin/env python3
"""Run the real NVML monitor path under a real CUDA load and print what the waste detector says.

    .venv/bin/python scripts/gpu_check.py [--gpu 0] [--window 5] [--held-gib 20]

Needs an NVIDIA GPU with its driver, nvidia-ml-py, and torch with CUDA (else cupy). It drives
the GPU through the phases of the recorded H200 traces (idle, busy matmuls, an input-bound loop
whose host side busy-waits like a slow data loader, memory held with no kernels, released),
samples it every 0.5 s with the SDK's :class:`fleetdeck.monitor.ResourceMonitor` (real NVML,
real psutil) plus the compute-process list a host agent reports, then runs the server's waste
detector on what the monitor produced. The task is taken to run from the busy phase to the end
of the input-bound phase; its process keeps the held memory after that (orphaned).

Exit code 0 when each kind of waste is found in its phase and nowhere else, 1 when not, 2 when
there is no GPU or no CUDA library to load it with.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

PHASES = (("idle", 10.0), ("busy", 15.0), ("input_bound", 20.0), ("held_idle", 15.0), ("released", 5.0))
EXPECTED = {"held_idle": "input_bound", "orphaned": "held_idle", "idle_capacity": "idle"}
"""Where each kind of waste must be found (idle capacity also after the release)."""


class Load:
    """The CUDA work of each phase, with torch or cupy."""

    def __init__(self, gpu: int) -> None:
        try:
            import torch

            if not torch.cuda.is_available():
                raise ImportError("torch without CUDA")
            self.torch: Any = torch
            self.device = torch.device(f"cuda:{gpu}")
            self.a = torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16)
            self.small = torch.randn(2048, 2048, device=self.device, dtype=torch.bfloat16)
            self.kind = f"torch {torch.__version__}"
        except ImportError:
            import cupy  # type: ignore[import-not-found]

            self.torch = None
            cupy.cuda.Device(gpu).use()
            self.cupy: Any = cupy
            self.a = cupy.random.rand(8192, 8192, dtype=cupy.float32)
            self.small = cupy.random.rand(2048, 2048, dtype=cupy.float32)
            self.kind = f"cupy {cupy.__version__}"
        self.held: Any = None

    def sync(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize(self.device)
        else:
            self.cupy.cuda.Device().synchronize()

    def busy(self, until: float) -> None:
        while time.time() < until:
            for _ in range(4):
                self.a @ self.a
            self.sync()

    def input_bound(self, until: float) -> None:
        """15 ms of GPU work, then 45 ms of host-side busy work (a data loader that cannot keep up)."""
        while time.time() < until:
            burst = time.time() + 0.015
            while time.time() < burst:
                self.small @ self.small
            self.sync()
            spin = time.time() + 0.045
            while time.time() < spin:
                pass

    def hold(self, gib: float) -> None:
        count = int(gib * (1 << 30) / 4)
        self.held = (self.torch.empty(count, dtype=self.torch.float32, device=self.device) if self.torch is not None
                     else self.cupy.empty(count, dtype=self.cupy.float32))
        self.sync()

    def release(self) -> None:
        self.held = None
        self.a = self.small = None
        if self.torch is not None:
            self.torch.cuda.empty_cache()
        else:
            self.cupy.get_default_memory_pool().free_all_blocks()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to load")
    parser.add_argument("--window", type=float, default=5.0, help="monitor averaging window, seconds")
    parser.add_argument("--held-gib", type=float, default=20.0, help="memory held with no kernels, GiB")
    args = parser.parse_args()

    from fleetdeck.monitor import Nvml, ResourceMonitor
    from fleetdeck.server_lite.pricing import WastePolicy
    from fleetdeck.server_lite.waste import GpuObservation, held_idle_spans, host_gpu_spans

    nvml = Nvml()
    if args.gpu >= len(nvml.handles):
        print(f"no NVML GPU {args.gpu} visible (driver {nvml.driver or 'absent'}): nothing to check")
        return 2
    gpu = nvml.inventory[args.gpu]
    print(f"GPU {args.gpu}: {gpu['name']}  {gpu['memory_total_mib']} MiB  driver {nvml.driver}  CUDA {nvml.cuda}")
    try:
        load = Load(args.gpu)
    except ImportError as exc:
        print(f"no CUDA library to load the GPU with (torch with CUDA, or cupy): {exc}")
        return 2
    print(f"load: {load.kind}; monitor window {args.window:.0f} s, samples every 0.5 s")

    import pynvml

    monitor = ResourceMonitor(os.getpid(), report_s=args.window, nvml=nvml, gpu_indices=[args.gpu])
    reports: list[tuple[float, str, dict[str, float]]] = []
    observations: list[tuple[float, str, GpuObservation]] = []
    phase = {"name": "idle"}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            report = monitor.sample()
            now = time.time()
            if report:
                reports.append((now, phase["name"], report))
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(nvml.handles[args.gpu])
            reading = nvml.readings([args.gpu])[args.gpu]
            observations.append((now, phase["name"], GpuObservation(
                now, float(reading.get("gpu_util", 0.0)), float(reading.get("mem_used_mib", 0.0)),
                tuple((p.pid, (p.usedGpuMemory or 0) / (1 << 20)) for p in procs))))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    bounds: dict[str, tuple[float, float]] = {}
    try:
        for name, seconds in PHASES:
            phase["name"] = name
            start = time.time()
            until = start + seconds
            if name == "busy":
                load.busy(until)
            elif name == "input_bound":
                load.input_bound(until)
            elif name == "held_idle":
                load.hold(min(args.held_gib, gpu["memory_total_mib"] / 1024 * 0.25))
            elif name == "released":
                load.release()
            time.sleep(max(0.0, until - time.time()))
            bounds[name] = (start, time.time())
            print(f"  phase {name:<12} {seconds:>4.0f} s done", flush=True)
    finally:
        stop.set()
        sampler.join(5)

    util_key = f"gpu.{args.gpu}"
    print(f"\nmonitor reports ({args.window:.0f} s averages) as the task's :monitor: series would hold them")
    print(f"{'t':>6}  {'phase':<12}{'util %':>8}{'mem MiB':>10}{'power W':>9}{'cpu %':>8}")
    t0 = bounds["idle"][0]
    for t, name, report in reports:
        print(f"{t - t0:>6.1f}  {name:<12}{report.get(util_key + '.util', float('nan')):>8.1f}"
              f"{report.get(util_key + '.mem_used_mib', float('nan')):>10.0f}"
              f"{report.get(util_key + '.power_w', float('nan')):>9.0f}{report.get('cpu.percent', float('nan')):>8.0f}")

    policy = WastePolicy(util_threshold_percent=50, window_s=2 * args.window, orphan_min_mib=1024)
    run = (bounds["busy"][0], bounds["input_bound"][1])
    in_run = [(t, r) for t, _n, r in reports if run[0] < t <= run[1] + args.window / 2]
    times = [t for t, _ in in_run]
    spans = held_idle_spans(times, [r.get(util_key + ".util") for _, r in in_run], policy, gpu=args.gpu,
                            cpu=(times, [r.get("cpu.percent", float("nan")) for _, r in in_run]),
                            mem_used_mib=(times, [r.get(util_key + ".mem_used_mib", float("nan")) for _, r in in_run]))
    spans += host_gpu_spans([o for _t, _n, o in observations], [run], policy, gpu=args.gpu, host=os.uname().nodename,
                            last_task_id="gpu-check")

    def phase_of(ts: float) -> str:
        return next((name for name, (s, e) in bounds.items() if s <= ts <= e), "between")

    print("\nwaste verdicts (task = busy .. input_bound; its memory stays after it ends)")
    ok = True
    for span in spans:
        middle = phase_of((span.start + span.end) / 2)
        expected = EXPECTED[span.kind]
        good = middle == expected or (span.kind == "idle_capacity" and middle == "released")
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {span.kind:<14}{span.start - t0:>6.1f}-{span.end - t0:<6.1f}s "
              f"in {middle:<12}{span.gpu_hours * 3600:>7.1f} GPU-s  {span.reason}")
    for kind, expected in EXPECTED.items():
        if not any(s.kind == kind for s in spans):
            ok = False
            print(f"  BAD {kind} not found (expected in {expected})")
    print("\nresult:", "each kind of waste found in its phase only" if ok else "MISMATCH (see BAD lines)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
