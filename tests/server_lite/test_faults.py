"""Faults against real server processes: kill -9 mid-write, a second server, huge bodies, a full disk."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from fleetdeck.client import Client
from fleetdeck.config import ClientSettings
from fleetdeck.errors import FleetdeckError, ServerError
from fleetdeck.server_lite.process import ServerProcess, free_port
from fleetdeck.server_lite.store.embedded import EmbeddedStore
from tests.server_lite.conftest import fill
from tests.support import wait_for

ROUNDS = 20


def no_retry_client(server: ServerProcess) -> Client:
    """A client that never retries, so 'acknowledged' means exactly one 2xx answer."""
    return Client(settings=ClientSettings(url=server.url, token=server.admin_token, timeout_s=10, retries=0))


class Writer(threading.Thread):
    """Creates tasks and posts event batches in a loop, recording what the server acknowledged."""

    def __init__(self, server: ServerProcess, acked_tasks: list[str], acked_points: dict[str, set[int]],
                 rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.server, self.acked_tasks, self.acked_points, self.rng = server, acked_tasks, acked_points, rng
        self.stop = threading.Event()
        self.acks = 0

    def run(self) -> None:
        with no_retry_client(self.server) as client:
            while not self.stop.is_set():
                try:
                    task = client.create_task(name=f"crash-{len(self.acked_tasks)}", project="faults")
                    self.acked_tasks.append(task["id"])
                    self.acks += 1
                    target = self.rng.choice(self.acked_tasks)
                    start = self.rng.randrange(10**9)
                    its = list(range(start, start + self.rng.randrange(1, 400)))
                    client.post_events(target, {"batch_id": f"b{start:012d}", "scalars": [
                        {"metric": "loss", "variant": "train", "iterations": its, "values": [0.5] * len(its)}],
                        "console": [{"line": f"batch {start}"}]})
                    self.acked_points.setdefault(target, set()).update(its)
                    self.acks += 1
                except FleetdeckError:
                    if self.server.proc is None or self.server.proc.poll() is not None:
                        return  # killed under us: whatever was in flight is unacknowledged


@pytest.mark.slow
def test_kill_9_while_writing_loses_no_acknowledged_write(tmp_path: Path, isolated_home: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"XDG_CONFIG_HOME": str(isolated_home / "config")})
    rng = random.Random(20)
    acked_tasks: list[str] = []
    acked_points: dict[str, set[int]] = {}
    server.start()
    try:
        for _ in range(ROUNDS):
            writer = Writer(server, acked_tasks, acked_points, rng)
            writer.start()
            target = rng.randrange(2, 40)
            wait_for(lambda: writer.acks >= target, timeout=30, message=f"{target} acknowledged writes")
            server.kill()
            writer.stop.set()
            writer.join(30)
            server.start()  # the data dir must open cleanly, torn tails and all
        with Client(url=server.url, token=server.admin_token) as client:
            stored = {t["id"] for t in client.iter_tasks(project="faults", page_size=500)}
            missing = set(acked_tasks) - stored
            assert not missing, f"{len(missing)} acknowledged tasks lost"
            for task_id, points in acked_points.items():
                series = client.get_series(task_id, "loss", "train")
                iterations = series["iterations"]
                assert points <= set(iterations), f"acknowledged points of {task_id} lost"
                assert len(iterations) == len(set(iterations)), "a batch was applied twice or half"
                assert client.get_task(task_id)["metrics"]["loss/train"]["count"] == len(iterations)
    finally:
        server.stop()
    assert len(acked_tasks) >= ROUNDS * 2
    EmbeddedStore(server.data_dir / "docs").close()  # opens cleanly after a clean stop too


def test_second_server_on_the_same_data_dir_exits_2_with_one_line(server: ServerProcess) -> None:
    result = subprocess.run([sys.executable, "-m", "fleetdeck.app", "server", "--data-dir", str(server.data_dir),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "is in use by another fleetdeck server" in result.stderr and f"pid {server.proc.pid}" in result.stderr
    assert httpx.get(f"{server.url}/health").status_code == 200, "the first server is unharmed"


@pytest.fixture
def small_body_server(tmp_path: Path, isolated_home: Path):
    proc = ServerProcess(tmp_path / "data", env={"XDG_CONFIG_HOME": str(isolated_home / "config")},
                         extra_args=["--max-body-mb", "1"])
    proc.start()
    yield proc
    proc.stop()


def test_oversized_bodies_get_413_json_and_the_server_carries_on(small_body_server: ServerProcess) -> None:
    server = small_body_server
    with no_retry_client(server) as client:
        task = client.create_task(name="big", project="p")
        n = 120_000  # about 2 MB of JSON
        batch = {"scalars": [{"metric": "m", "variant": "v", "iterations": list(range(n)), "values": [1.5] * n}]}
        with pytest.raises(FleetdeckError, match=r"413.*over the 1048576 byte limit"):
            client.post_events(task["id"], batch)

        headers = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/json"}

        def chunks():  # no Content-Length: the limit is enforced while streaming
            yield b'{"console": ['
            for _ in range(2000):
                yield b'{"line": "' + b"x" * 1000 + b'"},'
            yield b'{"line": "end"}]}'

        streamed = httpx.post(f"{server.url}/tasks/{task['id']}/events", content=chunks(), headers=headers)
        assert streamed.status_code == 413 and "byte limit" in streamed.json()["detail"]
        assert client.get_console(task["id"])["total"] == 0, "nothing of a refused body is stored"
        assert client.post_events(task["id"], {"console": [{"line": "small"}]})["console"] == 1
    assert server.proc is not None and server.proc.poll() is None


def test_full_disk_is_507_without_acknowledgement_and_reads_still_work(
        small_disk, tmp_path: Path, isolated_home: Path) -> None:
    disk = small_disk("16m")
    server = ServerProcess(disk / "data", env={"XDG_CONFIG_HOME": str(isolated_home / "config")},
                           log_path=tmp_path / "server.log")
    server.start()
    try:
        with no_retry_client(server) as client:
            kept = client.create_task(name="before", project="p")
            client.post_events(kept["id"], {"scalars": [{"metric": "m", "variant": "v", "iterations": [1],
                                                         "values": [1.0]}]})
            filler = fill(disk)
            refused = 0
            acked_during = set()
            for i in range(30):
                try:
                    acked_during.add(client.create_task(name=f"during-{i}", project="p", comment="c" * 3000)["name"])
                except ServerError as exc:
                    assert exc.status_code == 507 and "disk full" in str(exc)
                    refused += 1
            assert refused >= 25, "tasks kept being acknowledged on a full disk"
            with pytest.raises(ServerError, match="507"):
                client.post_events(kept["id"], {"batch_id": "full-0001", "scalars": [
                    {"metric": "m", "variant": "v", "iterations": list(range(2, 5000)), "values": [2.0] * 4998}]})
            with pytest.raises(ServerError, match="507"):
                client.upload_blob(_blob(tmp_path))

            assert client.get_task(kept["id"])["name"] == "before", "reads keep working"
            assert client.get_series(kept["id"], "m", "v")["values"] == [1.0]
            assert {t["name"] for t in client.iter_tasks(project="p")} == {"before"} | acked_during

            os.unlink(filler)
            assert client.create_task(name="after", project="p")["name"] == "after"
        server.stop()
        server.start()
        with Client(url=server.url, token=server.admin_token) as client:
            names = {t["name"] for t in client.iter_tasks(project="p")}
            assert names == {"before", "after"} | acked_during
            assert client.get_series(kept["id"], "m", "v")["values"] == [1.0]
    finally:
        server.stop()
    assert "Traceback" not in server.log_tail(200)


def _blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(2 * 1024 * 1024))
    return path
