"""Provisioning real sshd hosts on loopback: parallel install from a clean state, idempotent
re-runs, private tokens, atomic venv switch, inventory on the server, hostile host fields."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import ConfigError
from fleetdeck.fleet import inventory, preflight, provision, wheelhouse
from fleetdeck.fleet.ssh import Connection
from tests.fleet.sshd import SSHHost, ssh_hosts, trust  # noqa: F401 - fixture
from tests.support import wait_for

pytestmark = pytest.mark.ssh

HOSTILE_NAME = "gpu;$(touch fd-pwned-name)`touch fd-pwned-name2`"
"""No slash: names may not hold one; a command in it would create the file in the remote home."""
HOSTILE_LABELS = ["a100", "$(touch /tmp/fd-pwned-label)", "x; touch /tmp/fd-pwned-label2"]
IDLE_AGENT = ["{venv}/bin/python", "-c", "import time\nwhile True: time.sleep(1)"]
"""The supervised program for tests that are about installing, not about the agent."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the source tree, so edits made while the tests run cannot change the wheel."""
    snapshot = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(wheelhouse.SOURCE_ROOT / name, snapshot / name)
    for folder in wheelhouse.SOURCE_DIRS:
        shutil.copytree(wheelhouse.SOURCE_ROOT / folder, snapshot / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return snapshot


@pytest.fixture(scope="module")
def bundle(source: Path) -> wheelhouse.Bundle:
    return wheelhouse.build(source)


def _inventory(hosts: list[SSHHost], **extra: object) -> inventory.Inventory:
    entries = [hosts[0].inventory_entry(gpus=2, gpu_model="H200", price_per_hour=7.0, labels=["fast"], **extra),
               hosts[1].inventory_entry(name=HOSTILE_NAME, labels=HOSTILE_LABELS, queues=["q;rm -rf ~"], **extra)]
    return inventory.from_dict({"hosts": entries})


def test_provision_two_hosts_in_parallel_then_nothing_changes(ssh_hosts: list[SSHHost], client: Client,
                                                               bundle: wheelhouse.Bundle, source: Path) -> None:
    for host in ssh_hosts[:2]:
        host.reset()
    trust(ssh_hosts[:2])
    # host0 claims 2 GPUs in the inventory; preflight must notice there is no driver.
    inv = _inventory(ssh_hosts, agent_command=IDLE_AGENT)
    results = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    by_name = {r.host: r for r in results}
    assert by_name["host0"].status == "failed" and "gpu: no NVIDIA driver" in by_name["host0"].error
    assert by_name[HOSTILE_NAME].status == "changed", by_name[HOSTILE_NAME].error

    inv = inventory.from_dict({"hosts": [
        ssh_hosts[0].inventory_entry(price_per_hour=7.0, labels=["fast"], agent_command=IDLE_AGENT),
        {**ssh_hosts[1].inventory_entry(name=HOSTILE_NAME, labels=HOSTILE_LABELS, queues=["q;rm -rf ~"],
                                        agent_command=IDLE_AGENT)}]})
    started = time.monotonic()
    results = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    assert [r.status for r in results] == ["changed", "ok"], [r.error for r in results]
    assert "installed venv" in " ".join(results[0].changes) and "supervisor started" in results[0].changes
    assert time.monotonic() - started < 120

    for host in ssh_hosts[:2]:
        root = host.home / ".fleetdeck"
        token = root / "agent-token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text().startswith("fd")
        assert (root / "current").is_symlink() and (root / "current").readlink().parts[0] == "venvs"
        assert (root / "current" / provision.MARKER).exists()
        pid = wait_for(lambda r=root: (r / "run" / "supervisor.pid").exists() and int((r / "run" / "supervisor.pid").read_text()))
        assert pid > 0

    # Hostile strings reached the host as data, and no command they hold ever ran.
    config = json.loads((ssh_hosts[1].home / ".fleetdeck" / "supervisor.json").read_text())
    assert config["host"] == HOSTILE_NAME and config["queues"] == ["q;rm -rf ~"]
    assert not any(Path(p).exists() for p in ("/tmp/fd-pwned-label", "/tmp/fd-pwned-label2"))
    assert not list(ssh_hosts[1].home.rglob("fd-pwned-name*")) and not list(Path.cwd().glob("fd-pwned*"))

    # The server knows the fleet, with prices for the cost reports.
    hosts = {h["name"]: h for h in client.get("/fleet/hosts")["items"]}
    assert hosts["host0"]["labels"] == ["fast"] and hosts["host0"]["gpus"] == {"count": 0, "model": None}
    assert hosts["host0"]["price_per_hour"] == 7.0 and hosts[HOSTILE_NAME]["labels"] == HOSTILE_LABELS
    wait_for(lambda: client.get("/fleet/hosts/host0")["state"] == "ok", message="supervisor reporting")

    # A second run on unchanged hosts changes nothing and is quick.
    started = time.monotonic()
    again = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    elapsed = time.monotonic() - started
    assert [(r.status, r.changes) for r in again] == [("ok", []), ("ok", [])]
    assert elapsed < 5.0, f"no-change re-run took {elapsed:.1f}s"

    # The command a user runs: the same hosts from the inventory file, ending with the recap.
    from tests.fleet.sshd import write_inventory

    write_inventory([ssh_hosts[0].inventory_entry(price_per_hour=7.0, labels=["fast"], agent_command=IDLE_AGENT),
                     ssh_hosts[1].inventory_entry(name=HOSTILE_NAME, labels=HOSTILE_LABELS, queues=["q;rm -rf ~"],
                                                  agent_command=IDLE_AGENT)])
    cache_home = bundle.fleetdeck_wheel.parents[3]  # the wheelhouse cache the fixture built
    cli = subprocess.run([sys.executable, "-m", "fleetdeck.app", "--server", client.url, "--token",
                          client.settings.token or "", "fleet", "provision", "--all", "--source", str(source)],
                         capture_output=True, text=True,
                         timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(cache_home), "COLUMNS": "200"})
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.count("ok, nothing changed") == 2 and "ok=2 changed=0 failed=0" in cli.stdout


