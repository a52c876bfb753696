"""Dataset versions: git-like, content-addressed, immutable once finalized.

A version document is small whatever the dataset's size: its file list is a manifest blob
(``fleetdeck._dataset_manifest``) and the document holds only that blob's sha256 and the counts
the server computed from it. File contents are ordinary blobs, so a version uploads only the
content the server does not have yet (``POST /blobs/missing`` answers that for many files at
once), across versions and across datasets.

Life of a version: ``POST /datasets`` makes a draft with the next version number of its
(project, name); the client uploads content and the manifest and ``PATCH``es the manifest's
sha256 on; ``POST /datasets/{id}/finalize`` checks every file's blob is stored and freezes it.
A finalized version refuses every change but its tags. Tasks that read a version are recorded
with ``POST /datasets/{id}/readers`` (input lineage), which also lists the version among the
task's input artifacts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetdeck._dataset_manifest import BadManifest, HostilePath, Manifest, decode, diff, merge, totals
from fleetdeck.server_lite.deps import Principal, State
from fleetdeck.server_lite.names import BadName, check_name, check_sha256
from fleetdeck.server_lite.routes.blobs import ARTIFACTS, artifact_id
from fleetdeck.server_lite.routes.projects import ensure_project, project_id_for
from fleetdeck.server_lite.routes.tasks import load_task
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import Document, DuplicateId, StoreError, StoreFull
from fleetdeck.server_lite.tasks import new_id

router = APIRouter(tags=["datasets"])
DATASETS = "datasets"
COUNTERS = "dataset_counters"
READERS = "dataset_readers"
MISSING_MAX = 100_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetCreate(_Strict):
    name: Name
    project: Name
    parents: list[Id] = Field(default_factory=list, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""


class DatasetUpdate(_Strict):
    """Fields of a draft; only ``tags`` may change once the version is finalized."""

    manifest: Sha256 | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class MissingQuery(_Strict):
    sha256: list[Sha256] = Field(max_length=MISSING_MAX)


class ReaderCreate(_Strict):
    task_id: Id


@router.post("/blobs/missing", tags=["blobs"])
def missing_blobs(body: MissingQuery, state: State, principal: Principal) -> dict[str, list[str]]:
    """Which of these blobs the server does not have (at most 100,000 per request), in request order."""
    seen: set[str] = set()
    missing = []
    for sha in body.sha256:
        if sha not in seen:
            seen.add(sha)
            if not state.blobs.exists(sha):
                missing.append(sha)
    return {"missing": missing}


SMALL_BLOB_MAX = 1 << 20
"""Largest blob accepted by ``POST /blobs/batch``; larger files use the chunked, resumable upload."""
BATCH_MAX_BLOBS = 10_000
_SYNC_THREADS = 32


_BINARY_BODY = {"requestBody": {"content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


@router.post("/blobs/batch", tags=["blobs"], openapi_extra=_BINARY_BODY)
async def put_small_blobs(request: Request, state: State, principal: Principal) -> dict[str, int]:
    """Store many small blobs in one request (datasets of 100,000 small files would otherwise cost
    three requests per file).

    Body: an 8-byte big-endian length, a JSON list ``[[sha256, size], ...]`` of that length, then
    the contents back to back. Each blob is verified against its sha256 and published atomically
    (temp file, ``fdatasync``, rename); one that is already stored is skipped, so a retried batch
    is harmless. A blob that does not match its sha256 fails the request (422) naming it; the
    blobs before it, being verified content, stay stored.
    """
    body = await request.body()
    return await run_in_threadpool(_store_batch, state, body)


def _store_batch(state: ServerState, body: bytes) -> dict[str, int]:
    view = memoryview(body)
    try:
        header_len = int.from_bytes(view[:8], "big")
        entries = json.loads(bytes(view[8:8 + header_len]))
        pairs = [(check_sha256(sha), int(size)) for sha, size in entries]
    except (ValueError, TypeError, OverflowError, BadName) as exc:
        raise HTTPException(400, f"batch header is malformed: {exc}") from None
    if len(pairs) > BATCH_MAX_BLOBS:
        raise HTTPException(400, f"a batch holds at most {BATCH_MAX_BLOBS} blobs, not {len(pairs)}")
    offset = 8 + header_len
    if any(size < 0 or size > SMALL_BLOB_MAX for _, size in pairs) or \
            offset + sum(size for _, size in pairs) != len(body):
        raise HTTPException(400, f"batch sizes must be 0..{SMALL_BLOB_MAX} and add up to the body's length")
    todo: list[tuple[Path, memoryview]] = []
    bad: str | None = None
    present = 0
    for sha, size in pairs:
        data = view[offset:offset + size]
        offset += size
        final = state.blobs.path(sha)
        if final.is_file():
            present += 1
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            bad = sha
            break
        todo.append((final, data))
    # fdatasync from many threads at once: the filesystem folds them into a few journal commits
    with ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="fd-batch") as pool:
        list(pool.map(lambda item: _publish(state, *item), todo))
    if bad is not None:
        raise HTTPException(422, f"blob {bad[:12]} in the batch does not hash to its sha256; "
                                 f"{len(todo)} blobs before it were stored")
    return {"stored": len(todo), "present": present}


def _publish(state: ServerState, final: Path, data: memoryview) -> None:
    tmp = state.blobs.uploads / f"{final.name}.{uuid.uuid4().hex}.batch"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull("disk full: cannot store the batch") from None
        raise StoreError(f"cannot store the batch: {exc.strerror}") from None


def load_dataset(state: ServerState, dataset_id: str) -> Document:
    found = state.store.get(DATASETS, dataset_id)
    if found is None:
        raise HTTPException(404, f"no dataset version {dataset_id!r}")
    return found


def _next_version(state: ServerState, project_id: str, name: str) -> int:
    """Atomically take the next version number of (project, name); concurrent creates never share one."""
    key = hashlib.sha256(f"{project_id}\0{name}".encode()).hexdigest()[:32]
    try:
        state.store.insert(COUNTERS, {"id": key, "last": 0})
    except DuplicateId:
        pass
    counter = state.store.find_one_and_update(COUNTERS, {"id": key}, {"$inc": {"last": 1}})
    assert counter is not None
    return int(counter["last"])


@router.post("/datasets", status_code=201)
def create_dataset(body: DatasetCreate, state: State, principal: Principal) -> Document:
    """Create a draft version; its version number is one more than the last of its (project, name)."""
    try:
        name = check_name(body.name, "dataset name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None
    project = ensure_project(state, body.project)
    for parent_id in body.parents:
        parent = load_dataset(state, parent_id)
        if parent["status"] != "final":
            raise HTTPException(409, f"parent {parent_id} is a draft; finalize it before building on it")
    now = state.clock.now()
    doc = {"id": new_id(), "name": name, "project": project["id"], "project_name": project["name"],
           "version": _next_version(state, project["id"], name), "parents": list(dict.fromkeys(body.parents)),
           "status": "draft", "tags": body.tags, "description": body.description, "user": principal["name"],
           "created": now, "finalized": None, "manifest": None, "files": 0, "size": 0,
           "added": 0, "modified": 0, "removed": 0}
    return state.store.insert(DATASETS, doc)


@router.get("/datasets")
def list_datasets(
    state: State,
    project: str | None = None,
    name: str | None = None,
    version: int | None = None,
    status: Literal["draft", "final"] | None = None,
    tag: Annotated[list[str] | None, Query(description="versions having all these tags")] = None,
    id: Annotated[list[str] | None, Query(description="version ids (repeatable)")] = None,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Versions, newest first (by project, then name, then version number descending)."""
    query: dict[str, Any] = {}
    if project is not None:
        query["project"] = project_id_for(project)
    if name is not None:
        query["name"] = name
    if version is not None:
        query["version"] = version
    if status is not None:
        query["status"] = status
    if tag:
        query["tags"] = {"$all": tag}
    if id:
        query["id"] = {"$in": id}
    items = state.store.find(DATASETS, query, sort=[("created", -1)], limit=page_size)
    return {"items": items}


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, state: State) -> Document:
    return load_dataset(state, dataset_id)


