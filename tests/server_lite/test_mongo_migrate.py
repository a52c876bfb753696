"""``fleetdeck server migrate``: an embedded store, filled through a real server, copied into MongoDB.

The target is mongomock (an in-process imitation of MongoDB: no MongoDB server can be installed
here), so the migration function is called in-process and the copy is then served by the real API
app in a thread of this process. The command line's argument handling and errors are tested
separately, through the real ``fleetdeck`` program.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite import migrate as migrate_module
from fleetdeck.server_lite.migrate import MigrationError, migrate
from fleetdeck.server_lite.process import ServerProcess
from fleetdeck.server_lite.runner import shared_state
from fleetdeck.server_lite.store.mongo import MongoStore
from tests.server_lite.mongomock_support import atomic_mongomock_client, serve_in_thread


def populate(client: Client, tmp_path: Path) -> None:
    """Projects, tasks with heavy fields, metrics, console, plots, an artifact blob, queued work."""
    blob = tmp_path / "model.bin"
    blob.write_bytes(hashlib.sha256(b"weights").digest() * 4096)
    uploaded = client.upload_blob(blob)
    for i in range(6):
        task = client.create_task(name=f"run-{i}", project="vision" if i % 2 else "nlp", tags=[f"t{i % 3}"],
                                  hyperparams={"Args": {"lr": {"value": 0.1 * (i + 1), "type": "float"}}},
                                  script={"repository": "https://example.com/r.git", "diff": f"+line {i}\n" * 500})
        n = 2500 if i == 0 else 300  # task 0's series spans three migration batches (POINT_BATCH below)
        client.post_events(task["id"], {"batch_id": f"fill-{i}-scalars", "scalars": [
            {"metric": "loss", "variant": "train", "iterations": list(range(n)),
             "values": [None if j == 5 else 1.0 / (j + 1) for j in range(n)],
             "timestamps": [1e9 + j for j in range(n)]},
            {"metric": "acc", "variant": "val", "iterations": [n], "values": [0.5 + i / 100]}]})
        client.post_events(task["id"], {"console": [{"line": f"task {i} line {j}", "stream": "stderr" if j % 7 else "stdout"}
                                                    for j in range(1200 if i == 1 else 50)],
                                        "events": [{"kind": "plot", "metric": "cm", "data": {"z": [[i, 1], [0, 1]]}},
                                                   {"kind": "image", "metric": "sample", "iteration": i,
                                                    "sha256": uploaded["sha256"]}]})
        if i == 2:
            client.add_artifact(task["id"], name="model", kind="model", sha256=uploaded["sha256"], size=uploaded["size"])
        if i >= 4:
            client.enqueue(task["id"], "gpu", priority=i)
        elif i == 3:
            client.set_status(task["id"], "in_progress")
    client.create_token("ci-bot", "user")


def snapshot(client: Client) -> dict[str, Any]:
    """Everything a user reads back through the API (what the migrated server must answer alike)."""
    tasks = sorted(client.iter_tasks(), key=lambda t: t["id"])
    out: dict[str, Any] = {"tasks": tasks, "vision": client.list_tasks(project="vision", order_by="-created"),
                           "queues": client.list_queues(), "tokens": client.list_tokens(),
                           "projects": client.list_projects()}
    for task in tasks:
        tid = task["id"]
        out[tid] = {
            "task": client.get_task(tid), "series": client.list_series(tid),
            "loss": client.get_series(tid, "loss", "train"),
            "loss_small": client.get_series(tid, "loss", "train", max_points=100),
            "console": [client.get_console(tid, start=s, limit=500) for s in (0, 500, -20)],
            "events": client.get_events(tid), "artifacts": client.get(f"/tasks/{tid}/artifacts"),
        }
    return out


@pytest.fixture(scope="module")
def embedded_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    """A stopped embedded server's data dir, its admin token and what its API answered (built once)."""
    root = tmp_path_factory.mktemp("embedded")
    proc = ServerProcess(root / "data", env={"XDG_CONFIG_HOME": str(root / "config")})
    proc.start()
    try:
        with Client(url=proc.url, token=proc.admin_token) as client:
            populate(client, root)
            before = snapshot(client)
        token = proc.admin_token
    finally:
        proc.stop()
    return proc.data_dir, token, before


@pytest.fixture
def filled(embedded_data: tuple[Path, str, dict[str, Any]], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, dict[str, Any]]:
    """A private copy of the populated data dir; migration batches small enough to need several."""
    data_dir, token, before = embedded_data
    copy = tmp_path / "embedded"
    shutil.copytree(data_dir, copy)
    monkeypatch.setattr(migrate_module, "POINT_BATCH", 1000)
    monkeypatch.setattr(migrate_module, "CONSOLE_BATCH", 500)
    return copy, token, before


def test_migration_round_trips_a_populated_embedded_store(filled: tuple[Path, str, dict[str, Any]],
                                                         tmp_path: Path) -> None:
    data_dir, token, before = filled
    target = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
    phases: dict[str, tuple[int, int]] = {}
    report = migrate(data_dir, target, progress=lambda phase, done, total: phases.__setitem__(phase, (done, total)))
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.documents["tasks"] == 6 and report.event_tasks == 6
    assert {c.what: c.source_count for c in report.checks}["events: points"] == 2501 + 5 * 301
    assert phases["documents"][0] == phases["documents"][1] > 0, "progress reaches its total"
    assert report.missing_blobs == []

    # The same API on top of the copy answers exactly what the embedded server answered.
    state = shared_state(target, data_dir)
    with serve_in_thread(state) as url, Client(url=url, token=token) as client:
        after = snapshot(client)
        assert after == before
        artifact = after[next(t["id"] for t in after["tasks"] if t["name"] == "run-2")]["artifacts"]["items"][0]
        client.download_blob(artifact["sha256"], tmp_path / "model.out")
        assert hashlib.sha256((tmp_path / "model.out").read_bytes()).hexdigest() == artifact["sha256"]
        queued = client.dequeue(["gpu"], worker="w1")
        assert queued is not None and queued["name"] == "run-5", "queue order survives the migration"
    target.close()


