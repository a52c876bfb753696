"""Per-task event storage: scalar series, console lines and other events, append-only.

Layout under ``<data_dir>/events/<task_id>/``::

    series.jsonl      one line per series: {"n": N, "m": metric, "v": variant}
    s<N>.bin          the series' points, fixed 24-byte records <i8 iteration, f8 value, f8 time>
    console.jsonl     console lines; console.idx holds each line's byte offset (u64) for paging
    events.jsonl      plots, debug images, text, tables, single values
    batches.log       batch intents and commits (exactly-once, crash-atomic batches)

A batch is applied crash-atomically and exactly once: an intent record lists the length of every
file the batch will touch, the data is appended and fsynced, then a commit record is written. On
open, an intent without its commit is rolled back by truncating those files; a committed batch id
is remembered, so a client that resends a batch (after a timeout) does not duplicate it.
"""

from __future__ import annotations

import abc
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from fleetdeck.server_lite.downsample import minmax_indices
from fleetdeck.server_lite.names import check_id
from fleetdeck.server_lite.store.base import BadDocument, StoreError, StoreFull

POINT = np.dtype([("iteration", "<i8"), ("value", "<f8"), ("time", "<f8")])
MAX_LINE = 64 * 1024
RESOURCE_TITLE = ":monitor:"
"""Reserved metric title for resource samples (CPU, memory, GPU), reported as ordinary scalars."""


@dataclass
class SeriesSummary:
    """What a task's metric listing shows without reading the points."""

    metric: str
    variant: str
    count: int = 0
    last: float | None = None
    last_iteration: int | None = None
    min: float | None = None
    max: float | None = None

    def absorb(self, points: np.ndarray) -> None:
        if not len(points):
            return
        values = points["value"]
        finite = values[~np.isnan(values)]
        self.count += len(points)
        self.last = _num(values[-1])
        self.last_iteration = int(points["iteration"][-1])
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "variant": self.variant, "count": self.count, "last": self.last,
                "last_iteration": self.last_iteration, "min": self.min, "max": self.max}


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


@dataclass
class AppendResult:
    duplicate: bool
    scalars: int = 0
    console: int = 0
    events: int = 0
    touched: list[SeriesSummary] = field(default_factory=list)


