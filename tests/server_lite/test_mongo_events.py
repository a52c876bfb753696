"""MongoEventStore checked against the embedded FileEventStore (mongomock; real MongoDB when set).

mongomock is an in-process imitation of MongoDB (no MongoDB server can be installed here); these
tests prove the store's logic (bucketing, ordering, exactly-once bookkeeping, paging), not
MongoDB's indexes, write concern or query plans.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.server_lite.events import EventStore, FileEventStore
from fleetdeck.server_lite.store import mongo_events
from fleetdeck.server_lite.store.mongo import MongoStore
from fleetdeck.server_lite.store.mongo_events import MongoEventStore
from tests.server_lite.mongomock_support import atomic_mongomock_client
from tests.server_lite.store_backends import BACKENDS

TASK = "a" * 32


@pytest.fixture(params=["mongomock", "mongodb"])
def mongo_events_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MongoEventStore]:
    """On mongomock always; on a real MongoDB too when ``FLEETDECK_TEST_MONGO_URI`` is set."""
    if request.param == "mongomock":
        store = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
        yield MongoEventStore(store)
        store.close()
        return
    with BACKENDS["mongodb"](tmp_path) as real:
        assert isinstance(real, MongoStore)
        yield MongoEventStore(real)


@pytest.fixture
def file_events(tmp_path: Path) -> Iterator[FileEventStore]:
    events = FileEventStore(tmp_path / "events")
    yield events
    events.close()


def batches() -> list[dict[str, Any]]:
    """A task's life: two series growing over batches, a NaN, console lines and a plot."""
    out = []
    for b in range(6):
        its = list(range(b * 500, (b + 1) * 500))
        loss = [1.0 / (i + 1) for i in its]
        if b == 2:
            loss[7] = None  # a NaN loss
        out.append({
            "batch_id": f"batch-{b:04d}",
            "scalars": [
                {"metric": "loss", "variant": "train", "iterations": its, "values": loss,
                 "timestamps": [1000.0 + i for i in its]},
                {"metric": "acc", "variant": "val", "iterations": its[-1:], "values": [b / 10],
                 "timestamps": [1000.0 + its[-1]]},
            ],
            "console": [{"ts": 2000.0 + b * 10 + i, "stream": "stderr" if i % 3 == 0 else "stdout",
                         "line": f"epoch {b} line {i}"} for i in range(7)],
            "events": [{"kind": "plot", "title": f"conf {b}", "data": {"x.y": [1, 2], "$weird": b}}]
                      if b % 2 else [{"kind": "text", "text": "hello"}],
        })
    return out


def fill(events: EventStore) -> None:
    for batch in batches():
        result = events.append(TASK, batch)
        assert not result.duplicate


@pytest.mark.parametrize("bucket_lines", [2000, 3])
def test_same_answers_as_the_embedded_store(mongo_events_store: MongoEventStore, file_events: FileEventStore,
                                            monkeypatch: pytest.MonkeyPatch, bucket_lines: int) -> None:
    monkeypatch.setattr(mongo_events, "BUCKET_LINES", bucket_lines)  # 3: pages span many console buckets
    fill(mongo_events_store)
    fill(file_events)
    assert [s.as_dict() for s in mongo_events_store.list_series(TASK)] == \
        [s.as_dict() for s in file_events.list_series(TASK)]
    for metric, variant in (("loss", "train"), ("acc", "val")):
        for max_points in (None, 100):
            mine = mongo_events_store.read_series(TASK, metric, variant, max_points)
            theirs = file_events.read_series(TASK, metric, variant, max_points)
            assert mine == theirs
        assert mongo_events_store.read_points(TASK, metric, variant).tobytes() == \
            file_events.read_points(TASK, metric, variant).tobytes()
    assert mongo_events_store.read_series(TASK, "loss", "train", 100)["downsampled"] is True
    for start, limit in ((0, 1000), (5, 10), (-4, 10), (40, 10), (-100, 3), (7, 1), (8, 6)):
        assert mongo_events_store.read_console(TASK, start, limit) == file_events.read_console(TASK, start, limit)
    for kind in (None, "plot", "text", "table"):
        assert mongo_events_store.read_events(TASK, kind) == file_events.read_events(TASK, kind)
    assert mongo_events_store.read_events(TASK, "plot")[0]["data"] == {"x.y": [1, 2], "$weird": 1}


def test_summary_tracks_last_min_max_and_nan(mongo_events_store: MongoEventStore) -> None:
    fill(mongo_events_store)
    loss = next(s for s in mongo_events_store.list_series(TASK) if s.metric == "loss")
    assert loss.count == 3000 and loss.last_iteration == 2999
    assert loss.max == 1.0 and math.isclose(loss.min, 1 / 3000) and math.isclose(loss.last, 1 / 3000)
    series = mongo_events_store.read_series(TASK, "loss", "train")
    assert series["total"] == 3000 and series["values"][1007] is None


