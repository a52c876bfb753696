"""Events in MongoDB: scalar buckets, console lines and other events, exactly once per batch.

Collections (in the store's database)::

    events.tasks    per task: counters of batches and console lines (reserves numbers atomically)
    events.batches  one document per batch, _id "<task>/<batch_id>": the exactly-once record
    events.series   one summary per (task, metric, variant): count, last, min, max, arrival order
    events.scalars  the points, bucketed: one document per series per batch (split at 50,000
                    points), 24-byte records <i8 iteration, f8 value, f8 time> in one binary field,
                    indexed by (task, metric, variant, ordinal, part)
    events.console  console lines, bucketed too: one document per batch (split at 2,000 lines or
                    2 M characters) holding lines from first_n on as parallel arrays (lines, ts,
                    and one character of ``streams`` per line: "o" stdout, "e" stderr), indexed
                    by (task, first_n)
    events.other    plots, images, tables, text: the event as posted (JSON bytes) and its kind

Why buckets and not one document per point: a point costs 24 bytes in a bucket against about 90
bytes plus two index entries as its own document, and reading a 1,000,000-point series is ~40
documents instead of 1,000,000 (this is the bucket pattern MongoDB's time-series collections use
internally). Console lines are bucketed for the same reason: 64 bytes and one write per batch
instead of 185 bytes and one write per line (45-character lines). Buckets are ordered by arrival
(``ordinal``), as the embedded store's segment files are, so both stores answer the same points in
the same order.

Exactly once without transactions (so a standalone server, a replica set and a sharded cluster all
work the same): the batch's intent document (``pending``, holding its ordinal and its first
console line number) is written first; every data document has an id derived from the batch, so a
retried batch rewrites nothing that already landed; series summaries remember the last batch they
absorbed, so a retry does not count a batch twice (this assumes a task's batches arrive one after
another, as the SDK sends them); the batch is marked ``done`` last. A resend of a done batch is
answered as a duplicate.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import orjson

from fleetdeck.server_lite.downsample import minmax_indices
from fleetdeck.server_lite.events import MAX_LINE, POINT, AppendResult, EventStore, SeriesSummary
from fleetdeck.server_lite.names import check_id
from fleetdeck.server_lite.store.base import BadDocument
from fleetdeck.server_lite.store.mongo import MongoStore

TASKS = "events.tasks"
BATCHES = "events.batches"
SERIES = "events.series"
SCALARS = "events.scalars"
CONSOLE = "events.console"
OTHER = "events.other"
BUCKET_POINTS = 50_000
"""Points per scalar document at most (50,000 x 24 B = 1.2 MB, far under BSON's 16 MB)."""
BUCKET_LINES = 2_000
BUCKET_LINE_CHARS = 2 * 1024 * 1024
"""Console lines per document at most, and their characters at most (a line is at most 64 K
characters, so a bucket stays under 9 MB of UTF-8 whatever the text)."""
STREAMS = {"stdout": "o", "stderr": "e"}
STREAM_NAMES = {code: name for name, code in STREAMS.items()}

EVENT_INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    SCALARS: [([("task", 1), ("metric", 1), ("variant", 1), ("ordinal", 1), ("part", 1)], {})],
    CONSOLE: [([("task", 1), ("first_n", 1)], {})],
    OTHER: [([("task", 1), ("ordinal", 1), ("i", 1)], {}), ([("task", 1), ("kind", 1)], {})],
    SERIES: [([("task", 1), ("first_ordinal", 1), ("first_index", 1)], {})],
    BATCHES: [([("task", 1)], {})],
}