def _read_manifest(state: ServerState, sha256: str) -> Manifest:
    path = state.blobs.path(sha256)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise HTTPException(409, f"manifest blob {sha256[:12]} is not uploaded") from None
    try:
        return decode(blob)
    except (BadManifest, HostilePath) as exc:
        raise HTTPException(422, f"manifest {sha256[:12]} refused: {exc}") from None


def _manifest_fields(state: ServerState, doc: Document, sha256: str) -> dict[str, Any]:
    """Counts the server computes itself from the manifest and its parents' manifests."""
    manifest = _read_manifest(state, sha256)
    parents = [_read_manifest(state, load_dataset(state, p)["manifest"]) for p in doc["parents"]]
    changes = diff(merge(parents), manifest)
    return {"manifest": sha256, **totals(manifest), **changes.counts()}


def _refuse_final(doc: Document) -> None:
    raise HTTPException(409, f"dataset {doc['name']!r} version {doc['version']} is finalized and "
                             "cannot change; create a new version with it as parent")


@router.patch("/datasets/{dataset_id}")
def update_dataset(dataset_id: str, body: DatasetUpdate, state: State, principal: Principal) -> Document:
    doc = load_dataset(state, dataset_id)
    fields = body.model_dump(exclude_none=True)
    if doc["status"] == "final" and fields.keys() - {"tags"}:
        _refuse_final(doc)
    if "manifest" in fields:
        fields.update(_manifest_fields(state, doc, fields["manifest"]))
    if not fields:
        return doc
    where = None if fields.keys() == {"tags"} else {"status": "draft"}
    updated = state.store.update(DATASETS, dataset_id, {"$set": fields}, where=where)
    if updated is None:
        _refuse_final(doc)
    return updated


