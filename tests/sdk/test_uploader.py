"""The uploader: in order, exactly once even when a record is sent twice, and loud about bad records."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

from fleetdeck._uploader import Retry, Uploader
from fleetdeck.client import Client
from fleetdeck.spool import PROCESS, SpoolWriter, pending


def _events(writer: SpoolWriter, run_key: str, start: int, n: int, metric: str = "loss") -> str:
    name = writer.next_name()
    columns = [array("q", range(start, start + n)), array("d", [0.5] * n), array("d", [1.0e9] * n)]
    return writer.write({"kind": "events", "batch_id": f"{run_key}.{name}",
                         "scalars": [{"metric": metric, "variant": "train", "n": n}],
                         "console": [[f"line {start}", "stdout", 1.0e9]], "events": []}, columns)


def test_records_resent_after_a_crash_are_applied_once(tmp_path: Path, client: Client) -> None:
    folder = tmp_path / "run-1"
    writer = SpoolWriter(folder, PROCESS)
    writer.write({"kind": "create", "attach": None, "fields": {"name": "resend", "project": "p"}, "runtime": {}})
    _events(writer, "run-1", 0, 1000)
    writer.write({"kind": "update", "fields": {"hyperparams": {"Args": {"lr": {"value": 0.1, "type": "float"}}}}})
    (folder / "files" / "a.json").write_text("{}")
    writer.write({"kind": "artifact", "name": "a", "path": "a.json", "delete_after": False, "metadata": {}})
    writer.write({"kind": "close", "status": "completed", "reason": "", "runtime": {"exit_code": 0}, "imported": []})
    saved = {p.name: p.read_bytes() for p in pending(folder)}
    logged: list[str] = []

    uploader = Uploader(folder, client, logged.append)
    assert uploader.upload() == 5 and pending(folder) == []
    # the uploader died after the server's answers but before deleting the files: all come back
    for name, data in saved.items():
        if not name.startswith("p0000000000"):
            (folder / name).write_bytes(data)
    assert Uploader(folder, client, logged.append).upload() == 4
    task_id = uploader.task_id
    assert task_id and len(client.list_tasks()["items"]) == 1
    assert [s["count"] for s in client.list_series(task_id)] == [1000]
    assert client.get_console(task_id)["total"] == 1
    assert client.get_task(task_id)["status"] == "completed"
    assert [a["name"] for a in client.get(f"/tasks/{task_id}/artifacts")["items"]] == ["a"]


def test_a_record_the_server_refuses_is_kept_aside_and_named(tmp_path: Path, client: Client) -> None:
    folder = tmp_path / "run-2"
    writer = SpoolWriter(folder, PROCESS)
    writer.write({"kind": "create", "attach": None, "fields": {"name": "bad", "project": "p"}, "runtime": {}})
    bad = _events(writer, "run-2", 0, 10, metric="")  # an empty metric name is invalid
    _events(writer, "run-2", 10, 10)
    logged: list[str] = []
    uploader = Uploader(folder, client, logged.append)
    assert uploader.upload() == 2
    assert (folder / "rejected" / f"{bad}.rec").exists()
    assert len(logged) == 1 and bad in logged[0] and "rejected" in logged[0]
    assert [s["count"] for s in client.list_series(uploader.task_id)] == [10]


def test_an_unreachable_server_keeps_everything(tmp_path: Path) -> None:
    folder = tmp_path / "run-3"
    writer = SpoolWriter(folder, PROCESS)
    writer.write({"kind": "create", "attach": None, "fields": {"name": "x", "project": "p"}, "runtime": {}})
    with Client(url="http://127.0.0.1:9", token="t") as down, pytest.raises(Retry, match="cannot reach"):
        Uploader(folder, down, print).upload()
    assert len(pending(folder)) == 1