def test_an_interrupted_migration_resumes(filled: tuple[Path, str, dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, _token, _before = filled
    client = atomic_mongomock_client()
    target = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=client)
    monkeypatch.setattr(migrate_module, "DOC_BATCH", 3)

    class Interrupted(Exception):
        pass

    def stop_midway(phase: str, done: int, total: int) -> None:
        if phase == "events" and done == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate(data_dir, target, progress=stop_midway)
    report = migrate(data_dir, target)
    assert report.ok
    assert report.resumed_tasks == 3 and report.event_tasks == 3, "tasks copied before the stop are skipped"
    assert sum(report.documents.values()) == 0, "documents copied before the stop are not copied again"

    # Tampering with the copy is caught by the verification pass.
    target.db["tasks"].update_one({}, {"$set": {"name": "tampered"}})
    again = migrate(data_dir, target)
    failed = [c.what for c in again.checks if not c.ok]
    assert failed == ["documents: tasks"]
    target.close()


def test_blobs_copied_to_a_shared_folder_are_verified(filled: tuple[Path, str, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    data_dir, _token, _before = filled
    target = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
    shared = tmp_path / "shared-blobs"
    report = migrate(data_dir, target, blobs_to=shared)
    assert report.ok and report.blobs_copied == 1
    assert migrate(data_dir, target, blobs_to=shared).blobs_copied == 0, "a rerun copies nothing twice"
    blob = next(p for p in (data_dir / "blobs").glob("??/*") if len(p.name) == 64)
    blob.write_bytes(b"rotten")  # the source blob no longer matches its name
    (shared / blob.parent.name / blob.name).unlink()
    with pytest.raises(MigrationError, match="does not hash to its name"):
        migrate(data_dir, target, blobs_to=shared)
    target.close()


def test_migration_refuses_a_running_server_and_a_non_data_dir(tmp_path: Path, isolated_home: Path) -> None:
    target = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
    with pytest.raises(MigrationError, match="not a fleetdeck data directory"):
        migrate(tmp_path, target)
    with ServerProcess(tmp_path / "live", env={"XDG_CONFIG_HOME": str(isolated_home / "config")}) as proc:
        with pytest.raises(MigrationError, match="stop that server"):
            migrate(proc.data_dir, target)
    target.close()


def fleetdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "{tmp}", "--to", "http://db:27017"], "must be a mongodb:// or mongodb+srv:// URI"),
    (["--from", "{tmp}/nope", "--to", "mongodb://127.0.0.1:1/"], "is not a directory"),
    (["--to", "mongodb://127.0.0.1:1/"], "Missing option '--from'"),
    (["--from", "{tmp}", "--to", "mongodb://u:s3cret@127.0.0.1:1/db?serverSelectionTimeoutMS=300"],
     "MongoDB at mongodb://u:***@127.0.0.1:1/db"),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = fleetdeck("server", "migrate", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_server_with_unreachable_mongodb_fails_with_one_line(tmp_path: Path) -> None:
    result = fleetdeck("server", "--data-dir", str(tmp_path / "d"), "--port", "1",
                       "--store", "mongodb://127.0.0.1:1/fleetdeck?serverSelectionTimeoutMS=300")
    assert result.returncode == 2
    assert "MongoDB at mongodb://127.0.0.1:1/fleetdeck" in result.stderr and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_migrates_with_progress_and_reports_the_verification(
        filled: tuple[Path, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The command's success path, in-process: its MongoStore is pointed at one mongomock database."""
    from fleetdeck.app.cli import main
    from fleetdeck.server_lite.store import mongo

    data_dir, _token, _before = filled
    database = atomic_mongomock_client()
    real_store = mongo.MongoStore
    monkeypatch.setattr(mongo, "MongoStore", lambda uri: real_store(uri, client=database))
    main(["server", "migrate", "--from", str(data_dir), "--to", "mongodb://u:pw@db.invalid/fleetdeck"])
    out = capsys.readouterr().out
    assert "copied" in out and "events of 6 tasks" in out and "mongodb://u:***@db.invalid/fleetdeck" in out
    assert "ok       documents: tasks: 6 in the source, 6 in MongoDB" in out
    assert "verified: counts and checksums match" in out and "pw@" not in out
    assert "documents" in out and "events" in out, "a progress bar per phase"

    database["fleetdeck"]["tasks"].delete_one({})
    database["fleetdeck"]["_migration"].delete_many({})  # a fresh start would re-copy; keep the loss
    database["fleetdeck"]["_migration"].insert_one({"_id": "docs/tasks", "done": 6, "source_count": 6})
    with pytest.raises(SystemExit) as exited:
        main(["server", "migrate", "--from", str(data_dir), "--to", "mongodb://db.invalid/fleetdeck"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "MISMATCH documents: tasks: 6 in the source, 5 in MongoDB" in captured.out
    assert captured.err.strip().splitlines() == ["error: verification failed: the copy differs from the source (see above)"]