def test_preflight_names_failures_with_hints_and_a_hanging_probe_times_out(ssh_hosts: list[SSHHost]) -> None:
    host = ssh_hosts[2]
    host.reset()
    trust([host])
    inv = inventory.from_dict({"hosts": [host.inventory_entry(python="/nonexistent/python3", gpus=1)]})
    with Connection(inv.hosts[0]) as conn:
        report = preflight.run(conn)
    failed = {c.name: c for c in report.failures()}
    assert not report.ok and "python" in failed and "python = " in failed["python"].hint, report.checks
    assert "gpu" in failed and failed["gpu"].hint == "install the NVIDIA driver", report.checks

    (host.home / ".fake-gpu").touch()  # the host's nvidia-smi now answers with a recorded H200 row
    inv = inventory.from_dict({"hosts": [host.inventory_entry(gpus=1)]})
    with Connection(inv.hosts[0]) as conn:
        report = preflight.run(conn)
    assert report.ok, report.summary()
    assert report.facts["gpus"] == 1 and report.facts["gpu_model"] == "NVIDIA H200"
    assert report.facts["python"].startswith("3.") and report.facts["arch"] == "x86_64"

    (host.home / ".hang-nvidia-smi").touch()  # now it hangs, like a wedged driver
    with Connection(inv.hosts[0]) as conn:
        started = time.monotonic()
        report = preflight.run(conn, timeout=2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 8, f"a hanging nvidia-smi held preflight for {elapsed:.1f}s"
    gpu = next(c for c in report.checks if c.name == "gpu")
    assert not gpu.ok and "hung" in gpu.detail and "reboot" in gpu.hint
    assert next(c for c in report.checks if c.name == "python").ok  # the other probes still answered
    host.reset()


def test_wheelhouse_is_built_once_and_reused(bundle: wheelhouse.Bundle, source: Path) -> None:
    again = wheelhouse.build(source, cache=bundle.fleetdeck_wheel.parents[1])
    assert again == bundle  # same wheels, same content hash: hosts see nothing new
    assert again.python_tag == wheelhouse.python_tag() and any(w.name.startswith("httpx-") for w in again.wheels)
    assert {"click>=8.1", "rich>=13"} <= set(again.requirements) and again.requirements[0].startswith("fleetdeck==")


def test_unknown_host_key_fails_provisioning_with_the_fix(ssh_hosts: list[SSHHost], client: Client,
                                                          bundle: wheelhouse.Bundle) -> None:
    inv = inventory.from_dict({"hosts": [ssh_hosts[3].inventory_entry()]})
    (result,) = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    assert result.status == "failed" and "fleetdeck fleet trust host3" in result.error


def test_hostile_install_dir_is_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="install_dir"):
        inventory.from_dict({"hosts": [{"name": "h", "address": "127.0.0.1", "user": "u",
                                        "install_dir": "fd $(touch /tmp/fd-pwned-dir)"}]})


