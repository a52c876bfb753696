"""The helper process under faults: a server that comes and goes, a server killed mid-upload, offline runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess, free_port
from tests.sdk.conftest import write_script
from tests.support import wait_for

PHASED_SCRIPT = """
import os, sys, time
from pathlib import Path
from fleetdeck import Task

signals = Path(sys.argv[1])
task = Task.init(project_name="faults", task_name="down-up-down")
logger = task.get_logger()

def phase(n):
    for i in range(100 * n, 100 * (n + 1)):
        logger.report_scalar("loss", "train", 1.0 / (i + 1), i)
        print(f"line {i}")
    logger.flush()
    (signals / f"phase{n}").touch()
    while n < 2 and not (signals / f"go{n + 1}").exists():
        time.sleep(0.02)

for n in range(3):
    phase(n)
"""


def sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", "sync", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _count(client: Client, task_id: str) -> int:
    series = [s for s in client.list_series(task_id) if s["metric"] == "loss"]
    return series[0]["count"] if series else 0


def _only_task(client: Client) -> str | None:
    items = client.list_tasks(project=["faults"])["items"]
    return items[0]["id"] if items else None


def test_server_down_up_down_then_sync_uploads_everything_once(tmp_path: Path, sdk_env: dict[str, str],
                                                               isolated_home: Path, spool_dir: Path,
                                                               request: pytest.FixtureRequest) -> None:
    server = ServerProcess(tmp_path / "server-data", port=free_port(),
                           env={"XDG_CONFIG_HOME": str(isolated_home / "config")})
    request.addfinalizer(server.stop)  # whichever phase fails, no server outlives the test
    server.start()  # once, to create its data dir and admin token
    server.stop()
    signals = tmp_path / "signals"
    signals.mkdir()
    script = write_script(tmp_path / "job", PHASED_SCRIPT)
    deadline_s = 2.0
    env = {**sdk_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
           "FLEETDECK_FLUSH_DEADLINE_S": str(deadline_s)}
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(script), str(signals)], env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        try:
            wait_for(lambda: (signals / "phase0").exists(), timeout=30, message="phase 0 while the server is down")
            server.start()  # up in the middle
            with Client(url=server.url, token=server.admin_token) as client:
                task_id = wait_for(lambda: _only_task(client), timeout=30, message="task created after server start")
                (signals / "go1").touch()
                wait_for(lambda: _count(client, task_id) >= 200, timeout=30, message="phase 0 and 1 uploaded")
            server.stop()  # down again before exit
            started = time.monotonic()
            (signals / "go2").touch()
            assert proc.wait(timeout=30) == 0
            exit_after = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
    assert exit_after < deadline_s, f"the script's exit waited {exit_after:.2f}s for the network"
    folder = wait_for(lambda: next(iter(spool_dir.iterdir()), None), message="run folder")
    wait_for(lambda: "fleetdeck sync" in stderr_path.read_text(), timeout=deadline_s + 10, message="sync hint")
    hints = [line for line in stderr_path.read_text().splitlines() if "fleetdeck sync" in line]
    assert len(hints) == 1 and str(folder) in hints[0]

    server.start()
    try:
        client = Client(url=server.url, token=server.admin_token)
        assert client.get_task(task_id)["status"] == "in_progress"
        sync_env = env
        result = sync(sync_env)
        assert result.returncode == 0, result.stderr
        assert "uploaded to task" in result.stdout
        series = client.get_series(task_id, "loss", "train")
        points = series.get("points", series)
        assert sorted(points["iterations"]) == list(range(300))
        lines = [c["line"] for c in client.get_console(task_id, limit=10_000)["items"]]
        assert sorted(lines) == sorted(f"line {i}" for i in range(300))
        assert client.get_task(task_id)["status"] == "completed"
        assert not folder.exists()  # a fully uploaded run leaves nothing behind
        again = sync(sync_env)  # a second sync finds nothing and changes nothing
        assert again.returncode == 0 and "nothing to sync" in again.stdout
        assert _count(client, task_id) == 300
        client.close()
    finally:
        server.stop()


def test_server_killed_during_large_artifact_upload_resumes(tmp_path: Path, sdk_env: dict[str, str],
                                                            isolated_home: Path, spool_dir: Path) -> None:
    server = ServerProcess(tmp_path / "server-data", port=free_port(),
                           env={"XDG_CONFIG_HOME": str(isolated_home / "config")}).start()
    big = tmp_path / "job" / "weights.bin"
    big.parent.mkdir()
    with open(big, "wb") as fh:
        for _ in range(12):
            fh.write(os.urandom(8 * 1024 * 1024))  # 96 MiB
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    script = write_script(tmp_path / "job", """
        from fleetdeck import Task
        task = Task.init(project_name="faults", task_name="big artifact")
        task.upload_artifact("weights", "weights.bin")
    """)
    env = {**sdk_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
           "FLEETDECK_FLUSH_DEADLINE_S": "60", "FLEETDECK_KEEP_SPOOL": "1"}
    part = server.data_dir / "blobs" / "uploads" / f"{expected}.part"
    proc = subprocess.Popen([sys.executable, str(script)], cwd=big.parent, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: part.exists() and part.stat().st_size > 0, timeout=60, interval=0.002,
                 message="upload under way")
        server.kill()  # SIGKILL in the middle of the upload
        killed_at = part.stat().st_size
        assert 0 < killed_at < big.stat().st_size
        server.start()
        client = Client(url=server.url, token=server.admin_token)
        task_id = _only_task(client)
        assert task_id
        artifact = wait_for(lambda: next((a for a in client.get(f"/tasks/{task_id}/artifacts")["items"]
                                          if a["name"] == "weights"), None), timeout=60, message="artifact registered")
        assert artifact["sha256"] == expected and artifact["size"] == big.stat().st_size
        downloaded = client.download_blob(expected, tmp_path / "back.bin")
        assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == expected
        log = (next(spool_dir.iterdir()) / "helper.log").read_text()
        assert "resuming upload of 'weights' at byte" in log
        resumed_at = int(log.split("resuming upload of 'weights' at byte ")[1].split()[0])
        assert resumed_at > 0  # continued where the server stopped, not from zero
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def test_offline_run_is_uploaded_by_sync(tmp_path: Path, sdk_env: dict[str, str], server: ServerProcess,
                                         client: Client, spool_dir: Path) -> None:
    script = write_script(tmp_path / "offline", """
        from fleetdeck import Task
        Task.set_offline(True)
        task = Task.init(project_name="offline", task_name="plane")
        task.connect({"lr": 0.1})
        for i in range(50):
            task.get_logger().report_scalar("loss", "train", float(i), i)
        print("trained offline")
        task.upload_artifact("result", {"ok": True})
    """)
    env = {**sdk_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fleetdeck sync" in result.stderr
    assert client.list_tasks()["items"] == []  # nothing was sent
    folder = next(spool_dir.iterdir())
    synced = sync(env, str(folder))
    assert synced.returncode == 0, synced.stderr
    task = client.list_tasks(project=["offline"])["items"][0]
    stored = client.get_task(task["id"])
    assert stored["status"] == "completed" and stored["hyperparams"]["General"]["lr"]["value"] == 0.1
    assert [s["count"] for s in client.list_series(task["id"]) if s["metric"] == "loss"] == [50]
    assert "trained offline" in [c["line"] for c in client.get_console(task["id"])["items"]]
    assert [a["name"] for a in client.get(f"/tasks/{task['id']}/artifacts")["items"]] == ["result"]


def test_sync_with_a_wrong_folder_is_one_line(tmp_path: Path, sdk_env: dict[str, str], server: ServerProcess) -> None:
    env = {**sdk_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}
    (tmp_path / "not-a-run").mkdir()
    result = sync(env, str(tmp_path / "not-a-run"))
    assert result.returncode == 2
    assert "not a fleetdeck run folder" in result.stderr and "Traceback" not in result.stderr
