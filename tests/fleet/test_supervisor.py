"""The supervisor as a real process, supervising real processes, reporting to a real server.

The supervised programs here are small stand-in agents (real Python processes that crash, leak or
run a silent "task" child and send real worker heartbeats), because each test needs an agent that
misbehaves in one precise way; the SSH tests run the supervisor over the real agent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fleetdeck.client import Client
from fleetdeck.fleet.inventory import AgentLimits
from fleetdeck.fleet.supervisor import Backoff, MemoryWatch
from fleetdeck.server_lite.process import ServerProcess
from tests.support import wait_for

FAST = {"sample_interval_s": 0.2, "backoff_initial_s": 0.2, "backoff_max_s": 2.0, "backoff_reset_s": 600,
        "crash_loop_after": 3}


# -- pure parts ------------------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_resets_after_a_healthy_run() -> None:
    backoff = Backoff(1, 300, 600)
    assert [backoff.crashed(0.5) for _ in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff.crashed(601) == 1 and backoff.consecutive == 1


def test_memory_watch_judges_limit_slope_and_hard_limit() -> None:
    limits = AgentLimits(memory_limit_mb=1000, hard_limit_mb=2000, leak_slope_mb_per_min=30, leak_window_s=60)
    watch = MemoryWatch(limits)
    for t in range(0, 61, 2):  # flat at 300 MiB: healthy, whatever the noise
        watch.add(float(t), 300 + (t % 4))
    assert watch.verdict() is None
    watch.reset()
    for t in range(0, 40, 2):  # growing 60 MiB/min but the window is not full yet: no verdict
        watch.add(float(t), 300 + t)
    assert watch.verdict() is None
    for t in range(40, 62, 2):
        watch.add(float(t), 300 + t)
    kind, reason = watch.verdict()  # type: ignore[misc]
    assert kind == "leak" and "60.0 MiB/min" in reason
    watch.add(62.0, 1500)
    assert watch.verdict()[0] == "leak" and "over the limit 1000" in watch.verdict()[1]  # type: ignore[index]
    watch.add(64.0, 2500)
    assert watch.verdict()[0] == "hard_limit"  # type: ignore[index]
    assert watch.curve()[-1] == [64.0, 2500.0]


# -- the real process ------------------------------------------------------------------------------


def _agent_script(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "standin_agent.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


class Running:
    def __init__(self, root: Path, proc: subprocess.Popen[bytes], client: Client) -> None:
        self.root, self.proc, self.client = root, proc, client

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def restarts(self) -> list[dict[str, Any]]:
        return self.client.get("/fleet/hosts/h1/restarts")["items"]

    def findings(self, **params: Any) -> list[dict[str, Any]]:
        return self.client.get("/fleet/findings", host="h1", **params)["items"]


@pytest.fixture
def supervise(tmp_path: Path, server: ServerProcess, client: Client) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(agent: list[str], **limits: Any) -> Running:
        root = tmp_path / "install"
        (root / "run").mkdir(parents=True)
        token = client.post("/tokens", {"name": "agent-h1", "role": "agent"})["token"]
        (root / "agent-token").write_text(token)
        (root / "supervisor.json").write_text(json.dumps({
            "host": "h1", "worker": "h1", "server_url": server.url, "token_file": str(root / "agent-token"),
            "agent_command": agent, "limits": {**FAST, **limits}}))
        logs.append(open(tmp_path / "supervisor.err", "wb"))  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen([sys.executable, "-m", "fleetdeck.fleet.supervisor", str(root)], stderr=logs[-1])
        started.append(proc)
        return Running(root, proc, client)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for log in logs:
        log.close()


def test_killed_agent_is_flagged_and_restarted_with_growing_backoff(supervise: Any, tmp_path: Path) -> None:
    run = supervise(_agent_script(tmp_path, "import time\nwhile True: time.sleep(1)\n"))
    first = wait_for(lambda: run.status().get("agent_pid"), message="agent started")
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := run.status().get("agent_pid")) and p != first and p, message="agent restarted")
    assert psutil.pid_exists(second)
    restart = wait_for(lambda: run.restarts(), message="restart recorded")[0]
    assert restart["kind"] == "crash" and "killed by signal 9" in restart["reason"] and restart["backoff_s"] == 0.2
    dead = wait_for(lambda: [f for f in run.findings(status="all") if f["cause"] == "agent_dead"], message="finding")
    assert dead[0]["suggested_action"] == "restart" and "killed by signal 9" in dead[0]["summary"]

    # SIGTERM: the supervisor stops its agent, reports "stopped" and exits.
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(15) == 0
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
    assert run.client.get("/fleet/supervisors")["items"][0]["state"] == "stopped"


def test_crash_loop_is_reported_and_never_given_up(supervise: Any, tmp_path: Path) -> None:
    run = supervise(_agent_script(tmp_path, "import sys\nprint('boom: bad config', flush=True)\nsys.exit(3)\n"))
    restarts = wait_for(lambda: len(r := run.restarts()) >= 4 and r, timeout=20, message="4 crashes")
    backoffs = sorted(r["backoff_s"] for r in restarts)[:4]
    assert backoffs == [0.2, 0.4, 0.8, 1.6]
    assert all(r["exit_code"] == 3 for r in restarts)
    loop = wait_for(lambda: [f for f in run.findings() if f["cause"] == "crash_loop"], message="crash_loop finding")
    assert "boom: bad config" in "\n".join(loop[0]["evidence"]["log_tail"])
    assert wait_for(lambda: run.status().get("state") == "crash_looping" or run.status().get("agent_pid"))
    host = run.client.get("/fleet/supervisors")["items"][0]
    assert host["consecutive_crashes"] >= 3


LEAKY_AGENT = """
import subprocess, sys, time
hoard = []
while True:
    # one "task": a child process, during which the agent must not be restarted
    subprocess.run([sys.executable, "-c", "import time; time.sleep(0.6)"])
    chunk = bytearray(25 * 2**20)   # test-only leak: 25 MiB kept after every task
    chunk[::4096] = b"x" * len(chunk[::4096])
    hoard.append(chunk)
    time.sleep(0.3)
