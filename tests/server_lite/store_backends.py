"""The store backends the contract suite runs against.

``BACKENDS`` maps a backend name to a factory: a context manager that takes a fresh temporary
folder and yields an empty, open :class:`~fleetdeck.server_lite.store.base.Store`, closing it on
exit. A new backend passes the contract by adding one entry here (the MongoDB backend adds
``mongomock``, and real MongoDB when ``FLEETDECK_TEST_MONGO_URI`` is set); a factory that cannot
run here calls ``pytest.skip`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from fleetdeck.server_lite.store.base import Store

StoreFactory = Callable[[Path], AbstractContextManager[Store]]


@contextmanager
def embedded_store(tmp: Path) -> Iterator[Store]:
    from fleetdeck.server_lite.store.embedded import EmbeddedStore

    store = EmbeddedStore(tmp / "docs")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def mongomock_store(tmp: Path) -> Iterator[Store]:
    """The MongoDB backend over mongomock, an in-process imitation of MongoDB (not a MongoDB test)."""
    from fleetdeck.server_lite.store.mongo import MongoStore
    from tests.server_lite.mongomock_support import atomic_mongomock_client

    store = MongoStore("mongodb://mongomock.invalid/fleetdeck", client=atomic_mongomock_client())
    try:
        yield store
    finally:
        store.close()


@contextmanager
def mongodb_store(tmp: Path) -> Iterator[Store]:
    """The MongoDB backend on a real server named by ``FLEETDECK_TEST_MONGO_URI`` (own database, dropped)."""
    import os
    import uuid

    import pytest

    uri = os.environ.get("FLEETDECK_TEST_MONGO_URI")
    if not uri:
        pytest.skip("FLEETDECK_TEST_MONGO_URI is not set: no MongoDB server to test against")
    from fleetdeck.server_lite.store.mongo import MongoStore

    name = f"fleetdeck_test_{uuid.uuid4().hex[:12]}"
    store = MongoStore(uri, database=name)
    try:
        yield store
    finally:
        store.client.drop_database(name)
        store.close()


BACKENDS: dict[str, StoreFactory] = {
    "embedded": embedded_store,
    "mongomock": mongomock_store,
    "mongodb": mongodb_store,
}
