"""The ``Store`` contract: every backend in ``store_backends.BACKENDS`` must pass all of it.

Queries, updates and sorts follow MongoDB's semantics for the documented subset, so the MongoDB
backend can pass them through unchanged and the embedded backend must agree with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdeck.server_lite.store.base import Document, DuplicateId, Store, StoreError
from tests.server_lite.store_backends import BACKENDS
from tests.support import wait_for


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as opened:
        yield opened


PEOPLE: list[Document] = [
    {"id": "a", "name": "Ada", "age": 36, "tags": ["math", "eng"], "team": {"name": "core", "size": 3}},
    {"id": "b", "name": "bob", "age": 25, "tags": ["eng"], "team": {"name": "web", "size": 5}},
    {"id": "c", "name": "Carol", "age": 41, "tags": [], "team": {"name": "core", "size": 3}, "boss": True},
    {"id": "d", "name": "Dave", "tags": ["ops"], "note": None},
    {"id": "e", "name": "Eve", "age": 25.5, "tags": ["math"], "team": {"name": "sec", "size": 1}},
]


@pytest.fixture
def people(store: Store) -> Store:
    for doc in PEOPLE:
        store.insert("people", dict(doc))
    return store


def ids(docs: list[Document]) -> list[str]:
    return [d["id"] for d in docs]


def test_insert_get_and_duplicate_id(store: Store) -> None:
    doc = {"id": "x1", "n": 1, "nested": {"k": [1, 2]}}
    assert store.insert("things", doc) == doc
    assert store.get("things", "x1") == doc
    assert store.get("things", "missing") is None
    assert store.get("other", "x1") is None, "collections are separate"
    with pytest.raises(DuplicateId):
        store.insert("things", {"id": "x1", "n": 2})
    assert store.get("things", "x1") == doc, "a refused insert changes nothing"


def test_insert_needs_a_string_id(store: Store) -> None:
    with pytest.raises(StoreError):
        store.insert("things", {"n": 1})


@pytest.mark.parametrize(("query", "expected"), [
    (None, "abcde"),
    ({}, "abcde"),
    ({"name": "bob"}, "b"),
    ({"age": 25}, "b"),
    ({"age": {"$eq": 36}}, "a"),
    ({"age": {"$ne": 25}}, "acde"),           # $ne matches documents without the field
    ({"age": {"$gt": 25}}, "ace"),
    ({"age": {"$gte": 25.5}}, "ace"),
    ({"age": {"$lt": 36}}, "be"),
    ({"age": {"$lte": 36}}, "abe"),
    ({"age": {"$gt": 25, "$lt": 40}}, "ae"),
    ({"age": {"$in": [25, 41]}}, "bc"),
    ({"age": {"$nin": [25, 41]}}, "ade"),     # $nin matches documents without the field
    ({"age": {"$exists": True}}, "abce"),
    ({"age": {"$exists": False}}, "d"),
    ({"tags": "eng"}, "ab"),                  # equality on an array matches an element
    ({"tags": {"$in": ["ops", "math"]}}, "ade"),
    ({"tags": {"$all": ["math", "eng"]}}, "a"),
    ({"tags": {"$all": ["math"]}}, "ae"),
    ({"tags": []}, "c"),
    ({"team.name": "core"}, "ac"),            # dotted paths
    ({"team.size": {"$gte": 3}}, "abc"),
    ({"team": {"name": "web", "size": 5}}, "b"),
    ({"boss": True}, "c"),
    ({"note": None}, "abcde"),                # null matches null and missing, as in MongoDB
    ({"note": {"$ne": None}}, ""),
    ({"name": {"$contains": "A"}}, "acd"),    # case-insensitive substring
    ({"name": {"$contains": "ob"}}, "b"),
    ({"$or": [{"age": 25}, {"name": "Dave"}]}, "bd"),
    ({"$and": [{"team.name": "core"}, {"age": {"$gt": 40}}]}, "c"),
    ({"name": "Ada", "age": 36}, "a"),
    ({"name": "Ada", "age": 37}, ""),
])
def test_find_operators(people: Store, query: dict | None, expected: str) -> None:
    found = people.find("people", query, sort=[("id", 1)])
    assert ids(found) == list(expected)
    assert people.count("people", query) == len(expected)


@pytest.mark.parametrize("query", [
    {"age": {"$regex": "x"}},
    {"$where": "1"},
    {"age": {"$in": 3}},
    {"$or": []},
])
def test_unsupported_query_is_an_error(people: Store, query: dict) -> None:
    with pytest.raises(StoreError):
        people.find("people", query)


def test_sort_mixed_directions_and_missing_values(people: Store) -> None:
    by_age = people.find("people", sort=[("age", 1)])
    assert ids(by_age) == ["d", "b", "e", "a", "c"], "missing values sort first ascending"
    assert ids(people.find("people", sort=[("age", -1)])) == ["c", "a", "e", "b", "d"]
    mixed = people.find("people", {"team": {"$exists": True}}, sort=[("team.size", -1), ("name", 1)])
    assert ids(mixed) == ["b", "a", "c", "e"]
    mixed = people.find("people", {"team": {"$exists": True}}, sort=[("team.name", 1), ("age", -1)])
    assert ids(mixed) == ["c", "a", "e", "b"]


def test_skip_limit_fields(people: Store) -> None:
    page = people.find("people", sort=[("id", 1)], skip=1, limit=2)
    assert ids(page) == ["b", "c"]
    assert people.find("people", sort=[("id", 1)], skip=10) == []
    assert ids(people.find("people", sort=[("id", -1)], limit=1)) == ["e"]
    slim = people.find("people", {"id": "a"}, fields=["name"])
    assert slim == [{"id": "a", "name": "Ada"}], "fields keeps the listed keys and always the id"


def test_update_operators(people: Store) -> None:
    new = people.update("people", "a", {"$set": {"age": 37, "team.size": 4, "x.y": 1},
                                        "$unset": {"boss": "", "name": ""}})
    assert new is not None
    assert new["age"] == 37 and new["team"] == {"name": "core", "size": 4} and new["x"] == {"y": 1}
    assert "name" not in new
    new = people.update("people", "a", {"$inc": {"age": 1, "visits": 2}})
    assert new is not None and new["age"] == 38 and new["visits"] == 2
    new = people.update("people", "a", {"$push": {"tags": "ops"}})
    assert new is not None and new["tags"] == ["math", "eng", "ops"]
    new = people.update("people", "a", {"$pull": {"tags": "math"}})
    assert new is not None and new["tags"] == ["eng", "ops"]
    assert people.get("people", "a") == new
    assert people.get("people", "c")["team"] == {"name": "core", "size": 3}, "nested values are not shared"
    assert people.update("people", "zzz", {"$set": {"age": 1}}) is None


def test_update_where_is_a_compare_and_set(people: Store) -> None:
    assert people.update("people", "b", {"$set": {"age": 26}}, where={"age": 99}) is None
    assert people.get("people", "b")["age"] == 25
    updated = people.update("people", "b", {"$set": {"age": 26}}, where={"age": 25})
    assert updated is not None and updated["age"] == 26


@pytest.mark.parametrize("update", [{}, {"$rename": {"a": "b"}}, {"$set": {"id": "other"}}])
def test_bad_update_is_an_error(people: Store, update: dict) -> None:
    with pytest.raises(StoreError):
        people.update("people", "a", update)
    assert people.get("people", "a") == PEOPLE[0]


def test_find_one_and_update_and_delete_honour_sort(people: Store) -> None:
    oldest = people.find_one_and_update("people", {"age": {"$exists": True}}, {"$set": {"picked": True}},
                                        sort=[("age", -1)])
    assert oldest is not None and oldest["id"] == "c" and oldest["picked"] is True
    assert people.find_one_and_update("people", {"age": 1000}, {"$set": {"x": 1}}) is None
    youngest = people.find_one_and_delete("people", {"age": {"$exists": True}}, sort=[("age", 1)])
    assert youngest is not None and youngest["id"] == "b"
    assert people.get("people", "b") is None
    assert people.find_one_and_delete("people", {"age": 1000}) is None


def test_delete(people: Store) -> None:
    assert people.delete("people", "a") is True
    assert people.delete("people", "a") is False
    assert people.get("people", "a") is None
    assert people.count("people") == 4


def test_upsert_inserts_then_replaces(store: Store) -> None:
    store.upsert("things", {"id": "u", "v": 1})
    store.upsert("things", {"id": "u", "v": 2, "w": 3})
    assert store.get("things", "u") == {"id": "u", "v": 2, "w": 3}


def test_find_one_and_update_is_atomic_under_threads(store: Store) -> None:
    for i in range(200):
        store.insert("jobs", {"id": f"j{i:03d}", "owner": None, "seq": i})
    claims: dict[str, list[str]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            job = store.find_one_and_update("jobs", {"owner": None}, {"$set": {"owner": name}}, sort=[("seq", 1)])
            if job is None:
                return
            with lock:
                claims.setdefault(job["id"], []).append(name)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claims) == 200 and all(len(owners) == 1 for owners in claims.values())
    assert all(store.get("jobs", job_id)["owner"] == owners[0] for job_id, owners in claims.items())


def test_find_one_and_delete_is_atomic_under_threads(store: Store) -> None:
    for i in range(200):
        store.insert("queue", {"id": f"q{i:03d}", "seq": i})
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (entry := store.find_one_and_delete("queue", {}, sort=[("seq", 1)])) is not None:
            with lock:
                taken.append(entry["id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [f"q{i:03d}" for i in range(200)], "every entry taken exactly once"
    assert store.count("queue") == 0


def test_volatile_values_expire(store: Store) -> None:
    store.put_volatile("workers", "w1", {"status": "idle"}, ttl_s=0.3)
    store.put_volatile("workers", "w2", {"status": "busy"}, ttl_s=60)
    assert store.list_volatile("workers") == {"w1": {"status": "idle"}, "w2": {"status": "busy"}}
    assert store.list_volatile("other") == {}
    wait_for(lambda: "w1" not in store.list_volatile("workers"), timeout=5, message="w1 to expire")
    assert store.list_volatile("workers") == {"w2": {"status": "busy"}}
    store.delete_volatile("workers", "w2")
    store.delete_volatile("workers", "never-there")
    assert store.list_volatile("workers") == {}


def test_insert_many(store: Store) -> None:
    docs = [{"id": f"m{i}", "n": i} for i in range(50)]
    assert store.insert_many("things", docs) == docs
    assert store.count("things") == 50 and store.get("things", "m7") == {"id": "m7", "n": 7}
    with pytest.raises(DuplicateId):
        store.insert_many("things", [{"id": "m3", "n": 0}])
    assert store.get("things", "m3") == {"id": "m3", "n": 3}
