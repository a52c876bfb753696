"""In-process event buffers and the thread that moves them into the spool.

The training thread only appends: a scalar point is three appends to preallocated typed arrays
(``array.array``, 24 bytes a point, no object per point), a console line or another event one
append to a deque. A background thread wakes every ``interval`` seconds, takes what is there and
writes one spool record. It never talks to the network (the helper process does), so logging never
waits for a server, and the records it writes are the exact batches the helper later sends.

Lock-free hand-off: the writer appends ``values``, then ``iterations``, then ``times``; the
flusher reads ``n = len(times)`` (so the first ``n`` entries of all three columns are complete),
copies them and deletes that prefix from each column. Under the GIL each append and each prefix
deletion is atomic, so no point is lost or torn without a lock on the hot path.
"""

from __future__ import annotations

import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetdeck.spool import PROCESS, SpoolWriter


EARLY_FLUSH_POINTS = 200_000
"""A series with this many unsent points is flushed before the interval ends (about 5 MB)."""


class Columns:
    """The unsent points of one scalar series."""

    __slots__ = ("metric", "variant", "values", "iterations", "times", "auto")

    def __init__(self, metric: str, variant: str) -> None:
        self.metric = metric
        self.variant = variant
        self.values = array("d")
        self.iterations = array("q")
        self.times = array("d")
        self.auto = 0
        """Next iteration number for points reported without one."""

    def take(self) -> tuple[int, list[array]] | None:
        """Remove and return the complete points (one copy of them; no buffer export, which would
        make the writer's next append fail)."""
        n = len(self.times)
        if not n:
            return None
        self.auto = max(self.auto, self.iterations[n - 1] + 1)
        columns = [self.iterations[:n], self.values[:n], self.times[:n]]
        del self.times[:n]
        del self.iterations[:n]
        del self.values[:n]
        return n, columns


class EventBuffer:
    """Buffers one run's events and spools them from a background thread.

    Args:
        folder: the run's spool folder.
        run_key: prefix of the batch ids (unique per run).
        interval: seconds between flushes.
        on_error: called with a one-line message when the spool cannot be written.
    """

    def __init__(self, folder: Path, run_key: str, interval: float = 0.5,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.run_key = run_key
        self.interval = interval
        self.series: dict[str, dict[str, Columns]] = {}
        self._all: list[Columns] = []
        self.console: deque[tuple[str, str, float]] = deque()
        self.events: deque[dict[str, Any]] = deque()
        self.control: deque[tuple[dict[str, Any], bytes]] = deque()
        self._writer = SpoolWriter(folder, PROCESS)
        self._on_error = on_error or (lambda msg: print(msg, file=sys.stderr))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._failed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="fleetdeck-flush", daemon=True)
        self._thread.start()

    # -- producers (any thread) --------------------------------------------------------------

    def columns(self, metric: str, variant: str) -> Columns:
        """The column set of a series, created on first use."""
        by_variant = self.series.setdefault(metric, {})
        cols = by_variant.get(variant)
        if cols is None:
            with self._lock:
                cols = by_variant.setdefault(variant, Columns(metric, variant))
                if cols not in self._all:
                    self._all.append(cols)
        return cols

    def add_record(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Queue a control record (task fields, an artifact, a status change) behind earlier ones."""
        self.control.append((header, payload))
        self._wake.set()

    # -- flushing ------------------------------------------------------------------------------

    def _loop(self) -> None:
        """Flush every ``interval``, or sooner when a series holds ``EARLY_FLUSH_POINTS`` (bounds memory)."""
        last = time.monotonic()
        while not self._stop:
            self._wake.wait(min(self.interval, 0.1))
            woken = self._wake.is_set()
            self._wake.clear()
            if woken or time.monotonic() - last >= self.interval or any(
                    len(cols.times) >= EARLY_FLUSH_POINTS for cols in list(self._all)):
                self.flush()
                last = time.monotonic()

    def flush(self) -> None:
        """Write everything buffered so far into the spool (safe from any thread)."""
        with self._lock:
            try:
                self._flush_locked()
            except Exception as exc:  # never let a disk problem reach the training code
                self._report_failure(exc)

    def _flush_locked(self) -> None:
        while self.control:
            header, payload = self.control.popleft()
            self._writer.write(header, payload)
        scalars: list[dict[str, Any]] = []
        chunks: list[array] = []
        for cols in list(self._all):
            taken = cols.take()
            if taken:
                scalars.append({"metric": cols.metric, "variant": cols.variant, "n": taken[0]})
                chunks.extend(taken[1])
        console = [self.console.popleft() for _ in range(len(self.console))]
        events = [self.events.popleft() for _ in range(len(self.events))]
        if not (scalars or console or events):
            return
        name = self._writer.next_name()
        header = {"kind": "events", "batch_id": f"{self.run_key}.{name}", "scalars": scalars,
                  "console": console, "events": events}
        self._writer.write(header, chunks)

    def _report_failure(self, exc: Exception) -> None:
        self.dropped += 1
        if not self._failed:
            self._failed = True
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self._on_error(f"fleetdeck: cannot write the spool in {self.folder} ({reason}); "
                           "reporting continues but events are being dropped")

    def close(self, final: dict[str, Any] | None = None, timeout: float = 5.0) -> None:
        """Stop the thread, spool what is left and then the ``final`` record."""
        self._stop = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if final is not None:
            self.control.append((final, b""))
        self.flush()
