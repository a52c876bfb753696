"""Two API servers on one database: nothing a client relies on lives in one server's memory.

What this proves, and what it cannot: mongomock (an in-process imitation of MongoDB; no MongoDB
server can be installed here) cannot be shared between processes, so the two servers are two
independent app instances - each with its own ServerState, token cache, queue notifier, clock and
MongoStore - running in threads of the test process and reached over real HTTP on loopback. That
shows no request depends on state that only the server that wrote it holds. It cannot show
behaviour across real processes and hosts talking to a real replica set (network partitions,
elections, replication lag); docs/deploy-mongodb.md says how to check that on a real cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import AuthError
from fleetdeck.server_lite.runner import PEER_RECHECK_S, shared_state
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.mongo import MongoStore
from tests.server_lite.mongomock_support import atomic_mongomock_client, serve_in_thread
from tests.support import wait_for


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Client, Client, ServerState]]:
    """Admin clients of servers A and B over one database and one shared blob folder, and B's state."""
    database = atomic_mongomock_client()
    shared_dir = tmp_path / "shared"  # stands for the shared filesystem both servers mount
    state_a = shared_state(MongoStore("mongodb://db/fleetdeck", client=database), shared_dir)
    state_b = shared_state(MongoStore("mongodb://db/fleetdeck", client=database), shared_dir)
    _doc, admin = state_a.tokens.create("admin", "admin")
    with serve_in_thread(state_a) as url_a, serve_in_thread(state_b) as url_b, \
            Client(url=url_a, token=admin) as a, Client(url=url_b, token=admin) as b:
        yield a, b, state_b


def test_tokens_created_and_revoked_on_one_server_act_on_the_other(
        two_servers: tuple[Client, Client, ServerState]) -> None:
    a, b, _ = two_servers
    created = a.create_token("ci-bot", "user")
    with Client(url=b.url, token=created["token"]) as bot:
        assert bot.list_tasks()["items"] == [], "a token minted by A works on B at once"
        a.revoke_token(created["id"])

        def refused() -> bool:
            try:
                bot.list_tasks()
            except AuthError:
                return True
            return False

        started = time.monotonic()
        wait_for(refused, timeout=PEER_RECHECK_S + 5, message="B to refuse the token A revoked")
        assert time.monotonic() - started <= PEER_RECHECK_S + 1


def test_documents_events_blobs_and_heartbeats_are_shared(two_servers: tuple[Client, Client, ServerState],
                                                          tmp_path: Path) -> None:
    a, b, _ = two_servers
    task = a.create_task(name="shared", project="p", script={"diff": "+x\n" * 100})
    a.post_events(task["id"], {"batch_id": "shared-0001", "scalars": [
        {"metric": "loss", "variant": "train", "iterations": [0, 1, 2], "values": [3.0, 2.0, 1.0]}],
        "console": [{"line": f"line {i}"} for i in range(5)]})
    assert b.post_events(task["id"], {"batch_id": "shared-0001", "console": [{"line": "again"}]})["duplicate"], \
        "a batch A applied is a duplicate on B: exactly once across servers"
    assert b.get_task(task["id"])["script"]["diff"] == "+x\n" * 100
    assert b.get_task(task["id"])["metrics"]["loss/train"]["last"] == 1.0
    assert b.get_series(task["id"], "loss", "train")["values"] == [3.0, 2.0, 1.0]
    assert [e["line"] for e in b.get_console(task["id"])["items"]] == [f"line {i}" for i in range(5)]
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"w" * 100_000)
    sha = a.upload_blob(blob)["sha256"]
    assert b.download_blob(sha, tmp_path / "back.bin").read_bytes() == blob.read_bytes()
    a.heartbeat("gpu-box-1", queues=["gpu"], ttl_s=30)
    assert [w["id"] for w in b.list_workers()] == ["gpu-box-1"]


def test_a_waiting_dequeue_on_one_server_gets_work_enqueued_on_the_other(
        two_servers: tuple[Client, Client, ServerState]) -> None:
    a, b, state_b = two_servers
    task = a.create_task(name="queued", project="p")
    taken: dict[str, Any] = {}

    def wait_on_b() -> None:
        started = time.monotonic()
        taken["raw"] = b.post("/queues/dequeue", {"queues": ["gpu"], "worker": "w1", "wait_s": 20},
                              timeout=30)
        taken["after_s"] = time.monotonic() - started

    waiter = threading.Thread(target=wait_on_b)
    waiter.start()
    wait_for(lambda: state_b.notifier._waiters, message="B's dequeue to find the queue empty and wait")
    enqueued_at = time.monotonic()
    a.enqueue(task["id"], "gpu")
    waiter.join(30)
    assert taken["raw"]["task"]["id"] == task["id"]
    assert time.monotonic() - enqueued_at <= PEER_RECHECK_S + 1.5, "B re-polls; it does not wait out wait_s"
    # The task token B minted with the lease is honoured by A.
    with Client(url=a.url, token=taken["raw"]["token"]) as job:
        job.post_events(task["id"], {"console": [{"line": "hello from the job"}]})
    assert a.get_console(task["id"])["items"][-1]["line"] == "hello from the job"