@router.post("/datasets/{dataset_id}/finalize")
def finalize_dataset(dataset_id: str, state: State, principal: Principal) -> Document:
    """Freeze a draft once every file it lists is stored; finalizing a final version is a no-op."""
    doc = load_dataset(state, dataset_id)
    if doc["status"] == "final":
        return doc
    if not doc["manifest"]:
        raise HTTPException(409, f"dataset {doc['name']!r} version {doc['version']} has no uploaded "
                                 "manifest; upload it first")
    manifest = _read_manifest(state, doc["manifest"])
    absent = {sha for sha in {e.sha256 for e in manifest.values()} if not state.blobs.exists(sha)}
    if absent:
        raise HTTPException(409, f"{len(absent)} file contents of dataset {doc['name']!r} are not uploaded "
                                 f"(e.g. blob {min(absent)[:12]}); upload them first")
    updated = state.store.update(DATASETS, dataset_id, {"$set": {"status": "final",
                                                                 "finalized": state.clock.now()}},
                                 where={"status": "draft", "manifest": doc["manifest"]})
    if updated is None:
        raise HTTPException(409, f"dataset {dataset_id} changed while it was being finalized; retry")
    return updated


@router.post("/datasets/{dataset_id}/readers", status_code=201)
def add_reader(dataset_id: str, body: ReaderCreate, state: State, principal: Principal) -> Document:
    """Record that a task read this version (input lineage); also listed as the task's input artifact."""
    doc = load_dataset(state, dataset_id)
    task = load_task(state, body.task_id)
    now = state.clock.now()
    reader_id = hashlib.sha256(f"{dataset_id}\0{task['id']}".encode()).hexdigest()[:32]
    existing = state.store.get(READERS, reader_id)
    reader = {"id": reader_id, "dataset": dataset_id, "task": task["id"],
              "first_read": existing["first_read"] if existing else now, "last_read": now}
    state.store.upsert(READERS, reader)
    name = f"dataset {doc['name']} v{doc['version']}"
    state.store.upsert(ARTIFACTS, {
        "id": artifact_id(task["id"], name, "input"), "name": name, "kind": "artifact", "mode": "input",
        "sha256": doc["manifest"], "size": doc["size"], "uri": f"dataset://{dataset_id}",
        "content_type": "application/x-fleetdeck-dataset", "task": task["id"], "project": task["project"],
        "created": now, "metadata": {"dataset_id": dataset_id, "dataset_name": doc["name"],
                                     "dataset_project": doc["project_name"], "version": doc["version"]}})
    return reader


@router.get("/datasets/{dataset_id}/readers")
def list_readers(dataset_id: str, state: State) -> dict[str, Any]:
    """Tasks that read this version, most recent read first, with their name and status."""
    load_dataset(state, dataset_id)
    reads = state.store.find(READERS, {"dataset": dataset_id}, sort=[("last_read", -1)])
    found = state.store.find("tasks", {"id": {"$in": [r["task"] for r in reads]}},
                             fields=["id", "name", "status", "project_name"])
    tasks = {t["id"]: t for t in found}
    items = []
    for read in reads:
        task = tasks.get(read["task"], {})  # a deleted task keeps its read record, without a name
        items.append({**read, "task_name": task.get("name"), "task_status": task.get("status"),
                      "project_name": task.get("project_name")})
    return {"items": items}