class MongoEventStore(EventStore):
    """The :class:`EventStore` of a MongoDB-backed server; shares the document store's database.

    Args:
        store: the open :class:`MongoStore` whose database and error mapping are used.
    """

    def __init__(self, store: MongoStore) -> None:
        self.db = store.db
        self._errors: Callable[[str], AbstractContextManager[None]] = store.translate_errors
        with self._errors("creating event indexes"):
            for collection, indexes in EVENT_INDEXES.items():
                for keys, options in indexes:
                    self.db[collection].create_index(keys, **options)

    # -- writing ---------------------------------------------------------------------------

    def append(self, task_id: str, batch: dict[str, Any]) -> AppendResult:
        check_id(task_id, "task id")
        try:  # everything that can refuse the input is done before anything is written
            groups = _merge_groups(batch.get("scalars", ()))
            others = [(event.get("kind"), orjson.dumps(event)) for event in batch.get("events", ())]
        except (OverflowError, ValueError, orjson.JSONEncodeError) as exc:
            raise BadDocument(f"events of task {task_id} cannot be stored: {exc}") from None
        console = list(batch.get("console", ()))
        if not groups and not console and not others:
            return AppendResult(duplicate=False)
        batch_id = batch.get("batch_id") or os.urandom(16).hex()
        with self._errors(f"events of task {task_id}"):
            intent = self._intent(task_id, batch_id, len(console))
            if intent is None:
                return AppendResult(duplicate=True)
            ordinal, console_base = intent["ordinal"], intent["console_base"]
            bucket_docs = []
            for index, (metric, variant, points) in enumerate(groups):
                for part, start in enumerate(range(0, len(points), BUCKET_POINTS)):
                    chunk = points[start:start + BUCKET_POINTS]
                    bucket_docs.append({
                        "_id": f"{task_id}/{batch_id}/s{index}.{part}", "task": task_id, "metric": metric,
                        "variant": variant, "ordinal": ordinal, "part": index * 1_000_000 + part,
                        "first_iteration": int(chunk["iteration"][0]), "n": len(chunk),
                        "points": chunk.tobytes()})
            _insert_idempotent(self.db[SCALARS], bucket_docs)
            _insert_idempotent(self.db[CONSOLE], _console_buckets(task_id, batch_id, console_base, console))
            _insert_idempotent(self.db[OTHER], [
                {"_id": f"{task_id}/{batch_id}/e{i}", "task": task_id, "ordinal": ordinal, "i": i,
                 "kind": kind, "raw": raw}
                for i, (kind, raw) in enumerate(others)])
            touched = [self._absorb(task_id, batch_id, ordinal, index, metric, variant, points)
                       for index, (metric, variant, points) in enumerate(groups)]
            self.db[BATCHES].update_one({"_id": f"{task_id}/{batch_id}"}, {"$set": {"state": "done"}})
        return AppendResult(duplicate=False, scalars=sum(len(p) for _, _, p in groups), console=len(console),
                            events=len(others), touched=touched)

    def _intent(self, task_id: str, batch_id: str, console_lines: int) -> dict[str, Any] | None:
        """The batch's pending record (created, or found from an earlier try); None if it is done."""
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        key = f"{task_id}/{batch_id}"
        found = self.db[BATCHES].find_one({"_id": key})
        if found is not None:
            return None if found["state"] == "done" else found
        counters = self.db[TASKS].find_one_and_update(
            {"_id": task_id}, {"$inc": {"batches": 1, "console": console_lines}},
            upsert=True, return_document=ReturnDocument.AFTER)
        intent = {"_id": key, "task": task_id, "state": "pending", "ordinal": counters["batches"],
                  "console_base": counters["console"] - console_lines, "created": time.time()}
        try:
            self.db[BATCHES].insert_one(intent)
        except DuplicateKeyError:  # the same batch, sent twice at once: the first intent wins
            found = self.db[BATCHES].find_one({"_id": key})
            return None if found is None or found["state"] == "done" else found
        return intent

    def _absorb(self, task_id: str, batch_id: str, ordinal: int, index: int, metric: str, variant: str,
                points: np.ndarray) -> SeriesSummary:
        """Fold a batch's points into the series summary, once even if the batch is retried."""
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        values = points["value"]
        finite = values[~np.isnan(values)]
        change: dict[str, Any] = {
            # Two scalars, not an array: MongoDB sorts an array by its smallest element.
            "$setOnInsert": {"task": task_id, "metric": metric, "variant": variant, "first_ordinal": ordinal,
                             "first_index": index},
            "$inc": {"count": len(points)},
            "$set": {"last": _num(values[-1]), "last_iteration": int(points["iteration"][-1]),
                     "last_batch": batch_id},
        }
        if len(finite):
            change["$min"] = {"min": float(finite.min())}
            change["$max"] = {"max": float(finite.max())}
        key = _series_id(task_id, metric, variant)
        try:
            doc = self.db[SERIES].find_one_and_update({"_id": key, "last_batch": {"$ne": batch_id}}, change,
                                                      upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # this batch was already absorbed before a crash or a retry
            doc = self.db[SERIES].find_one({"_id": key})
        return _summary(doc)

    # -- reading ---------------------------------------------------------------------------

    def list_series(self, task_id: str) -> list[SeriesSummary]:
        check_id(task_id, "task id")
        with self._errors(f"series of task {task_id}"):
            found = self.db[SERIES].find({"task": task_id}).sort([("first_ordinal", 1), ("first_index", 1)])
            return [_summary(d) for d in found]

    def read_points(self, task_id: str, metric: str, variant: str) -> np.ndarray:
        check_id(task_id, "task id")
        with self._errors(f"series of task {task_id}"):
            buckets = self.db[SCALARS].find({"task": task_id, "metric": metric, "variant": variant},
                                            {"points": 1}).sort([("ordinal", 1), ("part", 1)])
            return _concat(bytes(b["points"]) for b in buckets)

    def read_series(self, task_id: str, metric: str, variant: str, max_points: int | None = None) -> dict[str, Any]:
        check_id(task_id, "task id")
        with self._errors(f"series of task {task_id}"):
            if self.db[SERIES].find_one({"_id": _series_id(task_id, metric, variant)}, {"_id": 1}) is None:
                raise KeyError(f"no series {metric}/{variant}")
        points = self.read_points(task_id, metric, variant)
        total = len(points)
        if max_points is not None and total > max_points:
            points = points[minmax_indices(points["value"], max_points)]
        values = [None if math.isnan(v) else v for v in points["value"].tolist()]
        return {"metric": metric, "variant": variant, "total": total, "downsampled": len(points) < total,
                "iterations": points["iteration"].tolist(), "values": values,
                "timestamps": points["time"].tolist()}

    def read_console(self, task_id: str, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        check_id(task_id, "task id")
        with self._errors(f"console of task {task_id}"):
            counters = self.db[TASKS].find_one({"_id": task_id}, {"console": 1})
            total = int(counters["console"]) if counters else 0
            if start < 0:
                start = max(0, total + start)
            end = min(total, start + limit)
            if start >= end:
                return [], total
            # The bucket holding line ``start`` begins at or before it: find where, then read on.
            first = list(self.db[CONSOLE].find({"task": task_id, "first_n": {"$lte": start}}, {"first_n": 1})
                         .sort([("first_n", -1)]).limit(1))
            low = first[0]["first_n"] if first else start
            buckets = self.db[CONSOLE].find({"task": task_id, "first_n": {"$gte": low, "$lt": end}},
                                            {"first_n": 1, "lines": 1, "ts": 1, "streams": 1}).sort([("first_n", 1)])
            lines = []
            for bucket in buckets:
                for i, text in enumerate(bucket["lines"]):
                    n = bucket["first_n"] + i
                    if start <= n < end:
                        lines.append({"ts": bucket["ts"][i], "stream": STREAM_NAMES[bucket["streams"][i]],
                                      "line": text, "n": n})
        return lines, total

    def read_events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        check_id(task_id, "task id")
        query: dict[str, Any] = {"task": task_id}
        if kind is not None:
            query["kind"] = kind
        with self._errors(f"events of task {task_id}"):
            found = self.db[OTHER].find(query, {"raw": 1}).sort([("ordinal", 1), ("i", 1)])
            return [orjson.loads(bytes(d["raw"])) for d in found]

    def delete_task(self, task_id: str) -> None:
        check_id(task_id, "task id")
        with self._errors(f"deleting events of task {task_id}"):
            for collection in (SCALARS, CONSOLE, OTHER, SERIES, BATCHES):
                self.db[collection].delete_many({"task": task_id})
            self.db[TASKS].delete_one({"_id": task_id})

    def task_ids(self) -> list[str]:
        """Every task that has events (used by the migration's verification)."""
        with self._errors("listing tasks with events"):
            return sorted(d["_id"] for d in self.db[TASKS].find({}, {"_id": 1}))


def _merge_groups(groups: Iterable[dict[str, Any]]) -> list[tuple[str, str, np.ndarray]]:
    """Scalar groups as point arrays, one per series, in order of first appearance."""
    merged: dict[tuple[str, str], list[np.ndarray]] = {}
    for group in groups:
        points = _points_array(group)
        if len(points):
            merged.setdefault((group["metric"], group["variant"]), []).append(points)
    return [(m, v, parts[0] if len(parts) == 1 else np.concatenate(parts)) for (m, v), parts in merged.items()]


def _points_array(group: dict[str, Any]) -> np.ndarray:
    iterations = group["iterations"]
    timestamps = group.get("timestamps")
    points = np.empty(len(iterations), dtype=POINT)
    points["iteration"] = iterations
    points["value"] = np.array(group["values"], dtype=np.float64)  # None -> nan
    points["time"] = timestamps if timestamps is not None else time.time()
    return points


def _concat(chunks: Iterable[bytes]) -> np.ndarray:
    data = b"".join(chunks)
    return np.frombuffer(data, dtype=POINT).copy() if data else np.empty(0, dtype=POINT)


def _insert_idempotent(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert documents whose ids are derived from their batch; those already there are kept."""
    from pymongo.errors import BulkWriteError

    if not docs:
        return
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", ())):
            raise


def _summary(doc: dict[str, Any]) -> SeriesSummary:
    return SeriesSummary(metric=doc["metric"], variant=doc["variant"], count=int(doc.get("count", 0)),
                         last=doc.get("last"), last_iteration=doc.get("last_iteration"),
                         min=doc.get("min"), max=doc.get("max"))


def _console_buckets(task_id: str, batch_id: str, base: int, console: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch's console lines as bucket documents, numbered from ``base``, ids fixed by the batch."""
    now = time.time()
    buckets: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    size = 0
    for i, entry in enumerate(console):
        text = _clip(entry.get("line", ""))
        if current is None or len(current["lines"]) >= BUCKET_LINES or size + len(text) > BUCKET_LINE_CHARS:
            current = {"_id": f"{task_id}/{batch_id}/c{len(buckets)}", "task": task_id, "first_n": base + i,
                       "lines": [], "ts": [], "streams": ""}
            buckets.append(current)
            size = 0
        current["lines"].append(text)
        current["ts"].append(entry.get("ts") or now)
        current["streams"] += STREAMS.get(entry.get("stream", "stdout"), "o")
        size += len(text)
    return buckets


def _series_id(task_id: str, metric: str, variant: str) -> str:
    return f"{task_id}\x1f{metric}\x1f{variant}"


def _clip(text: str) -> str:
    return text[:MAX_LINE] + "…[truncated]" if len(text) > MAX_LINE else text


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
