"""Everything a request handler needs, built once per server process."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleetdeck.server_lite.auth import TokenRegistry
from fleetdeck.server_lite.blobs import BlobStore
from fleetdeck.server_lite.events import EventStore
from fleetdeck.server_lite.store.base import Store


class Clock:
    """Strictly increasing wall-clock timestamps, so ``created`` order is insertion order."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            value = max(time.time(), self._last + 1e-6)
            self._last = value
            return value


class QueueNotifier:
    """Wakes long-polling dequeue requests when a task is enqueued (from any thread)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Event] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def notify(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in list(self._waiters):
            event.set()


@dataclass
class ServerState:
    store: Store
    events: EventStore
    blobs: BlobStore
    tokens: TokenRegistry
    data_dir: Path | None = None
    clock: Clock = field(default_factory=Clock)
    notifier: QueueNotifier = field(default_factory=QueueNotifier)
    seq: itertools.count = field(default_factory=lambda: itertools.count(int(time.time() * 1e6)))
    max_body_bytes: int = 64 * 1024 * 1024
    max_chunk_bytes: int = 128 * 1024 * 1024
    peer_poll_s: float | None = None
    """Set when other server processes share the store (MongoDB): their enqueues cannot wake this
    process's waiting dequeues, so a waiting dequeue also re-checks the queues this often."""