class EventStore(abc.ABC):
    """Event storage contract shared by the embedded and MongoDB backends."""

    @abc.abstractmethod
    def append(self, task_id: str, batch: dict[str, Any]) -> AppendResult:
        """Apply one batch (``batch_id``, ``scalars``, ``console``, ``events``) exactly once."""

    @abc.abstractmethod
    def list_series(self, task_id: str) -> list[SeriesSummary]:
        ...

    @abc.abstractmethod
    def read_series(self, task_id: str, metric: str, variant: str, max_points: int | None = None) -> dict[str, Any]:
        """Points of one series (``iterations``, ``values``, ``timestamps``), downsampled on request."""

    def read_points(self, task_id: str, metric: str, variant: str) -> np.ndarray:
        """All points of one series as a ``POINT`` array (empty when absent), for server-side analysis
        (cost reports) that must not build Python lists of every value."""
        try:
            data = self.read_series(task_id, metric, variant)
        except KeyError:
            return np.empty(0, dtype=POINT)
        points = np.empty(len(data["iterations"]), dtype=POINT)
        points["iteration"] = data["iterations"]
        points["value"] = np.array(data["values"], dtype=np.float64)
        points["time"] = data["timestamps"]
        return points

    @abc.abstractmethod
    def read_console(self, task_id: str, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Console lines ``[start, start+limit)`` (negative start counts from the end) and the total."""

    @abc.abstractmethod
    def read_events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        ...

    @abc.abstractmethod
    def delete_task(self, task_id: str) -> None:
        ...

    def close(self) -> None:  # noqa: B027
        """Release open files."""


class FileEventStore(EventStore):
    """Append-only files per task; a bounded number of tasks is kept open."""

    def __init__(self, root: str | Path, max_open: int = 256) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[str, _TaskEvents] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()

    def _task(self, task_id: str) -> _TaskEvents:
        check_id(task_id, "task id")
        with self._lock:
            handle = self._open.get(task_id)
            if handle is None:
                handle = _TaskEvents(self.root / task_id)
                self._open[task_id] = handle
                while len(self._open) > self._max_open:
                    self._open.popitem(last=False)[1].close()
            else:
                self._open.move_to_end(task_id)
            return handle

    def append(self, task_id: str, batch: dict[str, Any]) -> AppendResult:
        return self._task(task_id).append(batch)

    def list_series(self, task_id: str) -> list[SeriesSummary]:
        return self._task(task_id).list_series()

    def read_series(self, task_id: str, metric: str, variant: str, max_points: int | None = None) -> dict[str, Any]:
        return self._task(task_id).read_series(metric, variant, max_points)

    def read_points(self, task_id: str, metric: str, variant: str) -> np.ndarray:
        return self._task(task_id).read_points(metric, variant)

    def read_console(self, task_id: str, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self._task(task_id).read_console(start, limit)

    def read_events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self._task(task_id).read_events(kind)

    def delete_task(self, task_id: str) -> None:
        check_id(task_id, "task id")
        with self._lock:
            handle = self._open.pop(task_id, None)
            if handle is not None:
                handle.close()
        shutil.rmtree(self.root / task_id, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for handle in self._open.values():
                handle.close()
            self._open.clear()


class _TaskEvents:
    """One task's event files. All methods hold the task's lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.series: dict[tuple[str, str], int] = {}
        self.summaries: dict[int, SeriesSummary] = {}
        self.committed: set[str] = set()
        self.console_lines = 0
        self._recovered = False

    # -- recovery --------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._recovered:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover_batches()
        for line in _read_lines(self.folder / "series.jsonl"):
            entry = orjson.loads(line)
            self.series[(entry["m"], entry["v"])] = entry["n"]
            summary = SeriesSummary(entry["m"], entry["v"])
            summary.absorb(self._points(entry["n"]))
            self.summaries[entry["n"]] = summary
        idx = self.folder / "console.idx"
        self.console_lines = idx.stat().st_size // 8 if idx.exists() else 0
        self._recovered = True

    def _recover_batches(self) -> None:
        pending: dict[str, dict[str, int]] = {}
        for line in _read_lines(self.folder / "batches.log"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line: its batch was never committed
            if "b" in record:
                pending[record["b"]] = record["lens"]
            elif "c" in record:
                pending.pop(record["c"], None)
                self.committed.add(record["c"])
            elif "a" in record:
                pending.pop(record["a"], None)
        for batch_id, lens in pending.items():
            for name, length in lens.items():
                path = self.folder / name
                if path.exists() and path.stat().st_size > length:
                    with open(path, "r+b") as fh:
                        fh.truncate(length)
                        os.fsync(fh.fileno())
            _append_durable(self.folder / "batches.log", orjson.dumps({"a": batch_id}) + b"\n")

    # -- writing ---------------------------------------------------------------------------

    def append(self, batch: dict[str, Any]) -> AppendResult:
        with self.lock:
            self._ensure_open()
            batch_id = batch.get("batch_id") or os.urandom(16).hex()
            if batch_id in self.committed:
                return AppendResult(duplicate=True)
            writes: dict[str, bytes] = {}
            new_series: dict[tuple[str, str], int] = {}
            series_lines: list[bytes] = []
            staged: list[tuple[int, np.ndarray]] = []
            next_n = len(self.series)
            for group in batch.get("scalars", ()):
                key = (group["metric"], group["variant"])
                n = self.series.get(key)
                if n is None:
                    n = new_series.get(key)
                if n is None:
                    n = next_n
                    next_n += 1
                    new_series[key] = n
                    series_lines.append(orjson.dumps({"n": n, "m": key[0], "v": key[1]}) + b"\n")
                try:
                    points = _points_array(group)
                except (OverflowError, ValueError) as exc:
                    raise BadDocument(f"scalars {key[0]}/{key[1]}: {exc}") from None
                staged.append((n, points))
                writes[f"s{n}.bin"] = writes.get(f"s{n}.bin", b"") + points.tobytes()
            if series_lines:  # joined once: a batch with 10,000 new series stays linear
                writes["series.jsonl"] = b"".join(series_lines)
            console = batch.get("console", ())
            if console:
                base = self._size("console.jsonl")
                lines = []
                offsets = []
                pos = base
                for entry in console:
                    text = entry.get("line", "")
                    if len(text) > MAX_LINE:
                        text = text[:MAX_LINE] + "…[truncated]"
                    encoded = orjson.dumps({"ts": entry.get("ts") or time.time(),
                                            "stream": entry.get("stream", "stdout"), "line": text}) + b"\n"
                    offsets.append(pos)
                    pos += len(encoded)
                    lines.append(encoded)
                writes["console.jsonl"] = b"".join(lines)
                writes["console.idx"] = np.array(offsets, dtype="<u8").tobytes()
            others = batch.get("events", ())
            if others:
                try:
                    writes["events.jsonl"] = b"".join(orjson.dumps(e) + b"\n" for e in others)
                except orjson.JSONEncodeError as exc:
                    raise BadDocument(f"an event cannot be stored: {exc}") from None
            if not writes:
                return AppendResult(duplicate=False)
            lens = {name: self._size(name) for name in writes}
            try:
                _append_durable(self.folder / "batches.log", orjson.dumps({"b": batch_id, "lens": lens}) + b"\n")
                for name, data in writes.items():
                    _append_durable(self.folder / name, data)
                _append_durable(self.folder / "batches.log", orjson.dumps({"c": batch_id}) + b"\n")
            except OSError as exc:
                self._rollback(batch_id, lens)
                if exc.errno == 28:
                    raise StoreFull(f"disk full: cannot store events of task {self.folder.name}") from None
                raise StoreError(f"cannot store events: {exc.strerror}") from None
            self.committed.add(batch_id)
            for key, n in new_series.items():
                self.series[key] = n
                self.summaries[n] = SeriesSummary(*key)
            touched = []
            for n, points in staged:
                self.summaries[n].absorb(points)
                touched.append(self.summaries[n])
            self.console_lines += len(console)
            return AppendResult(duplicate=False, scalars=sum(len(p) for _, p in staged),
                                console=len(console), events=len(others), touched=touched)

    def _rollback(self, batch_id: str, lens: dict[str, int]) -> None:
        for name, length in lens.items():
            path = self.folder / name
            try:
                if path.exists() and path.stat().st_size > length:
                    os.truncate(path, length)
            except OSError:
                pass  # the intent record stays uncommitted: the next open truncates it
        try:
            _append_durable(self.folder / "batches.log", orjson.dumps({"a": batch_id}) + b"\n")
        except OSError:
            pass  # same: recovery on open finishes the rollback

    def _size(self, name: str) -> int:
        try:
            return (self.folder / name).stat().st_size
        except FileNotFoundError:
            return 0

    # -- reading ---------------------------------------------------------------------------

    def _points(self, n: int) -> np.ndarray:
        path = self.folder / f"s{n}.bin"
        if not path.exists():
            return np.empty(0, dtype=POINT)
        usable = path.stat().st_size // POINT.itemsize
        return np.fromfile(path, dtype=POINT, count=usable)

    def list_series(self) -> list[SeriesSummary]:
        with self.lock:
            self._ensure_open()
            return [self.summaries[n] for n in sorted(self.summaries)]

    def read_series(self, metric: str, variant: str, max_points: int | None) -> dict[str, Any]:
        with self.lock:
            self._ensure_open()
            n = self.series.get((metric, variant))
            points = self._points(n) if n is not None else np.empty(0, dtype=POINT)
        total = len(points)
        if n is None:
            raise KeyError(f"no series {metric}/{variant}")
        if max_points is not None and total > max_points:
            points = points[minmax_indices(points["value"], max_points)]
        values = [None if math.isnan(v) else v for v in points["value"].tolist()]
        return {"metric": metric, "variant": variant, "total": total, "downsampled": len(points) < total,
                "iterations": points["iteration"].tolist(), "values": values,
                "timestamps": points["time"].tolist()}

    def read_points(self, metric: str, variant: str) -> np.ndarray:
        with self.lock:
            self._ensure_open()
            n = self.series.get((metric, variant))
            return self._points(n) if n is not None else np.empty(0, dtype=POINT)

    def read_console(self, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            self._ensure_open()
            total = self.console_lines
        if start < 0:
            start = max(0, total + start)
        end = min(total, start + limit)
        if start >= end:
            return [], total
        count = min(end - start + 1, total - start)
        offsets = np.fromfile(self.folder / "console.idx", dtype="<u8", count=count, offset=start * 8)
        with open(self.folder / "console.jsonl", "rb") as fh:
            fh.seek(int(offsets[0]))
            if len(offsets) > end - start:
                data = fh.read(int(offsets[-1]) - int(offsets[0]))
            else:
                data = fh.read()
        lines = []
        for i, raw in enumerate(data.splitlines()[: end - start]):
            entry = orjson.loads(raw)
            entry["n"] = start + i
            lines.append(entry)
        return lines, total

    def read_events(self, kind: str | None) -> list[dict[str, Any]]:
        with self.lock:
            self._ensure_open()
        out = []
        for line in _read_lines(self.folder / "events.jsonl"):
            event = orjson.loads(line)
            if kind is None or event.get("kind") == kind:
                out.append(event)
        return out

    def close(self) -> None:
        pass


def _points_array(group: dict[str, Any]) -> np.ndarray:
    iterations = group["iterations"]
    values = group["values"]
    timestamps = group.get("timestamps")
    points = np.empty(len(iterations), dtype=POINT)
    points["iteration"] = iterations
    points["value"] = np.array(values, dtype=np.float64)  # None -> nan
    points["time"] = timestamps if timestamps is not None else time.time()
    return points


def _append_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> Iterable[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line]
