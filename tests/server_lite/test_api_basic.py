"""The API round-trips tasks, events, blobs and queues through a real server process."""

from __future__ import annotations

import hashlib

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import AuthError, NotFound, RequestRejected


def test_task_lifecycle_and_listing(client: Client) -> None:
    task = client.create_task(name="baseline", project="vision", tags=["a", "b"],
                              hyperparams={"Args": {"lr": {"value": 0.1, "type": "float"}}},
                              script={"repository": "https://example.com/r.git", "diff": "x" * 100_000})
    assert task["status"] == "created" and task["script"]["diff"] == "x" * 100_000
    listed = client.list_tasks(project="vision")["items"]
    assert [t["id"] for t in listed] == [task["id"]]
    assert "diff" not in listed[0].get("script", {}), "listings must not carry heavy fields"
    client.set_status(task["id"], "in_progress")
    done = client.set_status(task["id"], "completed")
    assert done["ended"] >= done["started"]
    with pytest.raises(RequestRejected, match="cannot change status from completed to in_progress"):
        client.set_status(task["id"], "in_progress")


def test_events_downsampled_and_exactly_once(client: Client) -> None:
    task = client.create_task(name="curve", project="p")
    n = 50_000
    batch = {"batch_id": "batch-0001", "scalars": [
        {"metric": "loss", "variant": "train", "iterations": list(range(n)),
         "values": [float(i % 1000) if i != 31337 else 1e9 for i in range(n)]}]}
    assert client.post_events(task["id"], batch)["scalars"] == n
    assert client.post_events(task["id"], batch)["duplicate"] is True
    series = client.get_series(task["id"], "loss", "train", max_points=200)
    assert series["total"] == n and len(series["values"]) <= 200
    assert 1e9 in series["values"], "a spike must survive downsampling"
    assert series["iterations"][-1] == n - 1, "the last point must be kept"
    summary = client.get_task(task["id"])["metrics"]["loss/train"]
    assert summary["max"] == 1e9 and summary["count"] == n


def test_console_paging(client: Client) -> None:
    task = client.create_task(name="log", project="p")
    client.post_events(task["id"], {"console": [{"line": f"line {i}"} for i in range(2500)]})
    page = client.get_console(task["id"], start=-10, limit=10)
    assert page["total"] == 2500
    assert [e["line"] for e in page["items"]] == [f"line {i}" for i in range(2490, 2500)]


def test_blob_upload_resumes_and_verifies(client: Client, tmp_path) -> None:
    data = bytes(range(256)) * 40_000
    sha = hashlib.sha256(data).hexdigest()
    state = client.post("/blobs/uploads", {"sha256": sha, "size": len(data)})
    assert state["offset"] == 0
    client.request("PUT", f"/blobs/uploads/{sha}", params={"offset": 0}, content=data[:1000])
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    assert client.upload_blob(src)["sha256"] == sha  # resumes from byte 1000
    out = client.download_blob(sha, tmp_path / "out.bin")
    assert out.read_bytes() == data


def test_queue_dequeue_is_ordered(client: Client) -> None:
    ids = [client.create_task(name=f"t{i}", project="q")["id"] for i in range(3)]
    client.enqueue(ids[0], "default")
    client.enqueue(ids[1], "default", priority=5)
    client.enqueue(ids[2], "default")
    taken = [client.dequeue(["default"], worker="w1")["id"] for _ in range(3)]
    assert taken == [ids[1], ids[0], ids[2]]
    assert client.dequeue(["default"], worker="w1", wait_s=0.2) is None


def test_bad_token_and_unknown_id(server, client: Client) -> None:
    with Client(url=server.url, token="fd_wrong") as bad, pytest.raises(AuthError):
        bad.list_tasks()
    with pytest.raises(NotFound):
        client.get_task("0" * 32)
