"""Check the live NVML path of the resource monitor on a GPU machine (prints what it saw).

    python examples/gpu_monitor_check.py --seconds 10

Lists the GPUs as ``Task.init`` records them (``environment.gpus``, driver, CUDA), then samples
them through the same code the helper runs (``read_nvml`` -> ``gpu_sample``) while a CUDA matmul
loop keeps GPU 0 busy (PyTorch with CUDA, when installed). Without NVML or a GPU it says so and
exits 0: that is the documented "no GPU series, no error" case.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from fleetdeck.monitor import Nvml, ResourceMonitor


def cuda_load(stop: threading.Event) -> str:
    try:
        import torch
    except ImportError:
        return "no PyTorch: sampling an idle GPU"
    if not torch.cuda.is_available():
        return "PyTorch without CUDA: sampling an idle GPU"

    def loop() -> None:
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        while not stop.is_set():
            (a @ a).sum().item()

    threading.Thread(target=loop, daemon=True).start()
    return "CUDA matmul load on GPU 0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    nvml = Nvml()
    if not nvml.handles:
        print("no NVML or no GPU: no GPU series will be reported (expected on CPU machines)")
        return
    print(f"driver {nvml.driver}, CUDA {nvml.cuda}")
    for gpu in nvml.inventory:
        print(f"  gpu {gpu['index']}: {gpu['name']} {gpu['uuid']} {gpu['memory_total_mib']} MiB")
    stop = threading.Event()
    print(cuda_load(stop))
    monitor = ResourceMonitor(os.getpid(), report_s=2.0, nvml=nvml)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        report = monitor.sample()
        if report:
            gpu = {k: round(v, 1) for k, v in sorted(report.items()) if k.startswith("gpu.")}
            print(f"t={monitor.elapsed:>3}s cpu={report.get('cpu.percent', 0):.0f}% {gpu}")
        time.sleep(0.5)
    stop.set()


if __name__ == "__main__":
    main()
