"""Stuck detection on recorded GPU traces, findings on a real server, the triage CLI, and health
checks that act only after consecutive failures over one reused connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.fleet import inventory
from fleetdeck.fleet.health import HealthChecker
from fleetdeck.fleet.inventory import AgentLimits
from fleetdeck.fleet.ssh import ConnectionPool
from fleetdeck.fleet.triage import Sample, StuckDetector, finding_id, process_tree, tail
from fleetdeck.server_lite.process import ServerProcess
from tests.fleet.sshd import SSHHost, ssh_hosts, trust  # noqa: F401 - fixture
from tests.support import wait_for

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "gpu-traces"
TASK = "0123456789abcdef0123456789abcdef"


def _trace(name: str) -> list[dict[str, Any]]:
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"recorded GPU traces not found at {TRACES}")
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_gpu_held_idle_is_flagged_on_a_recorded_h200_trace() -> None:
    """Real NVML samples recorded on an H200 (shared/data/gpu-traces): idle, busy matmuls, an
    input-bound loop at ~1% utilisation (0.5 ms bursts per 90 ms), then 20 GiB held with no
    kernels, then released. The flag must stay off while the GPU works, be up through the
    held-idle phase, and clear when the task ends. After "released" the process still holds its
    ~600 MiB CUDA context on an idle GPU, which is still a held GPU. (At 1% the input-bound phase is,
    for the GPU's owner, as wasteful as holding it idle, so it may open the episode.)"""
    samples = _trace("h200-phases-run1.jsonl")
    detector = StuckDetector("gpu-1", AgentLimits(gpu_idle_window_s=10, silent_window_s=3600))
    opened_in: list[str] = []
    open_during: dict[str, set[bool]] = {}
    for s in samples:
        held = sum(p["used_mib"] for p in s["procs"]) if s["procs"] else 0.0
        opened, _ = detector.observe(Sample(ts=s["t"], task_id=TASK, phase="running", phase_started=samples[0]["t"],
                                            last_output_ts=s["t"], task_cpu_percent=50.0,
                                            gpu_util=float(s["gpu_util"]), gpu_mem_mib=held))
        opened_in += [s["phase"] for f in opened if f.cause == "gpu_idle"]
        open_during.setdefault(s["phase"], set()).add("gpu_idle" in detector.open)
    assert len(opened_in) == 1 and opened_in[0] in ("input_bound", "held_idle")
    assert open_during["busy"] == {False} and open_during["idle"] == {False}
    assert open_during["held_idle"] == {True}
    _, resolved = detector.observe(Sample(ts=samples[-1]["t"] + 1))  # the task ended
    assert [f.cause for f in resolved] == ["gpu_idle"]


def test_input_bound_trace_is_not_called_idle() -> None:
    """Recorded input-bound phase (short GPU bursts between host-side sleeps): low but not idle."""
    samples = [s for s in _trace("h200-phases-run2.jsonl") if s["phase"] in ("busy", "input_bound")]
    detector = StuckDetector("gpu-1", AgentLimits(gpu_idle_window_s=5, silent_window_s=5))
    for s in samples:
        opened, _ = detector.observe(Sample(ts=s["t"], task_id=TASK, phase="running", phase_started=samples[0]["t"],
                                            last_output_ts=samples[0]["t"], task_cpu_percent=1.0,
                                            gpu_util=float(s["gpu_util"]), gpu_mem_mib=1000.0))
        assert not opened, f"flagged {opened[0].cause} at {s['phase']}: {opened[0].summary}"


def test_silent_needs_both_quiet_output_and_idle_cpu_for_the_window() -> None:
    detector = StuckDetector("h", AgentLimits(silent_window_s=10))
    start = 1000.0
    for t in range(0, 30):  # printing nothing but busy on CPU: a long computation, not stuck
        assert detector.observe(Sample(start + t, TASK, "running", start, start, task_cpu_percent=95.0)) == ([], [])
    opened: list[Any] = []
    for t in range(30, 45):
        opened += detector.observe(Sample(start + t, TASK, "running", start, start, task_cpu_percent=0.5))[0]
    assert [f.cause for f in opened] == ["silent"] and opened[0].task_id == TASK
    _, resolved = detector.observe(Sample(start + 46, TASK, "running", start, start + 46, task_cpu_percent=0.0))
    assert [f.cause for f in resolved] == ["silent"]  # output again: the episode closes


def test_phase_over_timeout_names_the_phase_and_is_raised_once() -> None:
    detector = StuckDetector("h", AgentLimits(phase_timeouts={"pulling": 60}))
    opened = [f for t in range(0, 120, 5)
              for f in detector.observe(Sample(1000.0 + t, TASK, "pulling", 1000.0, None, 0.0))[0]]
    assert [(f.cause, f.phase) for f in opened] == [("phase_timeout", "pulling")]
    assert "'pulling' for 65s (limit 60s)" in opened[0].summary
    assert opened[0].id == finding_id("h", "phase_timeout", TASK, 1000.0)


def test_evidence_helpers_read_real_processes_and_files(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text("".join(f"line {i}\n" for i in range(500)))
    assert tail(log, 3) == ["line 497", "line 498", "line 499"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(child.pid)
        assert tree[0]["pid"] == child.pid and tree[0]["rss_mb"] > 0 and "time.sleep(30)" in tree[0]["cmdline"]
    finally:
        child.kill()
        child.wait()


# -- server: findings, no_heartbeat, triage CLI ----------------------------------------------------


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", "--server", server.url, "--token",
                           server.admin_token, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "250"})


def test_quiet_supervisor_becomes_no_heartbeat_and_triage_lists_newest_first(server: ServerProcess,
                                                                             client: Client) -> None:
    agent = Client(url=server.url, token=client.post("/tokens", {"name": "sup", "role": "agent"})["token"])
    agent.request("PUT", "/fleet/supervisors/h-dead", json={"state": "running", "interval_s": 0.5, "worker": "h-dead"})
    agent.post("/fleet/findings", {"id": finding_id("h-slow", "phase_timeout", TASK, 1.0), "host": "h-slow",
                                   "cause": "phase_timeout", "task_id": TASK, "phase": "cloning",
                                   "summary": "task in phase 'cloning' for 700s", "suggested_action": "abort-requeue",
                                   "evidence": {"log_tail": ["git clone ...", "Receiving objects: 3%"]}})
    started = time.time()
    dead = wait_for(lambda: [f for f in client.get("/fleet/findings")["items"] if f["cause"] == "no_heartbeat"],
                    timeout=15, message="no_heartbeat finding")[0]
    assert time.time() - started < 10 and dead["host"] == "h-dead" and "h-dead" in dead["summary"]

    listing = _cli(server, "triage")
    assert listing.returncode == 0, listing.stderr
    lines = [line for line in listing.stdout.splitlines() if "h-dead" in line or "h-slow" in line]
    assert "no_heartbeat" in lines[0] and "phase_timeout" in lines[1]  # newest first

    shown = _cli(server, "triage", "show", finding_id("h-slow", "phase_timeout", TASK, 1.0)[:8])
    assert shown.returncode == 0 and "Receiving objects: 3%" in shown.stdout

    missing = _cli(server, "triage", "act", "ffffffff", "restart", "--yes")
    assert missing.returncode == 2 and "no finding with id 'ffffffff'" in missing.stderr
    assert "Traceback" not in missing.stderr

    # A quiet host whose finding a person dismissed stays dismissed.
    client.post(f"/fleet/findings/{dead['id']}/resolve", {"action": "dismiss", "note": "host retired"})
    assert not [f for f in client.get("/fleet/findings")["items"] if f["cause"] == "no_heartbeat"]
    agent.close()


def test_fleet_api_refuses_bad_input_with_a_named_field(client: Client) -> None:
    from fleetdeck.errors import RequestRejected

    with pytest.raises(RequestRejected, match="cause"):
        client.post("/fleet/findings", {"id": TASK, "host": "h", "cause": "bad_luck", "summary": "x"})
    with pytest.raises(RequestRejected, match="price_per_hour"):
        client.request("PUT", "/fleet/hosts/h", json={"price_per_hour": -1})
    with pytest.raises(RequestRejected, match="host name"):
        client.request("PUT", "/fleet/supervisors/bad%01name", json={"state": "running"})


# -- health checks over SSH ------------------------------------------------------------------------


@pytest.mark.ssh
def test_health_checks_reuse_one_connection_and_act_after_consecutive_failures(
        ssh_hosts: list[SSHHost], client: Client) -> None:
    host = ssh_hosts[0]
    trust([host])
    inv = inventory.from_dict({"hosts": [host.inventory_entry(),
                                         {"name": "gone", "address": "127.0.0.1", "port": 9, "user": "x"}]})
    with ConnectionPool(inv) as pool:
        checker = HealthChecker(inv, pool, client, failures_to_act=3)
        for round_ in range(1, 4):
            up, gone = checker.check_all()
            assert up.reachable and not gone.reachable and gone.consecutive_failures == round_
            findings = [f for f in client.get("/fleet/findings")["items"] if f["cause"] == "host_unreachable"]
            assert len(findings) == (1 if round_ == 3 else 0)  # not before the third failure in a row
        assert pool.get(host.name).connects == 1  # three checks, one SSH handshake
        assert "127.0.0.1:9" in findings[0]["summary"]
        checker.check_all()
        assert len([f for f in client.get("/fleet/findings")["items"] if f["cause"] == "host_unreachable"]) == 1


def test_hosts_api_returns_inventory_prices_and_live_state(client: Client) -> None:
    client.request("PUT", "/fleet/hosts/gpu-a", json={"labels": ["h100"], "queues": ["gpu"],
                                                     "gpus": {"count": 8, "model": "H100-80GB"},
                                                     "price_per_hour": 20.0, "price_per_gpu_hour": 2.5})
    (host,) = client.get("/fleet/hosts")["items"]
    assert (host["name"], host["labels"], host["queues"], host["gpus"], host["price_per_gpu_hour"], host["state"]) == \
        ("gpu-a", ["h100"], ["gpu"], {"count": 8, "model": "H100-80GB"}, 2.5, "unknown")
    client.request("PUT", "/fleet/supervisors/gpu-a", json={"state": "running", "interval_s": 2, "rss_mb": 81.5})
    host = client.get("/fleet/hosts/gpu-a")
    assert host["state"] == "ok" and host["supervisor"]["rss_mb"] == 81.5
    client.request("PUT", "/fleet/supervisors/gpu-a", json={"state": "crash_looping", "interval_s": 2})
    assert client.get("/fleet/hosts/gpu-a")["state"] == "degraded"
    client.request("DELETE", "/fleet/hosts/gpu-a")
    assert client.get("/fleet/hosts")["items"] == []
