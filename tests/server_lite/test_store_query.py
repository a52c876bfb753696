"""The in-memory query helpers: the heap-based page pick must equal a full sort."""

from __future__ import annotations

import random

import pytest

from fleetdeck.server_lite.store.query import first_sorted, sort_docs


@pytest.mark.parametrize("seed", range(5))
def test_first_sorted_equals_a_full_sort(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        docs = []
        for i in range(rng.randrange(0, 400)):
            doc: dict = {"id": str(i)}
            for field in ("a", "b", "c"):
                roll = rng.random()
                if roll < 0.15:
                    continue  # missing
                doc[field] = (None if roll < 0.25 else rng.choice([True, False]) if roll < 0.35
                              else rng.choice(["x", "y", "xy"]) if field == "a" and roll > 0.7
                              else rng.choice([rng.randrange(5), rng.random()]))
            docs.append(doc)
        sort = [(f, rng.choice([1, -1])) for f in rng.sample(["a", "b", "c"], rng.randrange(1, 4))]
        count = rng.randrange(1, 60)
        assert first_sorted(list(docs), sort, count) == sort_docs(list(docs), sort)[:count], (sort, count)


def test_booleans_are_not_numbers_as_in_mongodb() -> None:
    """mongomock gets this wrong (True matches 1), so it is checked here, not in the contract."""
    from fleetdeck.server_lite.store.query import matches

    assert not matches({"flag": True}, {"flag": 1})
    assert not matches({"n": 1}, {"n": True})
    assert not matches({"flags": [True]}, {"flags": 1})
    assert matches({"flag": True}, {"flag": True}) and matches({"n": 1}, {"n": 1.0})
