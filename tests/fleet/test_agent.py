"""Agents in venv mode against a real server: real agent processes, real jobs, real venvs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import psutil

from fleetdeck.client import Client
from fleetdeck.fleet.venv_cache import VenvCache
from fleetdeck.server_lite.process import ServerProcess
from tests.fleet.conftest import AgentFactory, agent_log
from tests.support import wait_for

TRAIN = textwrap.dedent("""\
    import argparse
    import iniconfig  # a real third-party import, so the task records it as a requirement
    from fleetdeck import Task

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=2)
    task = Task.init(project_name="agents", task_name="train")
    args = parser.parse_args()
    print(f"training with lr={args.lr} epochs={args.epochs}")
""")


def _cli(server: ServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def _script_task(client: Client, name: str, code: str, queue: str | None = "default", **fields: object) -> str:
    task = client.create_task(name=name, project="agents", script={"entry_point": f"{name}.py", "code": code},
                              **fields)
    if queue:
        client.enqueue(task["id"], queue)
    return str(task["id"])


def _finished(client: Client, task_id: str, timeout: float = 60) -> dict:
    """The task once it ended and its agent let go of it (lease released)."""
    return wait_for(lambda: (t := client.get_task(task_id))["status"] in ("completed", "failed", "aborted")
                    and not t.get("lease") and t, timeout=timeout, message=f"task {task_id} to finish")


def _console(client: Client, task_id: str) -> str:
    return "\n".join(item["line"] for item in client.get_console(task_id, limit=10_000)["items"])


def _site_snapshot(venv_cache_dir: Path, key: str) -> dict[str, float]:
    site = next((venv_cache_dir / key / "lib").glob("python*/site-packages"))
    return {p.name: p.stat().st_mtime for p in site.iterdir()}


def test_cloned_task_runs_with_overrides_and_reuses_the_cached_venv(
        server: ServerProcess, client: Client, start_agent: AgentFactory, venv_cache_dir: Path,
        tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}
    subprocess.run([sys.executable, str(script), "--lr", "0.1"], cwd=tmp_path, env=env, check=True, timeout=120)
    source = wait_for(lambda: [t for t in client.list_tasks(project="agents")["items"] if t["status"] == "completed"],
                      timeout=30, message="the recorded run")[0]
    source = client.get_task(source["id"])
    assert f"iniconfig=={metadata.version('iniconfig')}" in source["script"]["requirements"]

    clone = _cli(server, server.admin_token, "tasks", "clone", source["id"], "--name", "lr-sweep-1",
                 "--set", "Args/lr=0.5", "--queue", "default")
    assert clone.returncode == 0, clone.stderr
    first = clone.stdout.strip()
    start_agent("a1")
    done = _finished(client, first, timeout=180)
    assert done["status"] == "completed", agent_log(tmp_path, "a1")
    console = _console(client, first)
    assert "training with lr=0.5 epochs=2" in console
    assert console.count("training with") == 1, "console lines must arrive once (agent streams, SDK does not)"
    agent_info = done["runtime"]["agent"]
    assert agent_info["venv_cache_hit"] is False
    assert set(agent_info["phases"]) >= {"cloning", "installing", "starting", "running", "uploading"}
    assert all(p["ended"] >= p["started"] for p in agent_info["phases"].values())
    before = _site_snapshot(venv_cache_dir, agent_info["venv"])

    second = _cli(server, server.admin_token, "tasks", "clone", source["id"], "--set", "Args/lr=0.25",
                  "--queue", "default").stdout.strip()
    done2 = _finished(client, second)
    assert done2["status"] == "completed"
    assert "training with lr=0.25 epochs=2" in _console(client, second)
    assert done2["runtime"]["agent"]["venv"] == agent_info["venv"]
    assert done2["runtime"]["agent"]["venv_cache_hit"] is True
    assert _site_snapshot(venv_cache_dir, agent_info["venv"]) == before, "the second run installed something"
    params = client.get_task(second)["hyperparams"]["Args"]
    assert params["lr"]["value"] == 0.25


def test_failure_carries_stderr_tail_and_abort_ends_the_process_group(
        client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    failing = _script_task(client, "boom", "import sys\nprint('about to fail')\n"
                                           "sys.exit('boom: the data is missing')\n")
    pids = tmp_path / "pids"
    stubborn = _script_task(client, "stubborn", textwrap.dedent(f"""\
        import os, signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
        child = subprocess.Popen(["sleep", "600"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        while True:
            print("tick", flush=True)
            time.sleep(0.2)
        """))
    start_agent("a1")
    failed = _finished(client, failing)
    assert failed["status"] == "failed"
    assert failed["status_reason"].startswith("exit code 1: ") and "boom: the data is missing" in failed["status_reason"]
    wait_for(lambda: "tick" in _console(client, stubborn), timeout=60, message="the stubborn job to run")
    job_pids = [int(p) for p in pids.read_text().split()]
    # Stats travel with the heartbeat: wait for one sent after the job's first output.
    worker = wait_for(lambda: [w for w in client.list_workers()
                               if (w.get("stats") or {}).get("task_id") == stubborn
                               and w["stats"]["phase"] == "running" and w["stats"].get("last_output_ts")],
                      message="worker stats after the first output")[0]
    assert worker["stats"]["task_id"] == stubborn and worker["stats"]["job_pid"] == job_pids[0]
    assert worker["stats"]["rss"] > 10_000_000 and worker["stats"]["last_output_ts"] > time.time() - 5
    aborted_at = time.monotonic()
    client.set_status(stubborn, "aborted", "test abort")
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in job_pids), timeout=10, message="the job's process group to end")
    assert time.monotonic() - aborted_at < 10
    wait_for(lambda: client.get_task(stubborn).get("lease") is None, message="the lease to be released")
    assert client.get_task(stubborn)["status"] == "aborted"


def test_killed_agent_task_is_requeued_and_completed_by_another(
        client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job_pid = tmp_path / "job-pid"
    task_id = _script_task(client, "slow", textwrap.dedent(f"""\
        import os, time
        open({str(job_pid)!r}, "w").write(str(os.getpid()))
        print("started", flush=True)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        print("finished", flush=True)
        """))
    first = start_agent("doomed", lease=3)
    wait_for(lambda: "started" in _console(client, task_id), timeout=60, message="the first attempt to start")
    os.kill(first.pid, signal.SIGKILL)
    orphan = int(job_pid.read_text())
    os.kill(orphan, signal.SIGKILL)  # a kill -9 of the agent leaves its job behind; a supervisor would reap it
    killed_at = time.monotonic()
    back = wait_for(lambda: (t := client.get_task(task_id))["status"] == "queued" and t, timeout=30,
                    message="the task back in the queue")
    assert time.monotonic() - killed_at < 30
    assert "doomed stopped renewing its lease" in back["status_reason"]
    start_agent("rescuer")
    wait_for(lambda: client.get_task(task_id)["attempt"] == 2 and client.get_task(task_id)["status"] == "in_progress",
             timeout=60, message="the second attempt")
    release.touch()
    done = _finished(client, task_id)
    assert done["status"] == "completed" and done["runtime"]["worker"] == "rescuer"
    assert _console(client, task_id).count("finished") == 1


def test_ten_agents_racing_run_each_of_100_tasks_exactly_once(
        client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    code = textwrap.dedent(f"""\
        import os
        fd = os.open({str(runs)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (os.environ["FLEETDECK_TASK_ID"] + "\\n").encode())
        """)
    ids = [_script_task(client, f"race{i}", code, queue=None) for i in range(100)]
    for i in range(10):
        start_agent(f"racer{i}")
    wait_for(lambda: len([w for w in client.list_workers() if w["id"].startswith("racer")]) == 10, timeout=60,
             message="10 agents to heartbeat")
    for task_id in ids:
        client.enqueue(task_id, "default")
    wait_for(lambda: client.get("/tasks-summary")["counts"]["completed"] == 100, timeout=240,
             message="100 tasks completed")
    lines = runs.read_text().split()
    assert sorted(lines) == sorted(ids), "every task ran exactly once"
    workers = {client.get_task(t)["runtime"]["worker"] for t in ids}
    assert len(workers) > 1, "the work was shared"
    assert all(client.get_task(t)["attempt"] == 1 for t in ids)


def test_agents_ride_out_a_server_restart_and_keep_queue_order(
        server: ServerProcess, client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = _script_task(client, "held", textwrap.dedent(f"""\
        import os, time
        print("before the outage", flush=True)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        print("after the outage", flush=True)
        """))
    start_agent("steady", lease=20)
    wait_for(lambda: "before the outage" in _console(client, first), timeout=60, message="the first task to run")
    rest = [_script_task(client, f"next{i}", "print('ok')\n") for i in range(4)]
    server.kill()
    server.start()
    with Client(url=server.url, token=server.admin_token) as after:
        wait_for(lambda: [w for w in after.list_workers() if w["id"] == "steady"], timeout=30,
                 message="the agent to reconnect")
        release.touch()
        done = [_finished(after, t, timeout=90) for t in [first, *rest]]
        assert [t["status"] for t in done] == ["completed"] * 5
        assert all(t["attempt"] == 1 for t in done), "the lease carried over the restart: nothing was rerun"
        started = [t["started"] for t in done]
        assert started == sorted(started), "tasks ran in the order they were queued"
        assert "after the outage" in _console(after, first)


def test_agent_refuses_bad_options_in_one_line(server: ServerProcess, client: Client) -> None:
    result = _cli(server, server.admin_token, "agent", "--queue", "default", "--gpus", "0,x")
    assert result.returncode == 2 and "not a comma-separated list of GPU indexes" in result.stderr
    assert "Traceback" not in result.stderr
    result = _cli(server, "fd_wrong", "agent", "--queue", "default")
    assert result.returncode == 2 and "refused the token" in result.stderr


def test_uninstallable_requirement_fails_the_task_in_the_installing_phase(
        client: Client, start_agent: AgentFactory) -> None:
    requirement = "iniconfig==0.0.0.does-not-exist"
    task = client.create_task(name="needs", project="agents",
                              script={"entry_point": "needs.py", "code": "print('never')\n",
                                      "requirements": requirement + "\n"})
    client.enqueue(task["id"], "default")
    start_agent("a1")
    failed = _finished(client, task["id"], timeout=120)
    assert failed["status"] == "failed"
    assert failed["status_reason"].startswith("phase installing failed: pip install failed")
    assert failed["runtime"]["agent"]["phase"] == "uploading"


def test_running_phase_timeout_fails_the_task_and_names_the_phase(
        client: Client, start_agent: AgentFactory) -> None:
    task_id = _script_task(client, "sleepy", "import time\nprint('zzz', flush=True)\ntime.sleep(600)\n")
    start_agent("a1", "--phase-timeout", "running=2")
    failed = _finished(client, task_id)
    assert failed["status"] == "failed"
    assert failed["status_reason"] == "phase running timed out after 2s"
    running = failed["runtime"]["agent"]["phases"]["running"]
    assert 2 <= running["ended"] - running["started"] < 10


def test_one_task_at_a_time_per_gpu_set(client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    """No GPU here: the slots' CUDA_VISIBLE_DEVICES is what a real GPU job would be confined by."""
    gate = tmp_path / "gate"
    code = textwrap.dedent(f"""\
        import os, time
        print("gpus=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        """)
    ids = [_script_task(client, f"gpu{i}", code) for i in range(3)]
    start_agent("multi", "--gpus", "0,1", "--gpus", "2")
    wait_for(lambda: sum(client.get_task(t)["status"] == "in_progress" for t in ids) == 2, timeout=60,
             message="two tasks running, one per GPU set")
    running = [t for t in ids if client.get_task(t)["status"] == "in_progress"]
    seen = sorted(_console(client, t) for t in running)
    wait_for(lambda: sorted(_console(client, t) for t in running) == ["gpus=0,1", "gpus=2"], timeout=90,
             message=f"each job confined to its set (saw {seen})")
    assert {w["id"] for w in client.list_workers()} == {"multi:gpu0+1", "multi:gpu2"}
    gate.touch()
    assert [_finished(client, t)["status"] for t in ids] == ["completed"] * 3


def test_execute_remotely_hands_the_run_to_an_agent(
        server: ServerProcess, client: Client, start_agent: AgentFactory, tmp_path: Path) -> None:
    script = tmp_path / "remote.py"
    script.write_text(textwrap.dedent("""\
        import argparse, os
        import iniconfig  # the same imports as TRAIN, so the same cached venv serves both
        from fleetdeck import Task

        parser = argparse.ArgumentParser()
        parser.add_argument("--batch", type=int, default=32)
        task = Task.init(project_name="agents", task_name="remote")
        args = parser.parse_args()
        task.execute_remotely(queue_name="default")
        print(f"running remotely: batch={args.batch} on agent={'FLEETDECK_TASK_ID' in os.environ}")
        """))
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}
    local = subprocess.run([sys.executable, str(script), "--batch", "64"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert local.returncode == 0 and "running remotely" not in local.stdout, local.stderr
    queued = wait_for(lambda: [t for t in client.list_tasks(project="agents")["items"] if t["status"] == "queued"],
                      timeout=30, message="the task on the queue")[0]
    start_agent("remote-agent")
    done = _finished(client, queued["id"], timeout=180)
    assert done["status"] == "completed"
    assert "running remotely: batch=64 on agent=True" in _console(client, queued["id"])


def test_abort_during_install_kills_the_install(client: Client, start_agent: AgentFactory, tmp_path: Path,
                                                venv_cache_dir: Path) -> None:
    slow = tmp_path / "slowpkg"
    slow.mkdir()
    marker = tmp_path / "building.pid"
    (slow / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = []
        build-backend = "slow_backend"
        backend-path = ["."]
        [project]
        name = "slowpkg"
        version = "1.0"
        """))
    (slow / "slow_backend.py").write_text(textwrap.dedent(f"""\
        import os, time
        def get_requires_for_build_wheel(config_settings=None):
            open({str(marker)!r}, "w").write(str(os.getpid()))
            time.sleep(600)
            return []
        """))
    task = client.create_task(name="slow-install", project="agents",
                              script={"entry_point": "x.py", "code": "print('never')\n",
                                      "requirements": f"{slow}\n"})
    client.enqueue(task["id"], "default")
    start_agent("installer")
    wait_for(marker.exists, timeout=120, message="the slow build to start")
    builder = int(marker.read_text())
    aborted = time.monotonic()
    client.set_status(task["id"], "aborted", "test")
    wait_for(lambda: not psutil.pid_exists(builder) or psutil.Process(builder).status() == psutil.STATUS_ZOMBIE,
             timeout=10, message="the install to be killed")
    assert time.monotonic() - aborted < 10
    done = _finished(client, task["id"])
    assert done["status"] == "aborted" and done["runtime"]["agent"]["phases"]["installing"]["ended"]
    half_built = venv_cache_dir / VenvCache(venv_cache_dir).key([str(slow)])
    assert half_built.exists() and not (half_built / ".complete").exists(), "a cancelled build is never usable"
