"""Queues and leases against a real server process: scoped task tokens, renewal, expiry, restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import AuthError, RequestRejected
from fleetdeck.server_lite.process import ServerProcess
from tests.support import wait_for


def _queued(client: Client, name: str, queue: str = "default", priority: int = 0) -> str:
    task = client.create_task(name=name, project="q")
    client.enqueue(task["id"], queue, priority=priority)
    return str(task["id"])


def _dequeue(client: Client, worker: str, lease_s: float = 30.0, queues: list[str] | None = None) -> dict:
    return client.post("/queues/dequeue", {"queues": queues or ["default"], "worker": worker, "wait_s": 0,
                                           "lease_s": lease_s})


def test_dequeue_grants_lease_and_a_token_scoped_to_the_task(client: Client, server: ServerProcess) -> None:
    mine = _queued(client, "mine")
    other = client.create_task(name="other", project="q")["id"]
    taken = _dequeue(client, "w1")
    assert taken["task"]["id"] == mine and taken["task"]["status"] == "in_progress"
    assert taken["task"]["attempt"] == 1 and taken["lease"]["worker"] == "w1"
    with Client(url=server.url, token=taken["token"]) as job:
        assert job.get_task(mine)["id"] == mine
        job.post_events(mine, {"console": [{"line": "hello from the job"}]})
        for forbidden in (lambda: job.get_task(other), lambda: job.list_tasks(), lambda: job.list_queues(),
                          lambda: _dequeue(job, "sneaky"), lambda: job.heartbeat("sneaky")):
            with pytest.raises(AuthError, match="only reaches its own task"):
                forbidden()
    assert client.get_console(mine)["items"][0]["line"] == "hello from the job"


def test_heartbeat_renews_lease_and_reports_abort(client: Client) -> None:
    task_id = _queued(client, "renewed")
    taken = _dequeue(client, "w1", lease_s=2)
    until = time.monotonic() + 4.5  # more than twice the lease: only renewals keep it
    while time.monotonic() < until:
        reply = client.heartbeat("w1", task_id=task_id, queues=["default"])
        assert reply["task"] == {**reply["task"], "lease": "held", "status": "in_progress"}
        time.sleep(0.3)  # the agent's heartbeat cadence
    assert client.get_task(task_id)["status"] == "in_progress"
    client.set_status(task_id, "aborted", "stop it")
    reply = client.heartbeat("w1", task_id=task_id)
    assert reply["task"]["status"] == "aborted"
    headers = {"X-Fleetdeck-Lease": taken["lease"]["id"]}
    client.request("DELETE", f"/tasks/{task_id}/lease", headers=headers)
    assert client.get_task(task_id)["lease"] is None
    with Client(url=client.url, token=taken["token"]) as job, pytest.raises(AuthError):
        job.get_task(task_id)


def test_expired_lease_requeues_at_the_front_and_refuses_late_writes(client: Client, server: ServerProcess) -> None:
    first = _queued(client, "first")
    second = _queued(client, "second")
    taken = _dequeue(client, "dead-worker", lease_s=1)
    assert taken["task"]["id"] == first
    back = wait_for(lambda: (t := client.get_task(first))["status"] == "queued" and t, timeout=6,
                    message="expired lease to requeue the task")
    assert "dead-worker stopped renewing its lease" in back["status_reason"] and back["lease"] is None
    entries = client.get("/queues/default/entries")["items"]
    assert [e["id"] for e in entries] == [first, second], "a requeued task keeps its place in the queue"
    headers = {"X-Fleetdeck-Lease": taken["lease"]["id"]}
    with pytest.raises(RequestRejected, match="no longer held") as err:
        client.request("POST", f"/tasks/{first}/status", json={"status": "completed"}, headers=headers)
    assert err.value.status_code == 409
    with Client(url=server.url, token=taken["token"]) as job, pytest.raises(AuthError):
        job.post_events(first, {"console": [{"line": "late"}]})  # the dead run's token died with its lease
    again = _dequeue(client, "w2")
    assert again["task"]["id"] == first and again["task"]["attempt"] == 2
    assert client.get_console(first)["total"] == 0


def test_lease_expiry_past_attempt_limit_fails_the_task(tmp_path: Path, isolated_home: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(isolated_home / "config"), "FLEETDECK_MAX_ATTEMPTS": "2"}
    with ServerProcess(tmp_path / "data", env=env) as server, \
            Client(url=server.url, token=server.admin_token) as client:
        task_id = _queued(client, "doomed")
        for attempt in (1, 2):
            assert _dequeue(client, f"w{attempt}", lease_s=1)["task"]["attempt"] == attempt
            wait_for(lambda: client.get_task(task_id)["status"] != "in_progress", timeout=6,
                     message="lease expiry")
        task = client.get_task(task_id)
        assert task["status"] == "failed"
        assert task["status_reason"] == "worker w2 stopped renewing its lease (attempt 2 of 2); not retried"
        assert client.list_queues()[0]["length"] == 0


def test_queue_order_and_leases_survive_a_server_restart(client: Client, server: ServerProcess) -> None:
    ids = [_queued(client, f"t{i}", priority=(5 if i == 3 else 0)) for i in range(5)]
    taken = _dequeue(client, "w1", lease_s=60)
    assert taken["task"]["id"] == ids[3], "higher priority first"
    server.kill()  # no clean shutdown: the journal alone must carry queue entries and leases
    server.start()
    with Client(url=server.url, token=server.admin_token) as after:
        reply = after.heartbeat("w1", task_id=ids[3])
        assert reply["task"]["lease"] == "held"
        order = [_dequeue(after, "w2")["task"]["id"] for _ in range(4)]
        assert order == [ids[0], ids[1], ids[2], ids[4]]
        assert _dequeue(after, "w2")["task"] is None


def test_queues_are_served_in_the_workers_order(client: Client) -> None:
    early_low = _queued(client, "early-low", queue="low")
    late_high = _queued(client, "late-high", queue="high")
    order = [_dequeue(client, "w1", queues=["high", "low"])["task"]["id"] for _ in range(2)]
    assert order == [late_high, early_low]
    with pytest.raises(RequestRejected, match="worker name must not contain"):
        _dequeue(client, "../etc", queues=["high"])


def test_enqueue_of_a_running_task_is_refused(client: Client) -> None:
    task_id = _queued(client, "running")
    _dequeue(client, "w1")
    with pytest.raises(RequestRejected, match="is running; abort it"):
        client.enqueue(task_id, "default")


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_cli_queue_and_task_actions(client: Client, server: ServerProcess) -> None:
    assert _cli(server, "queues", "create", "gpu").returncode == 0
    task_id = client.create_task(name="cli", project="q")["id"]
    assert _cli(server, "tasks", "enqueue", task_id[:8], "--queue", "gpu", "--priority", "5").returncode == 0
    listed = {q["name"]: q for q in map(json.loads, _cli(server, "queues", "list", "--json").stdout.splitlines())}
    assert listed["gpu"]["length"] == 1
    assert _cli(server, "tasks", "abort", task_id).returncode == 0
    assert client.get_task(task_id)["status"] == "aborted" and client.list_queues()[0]["length"] == 0
    assert _cli(server, "tasks", "requeue", task_id).returncode == 0  # back on the queue it last used
    assert client.get_task(task_id)["status"] == "queued"
    assert [e["id"] for e in client.get("/queues/gpu/entries")["items"]] == [task_id]
    assert _cli(server, "tasks", "reset", task_id).returncode == 0
    assert client.get_task(task_id)["status"] == "created" and client.get("/queues/gpu/entries")["items"] == []
    refused = _cli(server, "tasks", "abort", task_id)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: task {task_id[:8]} is created, not running or queued"
    bad = _cli(server, "tasks", "clone", task_id, "--set", "lr")
    assert bad.returncode == 2 and "must be SECTION/NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_workers_list_shows_health(client: Client, server: ServerProcess) -> None:
    client.heartbeat("gpu-host-1", queues=["default"], status="busy", stats={
        "rss": 150 * 1024**2, "cpu_percent": 3.5, "phase": "running", "task_id": None, "last_output_ts": None})
    rows = [json.loads(line) for line in _cli(server, "workers", "list", "--json").stdout.splitlines()]
    assert rows[0]["id"] == "gpu-host-1" and rows[0]["stats"]["phase"] == "running"
    table = _cli(server, "workers", "list").stdout
    assert "gpu-host-1" in table and "150 MiB" in table and "running" in table
