"""Copy an embedded server's data into MongoDB, resumably, then verify the copy.

``fleetdeck server migrate --from DATA_DIR --to mongodb://...`` runs :func:`migrate`:

1. **Documents**, collection by collection, in batches of idempotent upserts. After each batch the
   number of documents done is saved in the target's ``_migration`` collection, so an interrupted
   run resumes where it stopped (a source collection whose size changed since is copied again
   from its start; upserts make that harmless).
2. **Events**, task by task, through :class:`MongoEventStore` with batch ids derived from their
   position (``migrate-s3-0`` ...), so a batch that already landed is skipped as a duplicate; a
   task is marked done in ``_migration`` once all its events are in.
3. **Blobs** stay content-addressed files. The MongoDB-backed servers read them from their
   ``--data-dir``'s ``blobs/``, which must be one shared filesystem; ``blobs_to`` copies the
   source's blob files there, re-hashing each one on the way.
4. **Verification**: per collection, and per event kind, the counts and a sha256 over a canonical
   encoding of every record must be equal on both sides; every ``sha256`` a document refers to
   must exist in the blob folder the servers will use.

The source's lock is held throughout, so the embedded server must be stopped first (a live server
would keep writing behind the copy).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fleetdeck.server_lite.events import FileEventStore
from fleetdeck.server_lite.names import ID_RE, SHA256_RE
from fleetdeck.server_lite.store.embedded import EmbeddedStore
from fleetdeck.server_lite.store.mongo import MongoStore, to_mongo
from fleetdeck.server_lite.store.mongo_events import MongoEventStore

CHECKPOINTS = "_migration"
DOC_BATCH = 1000
POINT_BATCH = 50_000
CONSOLE_BATCH = 10_000
EVENT_BATCH = 1000

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as each phase advances (the CLI draws bars with it)."""


class MigrationError(Exception):
    """The migration cannot start or go on (named reason; nothing already copied is lost)."""


@dataclass
class Check:
    """One line of the verification: the same records on both sides?"""

    what: str
    source_count: int
    target_count: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_count == self.target_count and self.source_sha256 == self.target_sha256


@dataclass
class MigrationReport:
    documents: dict[str, int] = field(default_factory=dict)
    """Documents copied by this run, per collection (resumed work not counted again)."""
    event_tasks: int = 0
    """Tasks whose events this run copied."""
    resumed_tasks: int = 0
    """Tasks whose events an earlier run had already copied."""
    blobs_copied: int = 0
    checks: list[Check] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)
    """Blobs referenced by a document but absent from the servers' blob folder."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.missing_blobs


def migrate(source_dir: Path, target: MongoStore, *, blobs_to: Path | None = None, verify: bool = True,
            progress: Progress | None = None) -> MigrationReport:
    """Copy the embedded store in ``source_dir`` into ``target`` and verify the copy.

    Args:
        source_dir: an embedded server's data directory (holding ``docs/`` and ``events/``).
        target: the open MongoDB store to fill.
        blobs_to: the shared blob folder of the MongoDB-backed servers; the source's blob files
            are copied there. None: the servers will use ``source_dir/blobs`` itself.
        verify: run the verification pass (counts and checksums).
        progress: progress callback.

    Raises:
        MigrationError: the source is missing or in use by a running server.
    """
    from fleetdeck.server_lite.store.base import DataDirLocked

    docs_dir = source_dir / "docs"
    if not docs_dir.is_dir():
        raise MigrationError(f"{source_dir} is not a fleetdeck data directory (no docs/ folder)")
    try:
        source = EmbeddedStore(docs_dir)
    except DataDirLocked as exc:
        raise MigrationError(f"{exc}; stop that server before migrating") from None
    report = MigrationReport()
    source_events = FileEventStore(source_dir / "events")
    target_events = MongoEventStore(target)
    tick = progress or (lambda phase, done, total: None)
    try:
        _copy_documents(source, target, report, tick)
        _copy_events(source_dir / "events", source_events, target, target_events, report, tick)
        blob_root = blobs_to if blobs_to is not None else source_dir / "blobs"
        if blobs_to is not None:
            report.blobs_copied = _copy_blobs(source_dir / "blobs", blobs_to, tick)
        if verify:
            report.checks = [*_verify_documents(source, target, tick),
                             *_verify_events(source_dir / "events", source_events, target_events, tick)]
            report.missing_blobs = _missing_blobs(source, source_events, _event_tasks(source_dir / "events"),
                                                  blob_root)
    finally:
        source_events.close()
        source.close()
    return report


# -- documents -------------------------------------------------------------------------------

def _checkpoint(target: MongoStore, key: str) -> dict[str, Any]:
    with target.translate_errors("reading the migration checkpoint"):
        return target.db[CHECKPOINTS].find_one({"_id": key}) or {}


def _save_checkpoint(target: MongoStore, key: str, fields: dict[str, Any]) -> None:
    with target.translate_errors("saving the migration checkpoint"):
        target.db[CHECKPOINTS].update_one({"_id": key}, {"$set": fields}, upsert=True)


def _put_documents(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert a batch in one round trip; documents already there (a resumed batch) are replaced."""
    from pymongo.errors import BulkWriteError

    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", ())
        if any(err.get("code") != 11000 for err in errors):
            raise
        for err in errors:
            doc = docs[err["index"]]
            collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)


