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


BACKENDS: dict[str, StoreFactory] = {
    "embedded": embedded_store,
}
