"""MongoStore beyond the shared contract: translation, connection options, indexes, errors.

The contract itself runs in ``test_store_contract.py`` (``mongomock`` always, ``mongodb`` when
``FLEETDECK_TEST_MONGO_URI`` is set). mongomock is an in-process imitation of MongoDB; what it
cannot check (real index use, write concern, elections) is listed in docs/deploy-mongodb.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdeck.server_lite.store.base import Store, StoreError
from fleetdeck.server_lite.store.mongo import (
    INDEXES, VOLATILE, MongoStore, _connect, redact_uri, translate_query,
)
from tests.server_lite.mongomock_support import atomic_mongomock_client
from tests.server_lite.store_backends import BACKENDS


@pytest.fixture
def mongo() -> Iterator[MongoStore]:
    store = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
    yield store
    store.close()


@pytest.fixture(params=["embedded", "mongomock"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as store:
        yield store


def test_contains_is_a_literal_case_insensitive_substring(either: Store) -> None:
    for i, name in enumerate(["a.b(x", "axb(x", "A.B(Y", "[a.b(", "ab"]):
        either.insert("runs", {"id": f"r{i}", "name": name})
    found = either.find("runs", {"name": {"$contains": "a.b("}}, sort=[("id", 1)])
    assert [d["name"] for d in found] == ["a.b(x", "A.B(Y", "[a.b("], "regex metacharacters are literal"
    assert either.count("runs", {"name": {"$contains": ".*"}}) == 0


def test_pull_removes_exact_values_and_all_needs_an_array(either: Store) -> None:
    either.insert("runs", {"id": "r", "items": [{"a": 1, "b": 2}, {"a": 1}, 3], "tags": "solo"})
    pulled = either.update("runs", "r", {"$pull": {"items": {"a": 1}}})
    assert pulled is not None and pulled["items"] == [{"a": 1, "b": 2}, 3], "only the equal sub-document goes"
    assert either.find("runs", {"tags": {"$all": ["solo"]}}) == []


def test_documents_are_keyed_by_id_without_a_copy(mongo: MongoStore) -> None:
    mongo.insert("tasks", {"id": "t1", "name": "n", "project": "p"})
    raw = mongo.db["tasks"].find_one({"_id": "t1"})
    assert raw == {"_id": "t1", "name": "n", "project": "p"}, "the id is MongoDB's _id, stored once"
    assert mongo.find("tasks", {"id": {"$in": ["t1", "t9"]}}, sort=[("id", -1)]) == \
        [{"id": "t1", "name": "n", "project": "p"}]


def test_translation_passes_the_subset_through() -> None:
    query = {"project": {"$in": ["a", "b"]}, "id": "x", "name": {"$contains": "lr=0.1"},
             "$or": [{"status": "failed"}, {"metrics.loss%2Ftrain.last": {"$lt": 0.5}}]}
    assert translate_query(query) == {
        "project": {"$in": ["a", "b"]}, "_id": "x", "name": {"$regex": r"lr=0\.1", "$options": "i"},
        "$or": [{"status": "failed"}, {"metrics.loss%2Ftrain.last": {"$lt": 0.5}}]}
    with pytest.raises(StoreError, match=r"\$where"):
        translate_query({"$where": "1"})


def test_listing_and_queue_indexes_exist(mongo: MongoStore) -> None:
    for collection, indexes in INDEXES.items():
        present = [list(info["key"]) for info in mongo.db[collection].index_information().values()]
        for keys, _options in indexes:
            assert [tuple(k) for k in keys] in [[tuple(k) for k in p] for p in present], (collection, keys)
    ttl = [info for info in mongo.db[VOLATILE].index_information().values() if "expireAfterSeconds" in info]
    assert ttl and ttl[0]["expireAfterSeconds"] == 0, "volatile entries expire on their own"


def test_durable_write_concern_by_default_and_uri_options_win() -> None:
    client = _connect("mongodb://127.0.0.1:1/fleetdeck", 0.2)
    try:
        assert client.write_concern.document == {"w": "majority", "j": True}
        assert client.options.retry_writes is True
    finally:
        client.close()
    client = _connect("mongodb://127.0.0.1:1/fleetdeck?w=1&journal=false&wtimeoutMS=2000", 0.2)
    try:
        assert client.write_concern.document == {"w": 1, "j": False, "wtimeout": 2000}
    finally:
        client.close()


def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        MongoStore("mongodb://admin:hunter2@127.0.0.1:1/fleetdeck", server_selection_timeout_s=0.2)
    message = str(caught.value)
    assert "unreachable" in message and "admin:***@127.0.0.1:1" in message and "hunter2" not in message


def test_invalid_uri_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="invalid MongoDB URI"):
        MongoStore("mongodb://127.0.0.1:1/fleetdeck?replicaSet=a&directConnection=true&w=banana-peel=1")


@pytest.mark.parametrize(("uri", "shown"), [
    ("mongodb://u:p%40ss@h1:27017,h2:27017/db?replicaSet=rs0", "mongodb://u:***@h1:27017,h2:27017/db?replicaSet=rs0"),
    ("mongodb+srv://svc@cluster.example/db", "mongodb+srv://svc:***@cluster.example/db"),
    ("mongodb://h:27017/db", "mongodb://h:27017/db"),
])
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_a_value_bson_cannot_hold_is_a_bad_document(mongo: MongoStore) -> None:
    from fleetdeck.server_lite.store.base import BadDocument

    with pytest.raises(BadDocument):
        mongo.insert("tasks", {"id": "t", "n": 2**70})
    assert mongo.get("tasks", "t") is None


@pytest.fixture
def real_mongo(tmp_path: Path) -> Iterator[Store]:
    """A real MongoDB (``FLEETDECK_TEST_MONGO_URI``); skipped where none is reachable, as here."""
    with BACKENDS["mongodb"](tmp_path) as store:
        yield store


@pytest.mark.parametrize(("query", "sort"), [
    ({"project": "p1"}, [("created", -1)]),
    ({"project": "p1", "status": "failed"}, [("created", -1)]),
    ({"status": {"$in": ["failed", "aborted"]}}, [("created", -1)]),
    ({"user": "ada"}, [("created", -1)]),
    ({"tags": {"$all": ["t1"]}}, [("created", -1)]),
    ({}, [("created", -1)]),
])
def test_task_listing_uses_an_index_on_a_real_server(real_mongo: MongoStore, query: dict, sort: list) -> None:
    """Only a real server has a query planner: the listing must scan an index, never sort in memory."""
    from fleetdeck.server_lite.store.mongo import translate_sort

    for i in range(300):
        real_mongo.insert("tasks", {"id": f"t{i:04d}", "project": f"p{i % 5}", "status": ["failed", "completed"][i % 2],
                                    "user": ["ada", "bob"][i % 2], "tags": [f"t{i % 3}"], "created": float(i)})
    plan = real_mongo.db["tasks"].find(translate_query(query)).sort(translate_sort(sort)).limit(50).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "COLLSCAN" not in winning and "'SORT'" not in winning, winning


def test_dequeue_order_is_served_by_an_index_on_a_real_server(real_mongo: MongoStore) -> None:
    for i in range(100):
        real_mongo.insert("queue_entries", {"id": f"e{i:03d}", "queue": "q", "priority": i % 3, "seq": i})
    plan = real_mongo.db["queue_entries"].find({"queue": "q"}).sort([("priority", -1), ("seq", 1)]).limit(1).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "COLLSCAN" not in winning and "'SORT'" not in winning, winning


def test_lease_reaper_query_is_served_by_an_index_on_a_real_server(real_mongo: MongoStore) -> None:
    for i in range(200):
        doc = {"id": f"t{i:03d}", "status": "completed", "created": float(i)}
        if i % 10 == 0:
            doc["lease"] = {"expires": float(i)}
        real_mongo.insert("tasks", doc)
    plan = real_mongo.db["tasks"].find({"lease.expires": {"$lt": 100.0}}).explain()
    assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"])