"""


def test_leaking_agent_is_restarted_between_tasks_with_reason_and_curve(supervise: Any, tmp_path: Path) -> None:
    run = supervise(_agent_script(tmp_path, LEAKY_AGENT), memory_limit_mb=80, hard_limit_mb=4000)
    restart = wait_for(lambda: [r for r in run.restarts() if r["kind"] == "leak"], timeout=30,
                       message="leak restart")[0]
    assert "over the limit 80 MiB" in restart["reason"]
    assert restart["at_safe_point"] is True and restart["rss_mb"] > 80
    curve = restart["memory_curve"]
    assert len(curve) >= 3 and curve[-1][1] > curve[0][1]
    local = [json.loads(line) for line in (run.root / "run" / "restarts.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "leak" for r in local)  # also kept on the host


def test_hard_limit_restarts_mid_task(supervise: Any, tmp_path: Path) -> None:
    body = """
    import subprocess, sys, time
    task = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.5)   # the task is running when the agent blows past the hard limit
    hoard = bytearray(120 * 2**20); hoard[::4096] = b"x" * len(hoard[::4096])
    task.wait()
    """
    run = supervise(_agent_script(tmp_path, body), memory_limit_mb=50, hard_limit_mb=100)
    restart = wait_for(lambda: [r for r in run.restarts() if r["kind"] == "hard_limit"], timeout=20,
                       message="hard-limit restart")[0]
    assert restart["at_safe_point"] is False and "hard limit 100 MiB" in restart["reason"]


SILENT_AGENT = """
import subprocess, sys, time, uuid
from fleetdeck.client import Client
client = Client()
task_id, started = uuid.uuid4().hex, time.time()
phase = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
while True:
    client.heartbeat("h1", status="busy", task_id=task_id, ttl_s=10,
                     stats={"pid": __import__("os").getpid(), "task_id": task_id, "phase": phase,
                            "phase_started": started, "last_output_ts": started})
    time.sleep(0.3)
"""


def test_silent_task_is_flagged_with_evidence(supervise: Any, tmp_path: Path) -> None:
    run = supervise([*_agent_script(tmp_path, SILENT_AGENT), "running"], silent_window_s=2)
    found = wait_for(lambda: [f for f in run.findings() if f["cause"] == "silent"], timeout=20,
                     message="silent finding")[0]
    assert found["task_id"] and found["suggested_action"] == "abort-requeue"
    evidence = found["evidence"]
    assert any("time.sleep(600)" in p["cmdline"] for p in evidence["process_tree"])
    assert "py_spy" in evidence and isinstance(evidence["log_tail"], list)


def test_slow_phase_is_flagged_with_that_phase(supervise: Any, tmp_path: Path) -> None:
    run = supervise([*_agent_script(tmp_path, SILENT_AGENT), "cloning"], phase_timeouts={"cloning": 1.5})
    found = wait_for(lambda: [f for f in run.findings() if f["cause"] == "phase_timeout"], timeout=20,
                     message="phase finding")[0]
    assert found["phase"] == "cloning" and "phase 'cloning'" in found["summary"]
    assert not [f for f in run.findings() if f["cause"] == "silent"]  # setup phases are judged by their timeout


def test_a_second_supervisor_on_the_same_install_refuses(supervise: Any, tmp_path: Path) -> None:
    run = supervise(_agent_script(tmp_path, "import time\nwhile True: time.sleep(1)\n"))
    wait_for(lambda: run.status().get("agent_pid"), message="agent started")
    second = subprocess.run([sys.executable, "-m", "fleetdeck.fleet.supervisor", str(run.root)],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "already runs" in second.stderr


def test_unique_finding_ids_per_episode() -> None:
    from fleetdeck.fleet.triage import finding_id

    assert finding_id("h", "silent", "t", 1.0) == finding_id("h", "silent", "t", 1.0)
    assert finding_id("h", "silent", "t", 1.0) != finding_id("h", "silent", "t", 2.0)
    assert len(finding_id("h", "silent", uuid.uuid4().hex, 0)) == 32


def test_drain_stops_the_agent_between_tasks_and_keeps_it_stopped(supervise: Any, tmp_path: Path) -> None:
    body = """
    import subprocess, sys, time
    while True:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(1.5)"])   # one task
        time.sleep(0.3)
    """
    run = supervise(_agent_script(tmp_path, body))
    pid = wait_for(lambda: run.status().get("agent_pid"), message="agent started")
    wait_for(lambda: psutil.Process(pid).children(), message="a task running")
    run.proc.send_signal(signal.SIGUSR1)
    drained = wait_for(lambda: [r for r in run.restarts() if r["kind"] == "drain"], timeout=20, message="drain")[0]
    assert drained["at_safe_point"] is True and "not restarted" in drained["reason"]
    assert wait_for(lambda: run.status().get("state") == "drained" and run.status())["agent_pid"] is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