def _copy_documents(source: EmbeddedStore, target: MongoStore, report: MigrationReport, tick: Progress) -> None:
    names = source.collections()
    total = sum(source.count(n) for n in names)
    done_overall = 0
    for name in names:
        docs = source.find(name)
        mark = _checkpoint(target, f"docs/{name}")
        start = mark.get("done", 0) if mark.get("source_count") == len(docs) else 0
        done_overall += start
        tick("documents", done_overall, total)
        copied = 0
        for offset in range(start, len(docs), DOC_BATCH):
            chunk = docs[offset:offset + DOC_BATCH]
            with target.translate_errors(f"copying {name}"):
                _put_documents(target.db[name], [to_mongo(d) for d in chunk])
            copied += len(chunk)
            done_overall += len(chunk)
            _save_checkpoint(target, f"docs/{name}", {"done": offset + len(chunk), "source_count": len(docs)})
            tick("documents", done_overall, total)
        report.documents[name] = copied
    tick("documents", total, total)


# -- events ----------------------------------------------------------------------------------

def _event_tasks(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ID_RE.fullmatch(p.name))


def _copy_events(root: Path, source: FileEventStore, target: MongoStore, events: MongoEventStore,
                 report: MigrationReport, tick: Progress) -> None:
    tasks = _event_tasks(root)
    for done, task_id in enumerate(tasks):
        tick("events", done, len(tasks))
        if _checkpoint(target, f"events/{task_id}").get("done"):
            report.resumed_tasks += 1
            continue
        for batch in _event_batches(source, task_id):
            events.append(task_id, batch)
        _save_checkpoint(target, f"events/{task_id}", {"done": True})
        report.event_tasks += 1
    tick("events", len(tasks), len(tasks))


def _event_batches(source: FileEventStore, task_id: str) -> Iterator[dict[str, Any]]:
    """A task's events as batches with ids fixed by their position, so a rerun is a no-op."""
    for n, summary in enumerate(source.list_series(task_id)):
        points = source.read_points(task_id, summary.metric, summary.variant)
        for part, start in enumerate(range(0, len(points), POINT_BATCH)):
            chunk = points[start:start + POINT_BATCH]  # arrays, not lists: NaN and bits kept exactly
            yield {"batch_id": f"migrate-s{n}-{part}", "scalars": [{
                "metric": summary.metric, "variant": summary.variant, "iterations": chunk["iteration"],
                "values": chunk["value"], "timestamps": chunk["time"]}]}
    page = 0
    while True:
        lines, _total = source.read_console(task_id, page * CONSOLE_BATCH, CONSOLE_BATCH)
        if not lines:
            break
        yield {"batch_id": f"migrate-c{page}",
               "console": [{"ts": e["ts"], "stream": e["stream"], "line": e["line"]} for e in lines]}
        page += 1
    others = source.read_events(task_id)
    for part, start in enumerate(range(0, len(others), EVENT_BATCH)):
        yield {"batch_id": f"migrate-e{part}", "events": others[start:start + EVENT_BATCH]}


# -- blobs -----------------------------------------------------------------------------------

def _blob_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("??/*") if SHA256_RE.fullmatch(p.name) and p.parent.name == p.name[:2])