def test_a_resent_batch_is_a_duplicate(mongo_events_store: MongoEventStore) -> None:
    batch = batches()[0]
    assert mongo_events_store.append(TASK, batch).duplicate is False
    again = mongo_events_store.append(TASK, batch)
    assert again.duplicate is True and again.scalars == 0
    assert mongo_events_store.read_console(TASK, 0, 100)[1] == 7
    assert mongo_events_store.list_series(TASK)[0].count == 500


@pytest.mark.parametrize("fail_at_series", [0, 1])
def test_a_batch_retried_after_a_crash_lands_exactly_once(mongo_events_store: MongoEventStore,
                                                          file_events: FileEventStore,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          fail_at_series: int) -> None:
    """The server dies mid-batch (data written, summaries half done); the client resends the batch."""
    all_batches = batches()
    for batch in all_batches[:2]:
        mongo_events_store.append(TASK, batch)
    real_absorb = MongoEventStore._absorb
    calls = {"n": 0}

    def dying_absorb(self: MongoEventStore, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > fail_at_series:
            raise ConnectionError("server process killed")
        return real_absorb(self, *args)

    monkeypatch.setattr(MongoEventStore, "_absorb", dying_absorb)
    with pytest.raises(ConnectionError):
        mongo_events_store.append(TASK, all_batches[2])
    monkeypatch.setattr(MongoEventStore, "_absorb", real_absorb)
    assert mongo_events_store.append(TASK, all_batches[2]).duplicate is False, "the retry completes the batch"
    assert mongo_events_store.append(TASK, all_batches[2]).duplicate is True
    for batch in all_batches[3:]:
        mongo_events_store.append(TASK, batch)
    fill(file_events)
    assert [s.as_dict() for s in mongo_events_store.list_series(TASK)] == \
        [s.as_dict() for s in file_events.list_series(TASK)]
    assert mongo_events_store.read_series(TASK, "loss", "train") == file_events.read_series(TASK, "loss", "train")
    assert mongo_events_store.read_console(TASK, 0, 1000) == file_events.read_console(TASK, 0, 1000)


def test_large_series_is_split_into_buckets(mongo_events_store: MongoEventStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongo_events, "BUCKET_POINTS", 1000)
    its = list(range(4500))
    mongo_events_store.append(TASK, {"batch_id": "big-batch-1", "scalars": [
        {"metric": "m", "variant": "v", "iterations": its, "values": [float(i) for i in its]}]})
    assert mongo_events_store.db[mongo_events.SCALARS].count_documents({"task": TASK}) == 5
    series = mongo_events_store.read_series(TASK, "m", "v")
    assert series["iterations"] == its and series["values"] == [float(i) for i in its]


def test_unknown_series_and_empty_task(mongo_events_store: MongoEventStore) -> None:
    with pytest.raises(KeyError):
        mongo_events_store.read_series(TASK, "nope", "nope")
    assert mongo_events_store.read_console(TASK, 0, 10) == ([], 0)
    assert mongo_events_store.list_series(TASK) == []
    assert mongo_events_store.append(TASK, {"batch_id": "empty-batch"}).duplicate is False


def test_delete_task_removes_every_event(mongo_events_store: MongoEventStore) -> None:
    fill(mongo_events_store)
    other = "b" * 32
    mongo_events_store.append(other, batches()[0])
    mongo_events_store.delete_task(TASK)
    assert mongo_events_store.list_series(TASK) == []
    assert mongo_events_store.read_console(TASK, 0, 10) == ([], 0)
    assert mongo_events_store.read_events(TASK) == []
    for name in mongo_events.EVENT_INDEXES:
        assert mongo_events_store.db[name].count_documents({"task": TASK}) == 0
    assert mongo_events_store.task_ids() == [other]
    assert mongo_events_store.read_console(other, 0, 10)[1] == 7


def test_bad_task_id_is_refused(mongo_events_store: MongoEventStore) -> None:
    from fleetdeck.server_lite.names import BadName

    with pytest.raises(BadName):
        mongo_events_store.append("../etc", batches()[0])


def test_a_value_mongodb_cannot_hold_is_refused_before_anything_is_written(
        mongo_events_store: MongoEventStore) -> None:
    from fleetdeck.server_lite.store.base import BadDocument

    with pytest.raises(BadDocument):
        mongo_events_store.append(TASK, {"batch_id": "too-big-1", "console": [{"line": "kept?"}], "scalars": [
            {"metric": "m", "variant": "v", "iterations": [2**70], "values": [1.0]}]})
    assert mongo_events_store.read_console(TASK, 0, 10) == ([], 0), "no line number was reserved"
    assert mongo_events_store.db[mongo_events.BATCHES].count_documents({}) == 0
