"""mongomock, made atomic per operation the way a MongoDB server is.

mongomock is an in-process imitation of MongoDB; it is used here because no MongoDB server can be
installed on these machines, and a run on it is never called a MongoDB test. Its
``find_one_and_update`` is a find followed by an update, so two threads can both take the same
document, which a real server never allows. :func:`atomic_mongomock_client` serialises every
single write call, giving back the guarantee MongoDB gives: one operation is atomic. It does not
make a read-then-write sequence atomic, so a store that claimed a document with ``find`` and then
``update_one`` would still fail the contract's thread tests.
"""

from __future__ import annotations

import threading
from typing import Any

_WRITES = frozenset({
    "find_one_and_update", "find_one_and_delete", "find_one_and_replace", "insert_one", "insert_many",
    "update_one", "update_many", "replace_one", "delete_one", "delete_many", "bulk_write",
})


class _Collection:
    def __init__(self, inner: Any, lock: threading.RLock) -> None:
        self._inner = inner
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in _WRITES:
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)
        return locked


class _Database:
    def __init__(self, inner: Any, lock: threading.RLock) -> None:
        self._inner = inner
        self._lock = lock

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self._inner[name], self._lock)

    def get_collection(self, name: str, **kwargs: Any) -> _Collection:
        return _Collection(self._inner.get_collection(name, **kwargs), self._lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class AtomicMongomockClient:
    """A ``mongomock.MongoClient`` whose single write operations are atomic (see the module doc)."""

    def __init__(self) -> None:
        import mongomock

        self._inner = mongomock.MongoClient()
        self._lock = threading.RLock()

    def __getitem__(self, name: str) -> _Database:
        return _Database(self._inner[name], self._lock)

    def get_database(self, name: str | None = None, **kwargs: Any) -> _Database:
        return _Database(self._inner.get_database(name, **kwargs), self._lock)

    def get_default_database(self, default: str | None = None, **kwargs: Any) -> _Database:
        return _Database(self._inner.get_default_database(default, **kwargs), self._lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def atomic_mongomock_client() -> AtomicMongomockClient:
    return AtomicMongomockClient()


def serve_in_thread(state: Any) -> Any:
    """Run the real API app for ``state`` on a loopback port in this process (a context manager).

    A server process cannot reach another process's mongomock, so tests that put a server on top
    of mongomock run uvicorn in a thread of the test process; the traffic is still real HTTP.
    """
    import contextlib

    import uvicorn

    from fleetdeck.server_lite.app import create_app
    from fleetdeck.server_lite.process import free_port
    from fleetdeck.server_lite.runner import bind_socket
    from tests.support import wait_for

    @contextlib.contextmanager
    def running() -> Any:
        port = free_port()
        sock = bind_socket("127.0.0.1", port)
        server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"api-{port}", daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, timeout=15, message="in-process server to start")
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(15)
            sock.close()

    return running()