def _copy_blobs(source: Path, target: Path, tick: Progress) -> int:
    """Copy blob files not yet in ``target``, each re-hashed before it becomes visible."""
    files = _blob_files(source)
    copied = 0
    for done, path in enumerate(files):
        tick("blobs", done, len(files))
        final = target / path.parent.name / path.name
        if final.exists() and final.stat().st_size == path.stat().st_size:
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".migrating")
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(8 * 1024 * 1024):
                digest.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != path.name:
            tmp.unlink()
            raise MigrationError(f"blob {path} does not hash to its name: the source is damaged")
        os.replace(tmp, final)
        copied += 1
    tick("blobs", len(files), len(files))
    return copied


def _blob_refs(value: Any) -> Iterator[str]:
    """Every ``sha256`` field in a document, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "sha256" and isinstance(item, str) and SHA256_RE.fullmatch(item):
                yield item
            else:
                yield from _blob_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _blob_refs(item)


def _missing_blobs(source: EmbeddedStore, events: FileEventStore, tasks: list[str], blob_root: Path) -> list[str]:
    """Blobs that documents (artifacts, models, datasets) or events (debug images) refer to but are absent."""
    refs = {ref for name in source.collections() for doc in source.find(name) for ref in _blob_refs(doc)}
    refs.update(ref for task_id in tasks for ref in _blob_refs(events.read_events(task_id)))
    return sorted(ref for ref in refs if not (blob_root / ref[:2] / ref).is_file())


# -- verification ----------------------------------------------------------------------------

def _digest(records: Iterable[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for record in records:
        digest.update(len(record).to_bytes(8, "little"))
        digest.update(record)
        count += 1
    return count, digest.hexdigest()


def _canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _verify_documents(source: EmbeddedStore, target: MongoStore, tick: Progress) -> list[Check]:
    checks = []
    names = source.collections()
    for done, name in enumerate(names):
        tick("verifying documents", done, len(names))
        src = sorted(source.find(name), key=lambda d: d["id"])
        dst = sorted(target.find(name), key=lambda d: d["id"])
        s_count, s_sum = _digest(_canonical(d) for d in src)
        t_count, t_sum = _digest(_canonical(d) for d in dst)
        checks.append(Check(f"documents: {name}", s_count, t_count, s_sum, t_sum))
    tick("verifying documents", len(names), len(names))
    return checks


EVENT_KINDS = ("series", "points", "console lines", "other events")


def _task_records(events: FileEventStore | MongoEventStore, task_id: str) -> dict[str, tuple[int, list[bytes]]]:
    """A task's events per kind: how many, and their canonical encodings (what both sides must agree on).

    Points are encoded per series (one record of packed arrays) but counted one by one.
    """
    series_records, point_records, points = [], [], 0
    for summary in events.list_series(task_id):
        series_records.append(_canonical(summary.as_dict()))
        packed = events.read_points(task_id, summary.metric, summary.variant)
        point_records.append(_canonical([summary.metric, summary.variant]) + packed.tobytes())
        points += len(packed)
    lines: list[bytes] = []
    while True:
        page, _ = events.read_console(task_id, len(lines), CONSOLE_BATCH)
        if not page:
            break
        lines.extend(_canonical(line) for line in page)
    others = [_canonical(e) for e in events.read_events(task_id)]
    return {"series": (len(series_records), series_records), "points": (points, point_records),
            "console lines": (len(lines), lines), "other events": (len(others), others)}


def _verify_events(root: Path, source: FileEventStore, target: MongoEventStore, tick: Progress) -> list[Check]:
    tasks = _event_tasks(root)
    totals = {side: {kind: [0, hashlib.sha256()] for kind in EVENT_KINDS} for side in ("source", "target")}
    with_events = []
    for done, task_id in enumerate(tasks):
        tick("verifying events", done, len(tasks))
        for side, events in (("source", source), ("target", target)):
            records = _task_records(events, task_id)
            if side == "source" and any(count for count, _ in records.values()):
                with_events.append(task_id)
            for kind, (count, items) in records.items():
                digest = _digest(items)[1]
                totals[side][kind][0] += count
                totals[side][kind][1].update(task_id.encode() + digest.encode())
    tick("verifying events", len(tasks), len(tasks))
    checks = [Check(f"events: {kind}", totals["source"][kind][0], totals["target"][kind][0],
                    totals["source"][kind][1].hexdigest(), totals["target"][kind][1].hexdigest())
              for kind in EVENT_KINDS]
    target_tasks = target.task_ids()
    checks.append(Check("events: tasks", len(with_events), len(target_tasks),
                        _digest(t.encode() for t in with_events)[1], _digest(t.encode() for t in target_tasks)[1]))
    return checks