def test_provisioned_real_agents_register_and_each_runs_a_task(ssh_hosts: list[SSHHost], client: Client,
                                                                bundle: wheelhouse.Bundle) -> None:
    """The real ``fleetdeck agent`` from the uploaded wheel, under the supervisor, on two hosts."""
    hosts = ssh_hosts[2:4]
    for host in hosts:
        host.reset()
    trust(hosts)
    limits = {"silent_window_s": 3.0, "sample_interval_s": 0.5}
    inv = inventory.from_dict({"hosts": [h.inventory_entry(queues=["fleet-test"], limits=limits) for h in hosts]})
    results = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    assert [r.status for r in results] == ["changed", "changed"], [r.error for r in results]
    wait_for(lambda: {w["id"] for w in client.list_workers()} >= {"host2", "host3"}, timeout=60,
             message="both agents heartbeating")

    # An agent runs one task at a time, so while the first task runs the other agent takes the second.
    code = "import os, time\ntime.sleep(4)\nprint('done on', os.environ.get('USER'))\n"
    ids = []
    for i in range(2):
        task = client.create_task(name=f"fleet{i}", project="fleet", script={"entry_point": "t.py", "code": code})
        client.enqueue(task["id"], "fleet-test")
        ids.append(task["id"])

    def finished() -> list[dict[str, object]] | None:
        tasks = [client.get_task(i) for i in ids]
        return tasks if all(t["status"] in ("completed", "failed") for t in tasks) else None

    done = wait_for(finished, timeout=120, message="both tasks finished")
    assert [t["status"] for t in done] == ["completed", "completed"], [t.get("status_reason") for t in done]
    assert {t["runtime"]["worker"] for t in done} == {"host2", "host3"}

    # Kill the real agent on host2: the supervisor restarts it and the server hears why.
    status = json.loads((hosts[0].home / ".fleetdeck" / "run" / "status.json").read_text())
    os.kill(status["agent_pid"], signal.SIGKILL)
    restart = wait_for(lambda: client.get("/fleet/hosts/host2/restarts")["items"], timeout=30, message="restart")[0]
    assert restart["kind"] == "crash" and "killed by signal 9" in restart["reason"]
    wait_for(lambda: json.loads((hosts[0].home / ".fleetdeck" / "run" / "status.json").read_text())["agent_pid"]
             not in (None, status["agent_pid"]), message="agent running again")

    # A task that sleeps silently on a real agent is flagged with evidence, and triage requeues it.
    task = client.create_task(name="silent", project="fleet",
                              script={"entry_point": "s.py", "code": "import time\ntime.sleep(120)\n"})
    client.enqueue(task["id"], "fleet-test")
    found = wait_for(lambda: [f for f in client.get("/fleet/findings")["items"]
                              if f["cause"] == "silent" and f["task_id"] == task["id"]], timeout=60,
                     message="silent finding")[0]
    assert any("s.py" in p["cmdline"] for p in found["evidence"]["process_tree"])
    assert found["evidence"]["log_tail"] and found["suggested_action"] == "abort-requeue"
    cli = subprocess.run([sys.executable, "-m", "fleetdeck.app", "--server", client.url, "--token",
                          client.settings.token or "", "triage", "act", found["id"][:10], "abort-requeue", "--yes"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "aborted and requeued on fleet-test" in cli.stdout
    assert client.get(f"/fleet/findings/{found['id']}")["state"] == "resolved"
    wait_for(lambda: client.get_task(task["id"])["status"] in ("queued", "in_progress"), message="requeued")
    client.set_status(task["id"], "aborted", reason="test over", force=True)

    # The same hosts through the CLI: logs, a manual restart (recorded with its reason), stop, start.
    from tests.fleet.sshd import write_inventory

    write_inventory([h.inventory_entry(queues=["fleet-test"], limits=limits) for h in hosts])

    def fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleetdeck.app", "--server", client.url, "--token",
                               client.settings.token or "", "fleet", *args], capture_output=True, text=True,
                              timeout=90, env={**os.environ, "COLUMNS": "200"})

    # The finding's other one-key actions, through the real command: restart, then drain its host.
    def triage_act(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleetdeck.app", "--server", client.url, "--token",
                               client.settings.token or "", "triage", "act", found["id"][:10], action, "--yes"],
                              capture_output=True, text=True, timeout=90, env={**os.environ, "COLUMNS": "200"})

    host_dir = next(h for h in hosts if h.name == found["host"]).home
    before = {r["id"] for r in client.get(f"/fleet/hosts/{found['host']}/restarts")["items"]}
    acted = triage_act("restart")
    assert acted.returncode == 0 and acted.stdout.startswith("restart:"), acted.stderr
    wait_for(lambda: [r for r in client.get(f"/fleet/hosts/{found['host']}/restarts")["items"]
                      if r["kind"] == "manual" and r["id"] not in before], message="restart by triage recorded")
    drained = triage_act("drain")
    assert drained.returncode == 0 and f"draining {found['host']}" in drained.stdout, drained.stderr
    wait_for(lambda: json.loads((host_dir / ".fleetdeck" / "run" / "status.json").read_text())["state"] == "drained",
             timeout=60, message="host drained between tasks")
    started_again = fleet("restart", found["host"])
    assert started_again.returncode == 0, started_again.stderr
    wait_for(lambda: json.loads((host_dir / ".fleetdeck" / "run" / "status.json").read_text())["agent_pid"],
             timeout=60, message="a drained host back to work after fleet restart")

    logs = fleet("logs", "host3", "-n", "50")
    assert logs.returncode == 0 and "supervisor: starting agent" in logs.stdout
    restarted = fleet("restart", "host3")
    assert restarted.returncode == 0 and "agent restart requested" in restarted.stdout
    manual = wait_for(lambda: [r for r in client.get("/fleet/hosts/host3/restarts")["items"] if r["kind"] == "manual"],
                      message="manual restart recorded")[0]
    assert "restart requested" in manual["reason"]
    stopped = fleet("stop", "host2", "host3")
    assert stopped.returncode == 0 and stopped.stdout.count(": stopped") == 2
    not_running = fleet("drain", "host3")  # draining works through the supervisor (shown above by triage)
    assert not_running.returncode == 1 and "host3: the supervisor on host3 is not running; nothing to drain" in \
        not_running.stderr and "Traceback" not in not_running.stderr
    status = fleet("status")
    assert status.returncode == 0 and status.stdout.count("supervisor down") == 2
    assert {s["state"] for s in client.get("/fleet/supervisors")["items"] if s["host"] in ("host2", "host3")} == {"stopped"}
    started = fleet("start", "host2")
    assert started.returncode == 0 and "started (pid" in started.stdout
    wait_for(lambda: "host2" in {w["id"] for w in client.list_workers()}, timeout=30, message="agent back")

    # logs -f follows the file over SSH: lines written on the host after it started show up.
    import select

    follow = subprocess.Popen([sys.executable, "-m", "fleetdeck.app", "fleet", "logs", "host2", "-f", "-n", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker = f"follow-marker-{time.time()}"
        log_file = hosts[0].home / ".fleetdeck" / "logs" / "agent.log"
        assert follow.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while marker not in seen and time.monotonic() < deadline:
            with log_file.open("a") as fh:  # keep writing: the remote tail may not have started yet
                fh.write(marker + "\n")
            if select.select([follow.stdout], [], [], 0.5)[0]:
                seen += follow.stdout.readline()
        assert marker in seen
    finally:
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=15)
    assert follow.returncode in (0, 130) and "Traceback" not in err


LEAK_HOOK = '''\
# Test-only hook: while a job runs, the real fleetdeck agent leaks FLEETDECK_TEST_LEAK_MB MiB
# every 0.5 s (a leak per task, so the limit is always crossed mid-task).
import os, threading, time
_mb = int(os.environ.pop("FLEETDECK_TEST_LEAK_MB", "0") or 0)  # popped: the agent's jobs do not leak
if _mb:
    def _leak():
        import psutil
        me, hoard = psutil.Process(), []
        while True:
            time.sleep(0.5)
            if not me.children():
                continue
            chunk = bytearray(_mb * 2**20)
            chunk[::4096] = b"x" * len(chunk[::4096])
            hoard.append(chunk)
    threading.Thread(target=_leak, daemon=True).start()
'''


def test_leaking_real_agent_is_restarted_between_tasks(ssh_hosts: list[SSHHost], client: Client,
                                                       bundle: wheelhouse.Bundle) -> None:
    """The real agent, made to leak by a ``sitecustomize`` hook, passes its memory limit while a
    task runs; the supervisor waits for the task to finish, then restarts it and says why."""
    host = ssh_hosts[0]  # not reset: when the first test installed it, only the config changes here
    trust([host])
    hook = host.home / "leak-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(LEAK_HOOK)
    command = ["env", f"PYTHONPATH={hook}", "FLEETDECK_TEST_LEAK_MB=20", "{venv}/bin/python", "-m", "fleetdeck.app",
               "agent", "--name", "host0", "--queue", "leak-q"]
    limits = {"memory_limit_mb": 200, "hard_limit_mb": 4000, "sample_interval_s": 0.5}
    inv = inventory.from_dict({"hosts": [host.inventory_entry(agent_command=command, limits=limits)]})
    (result,) = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
    assert result.status == "changed", result.error
    wait_for(lambda: "host0" in {w["id"] for w in client.list_workers()}, timeout=60, message="agent up")

    task = client.create_task(name="during-leak", project="fleet",
                              script={"entry_point": "t.py", "code": "import time\ntime.sleep(12)\nprint('ok')\n"})
    client.enqueue(task["id"], "leak-q")
    restart = wait_for(lambda: [r for r in client.get("/fleet/hosts/host0/restarts")["items"] if r["kind"] == "leak"],
                       timeout=120, message="leak restart")[0]
    done = wait_for(lambda: (t := client.get_task(task["id"]))["status"] in ("completed", "failed") and t,
                    timeout=60, message="task finished")
    assert done["status"] == "completed", done.get("status_reason")  # never killed by the restart
    assert restart["at_safe_point"] is True and "over the limit 200 MiB" in restart["reason"]
    assert restart["ts"] >= done["runtime"]["agent"]["phases"]["running"]["ended"] - 1.0
    assert max(m for _, m in restart["memory_curve"]) > 200
    wait_for(lambda: "host0" in {w["id"] for w in client.list_workers()}, timeout=60, message="agent back")
