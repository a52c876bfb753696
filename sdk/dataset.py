"""Versioned datasets with ClearML Data's API: only what changed is stored.

::

    from fleetdeck import Dataset

    v1 = Dataset.create(dataset_name="images", dataset_project="vision")
    v1.add_files("data/")
    v1.upload()
    v1.finalize()

    v2 = Dataset.create(dataset_name="images", dataset_project="vision", parent_datasets=[v1.id])
    v2.add_files("data/")             # re-hashes the folder; unchanged files cost nothing to upload
    v2.remove_files("data/old/*")
    v2.finalize()                     # uploads new content and the manifest, then freezes v2

    path = Dataset.get(dataset_name="images", dataset_project="vision").get_local_copy()

A version is a manifest of (path, size, sha256, mode) stored as a blob; contents are blobs keyed
by their sha256, so a file already on the server (from any version of any dataset) is never
uploaded again. A version starts as the merge of its parents; ``list_added_files`` and friends
compare against that. Getting a version inside a running task records it as the task's input.

A draft's working state (its file list and where each new file's content is on disk) is kept
under ``$XDG_DATA_HOME/fleetdeck/dataset-drafts`` so that ``fleetdeck data add`` and ``fleetdeck data
upload`` can run as separate commands, as with ``clearml-data``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetdeck import _dataset_manifest as manifests
from fleetdeck._dataset_files import SourceFile, default_workers, hash_files, scan
from fleetdeck._dataset_local import LocalCopies, VerifyReport
from fleetdeck._dataset_manifest import FileEntry, HostilePath, Manifest, ManifestDiff
from fleetdeck._dataset_progress import ProgressFactory, no_progress, text_progress
from fleetdeck.client import Client, shared_client
from fleetdeck.config import data_home
from fleetdeck.errors import FleetdeckError, NotFound, RequestRejected

__all__ = ["Dataset", "DatasetError", "HostilePath", "ManifestDiff", "UploadStats", "VerifyReport"]

log = logging.getLogger("fleetdeck.dataset")
_MISSING_BATCH = 50_000
_SMALL_BLOB_MAX = 1 << 20
"""Files up to this size are uploaded many to a request (the server's ``/blobs/batch`` limit)."""
_BATCH_BYTES = 8 << 20
_BATCH_FILES = 2000
_ID = re.compile(r"^[0-9a-f]{32}$")
"""A server-made id (task or dataset version)."""


class DatasetError(FleetdeckError):
    """A dataset operation that cannot be done as asked (a final version changed, a file vanished)."""


@dataclass(frozen=True)
class UploadStats:
    """What ``upload`` sent: content the server already had is counted as skipped."""

    files: int
    """Files of the version whose content was checked."""
    files_uploaded: int
    bytes_uploaded: int
    bytes_skipped: int
    manifest_bytes: int
    """Size of the manifest blob (uploaded unless the server had it already)."""


class Dataset:
    """One version of a dataset: a draft that files are added to, or a finalized, immutable version.

    Create one with :meth:`create` or fetch one with :meth:`get`; do not call the constructor.
    """

    def __init__(self, client: Client, doc: dict[str, Any], manifest: Manifest, base: Manifest,
                 sources: dict[str, str] | None = None) -> None:
        self._client = client
        self._doc = doc
        self._manifest = manifest
        self._base = base
        """The merged parents' manifest: what "added", "modified" and "removed" compare against."""
        self._sources = sources or {}
        """Dataset path -> local file holding its content, for files added in this draft."""
        self._uploaded = doc.get("manifest")

    # -- identity --------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self._doc["id"])

    @property
    def name(self) -> str:
        return str(self._doc["name"])

    @property
    def project(self) -> str:
        return str(self._doc["project_name"])

    @property
    def version(self) -> int:
        """Version number within (project, name), given by the server: 1, 2, 3, ..."""
        return int(self._doc["version"])

    @property
    def parents(self) -> list[str]:
        return list(self._doc["parents"])

    @property
    def tags(self) -> list[str]:
        return list(self._doc["tags"])

    @property
    def is_final(self) -> bool:
        return self._doc["status"] == "final"

    @property
    def file_count(self) -> int:
        return len(self._manifest)

    @property
    def size(self) -> int:
        """Total bytes of the version's files."""
        return sum(e.size for e in self._manifest.values())

    @property
    def document(self) -> dict[str, Any]:
        """The server's record of this version (counts, status, timestamps)."""
        return dict(self._doc)

    def __repr__(self) -> str:
        state = "final" if self.is_final else "draft"
        return (f"<Dataset {self.project}/{self.name} v{self.version} {state} {self.file_count} files "
                f"id={self.id}>")

    # -- creating and finding --------------------------------------------------------------

    @classmethod
    def create(cls, dataset_name: str, dataset_project: str,
               parent_datasets: Sequence[str | Dataset] | None = None,
               dataset_tags: Sequence[str] | None = None,
               description: str = "", client: Client | None = None) -> Dataset:
        """Create a draft version; it starts with its parents' files (later parents win).

        Args:
            dataset_name: the dataset's name; versions of one (project, name) are numbered 1, 2, ...
            dataset_project: project it belongs to.
            parent_datasets: finalized versions (ids or ``Dataset`` objects) this one builds on.
            dataset_tags: tags of the new version.
            description: free text.
            client: a client (default: the configured server).
        """
        client = client or shared_client()
        parent_ids = [p.id if isinstance(p, Dataset) else p for p in parent_datasets or []]
        doc = client.post("/datasets", {"name": dataset_name, "project": dataset_project,
                                        "parents": parent_ids, "tags": list(dataset_tags or []),
                                        "description": description})
        base = cls._parents_manifest(client, doc)
        return cls(client, doc, dict(base), base)  # no draft file yet: reopening starts from the parents

    @classmethod
    def get(cls, dataset_id: str | None = None, dataset_name: str | None = None,
            dataset_project: str | None = None, dataset_version: int | str | None = None,
            client: Client | None = None, record_lineage: bool = True) -> Dataset:
        """A version by id, or the latest finalized version of (project, name), or a given version number.

        Inside a running task (``Task.current_task()`` or ``$FLEETDECK_TASK_ID``) a finalized
        version is recorded as the task's input, so the version shows which experiments used it.
        Tools that only inspect versions (the TUI, ``fleetdeck data show``) pass
        ``record_lineage=False``.

        Raises:
            NotFound: no such version.
        """
        client = client or shared_client()
        doc = cls._resolve(client, dataset_id, dataset_name, dataset_project, dataset_version)
        dataset = cls._load(client, doc)
        if dataset.is_final and record_lineage:
            dataset._record_reader()
        return dataset

    @classmethod
    def list_datasets(cls, dataset_project: str | None = None, dataset_name: str | None = None,
                      tags: Sequence[str] | None = None,
                      client: Client | None = None) -> list[dict[str, Any]]:
        """Version documents, newest first."""
        client = client or shared_client()
        found = client.get("/datasets", project=dataset_project, name=dataset_name,
                           tag=list(tags or []) or None)
        return found["items"]  # type: ignore[no-any-return]

    @classmethod
    def _resolve(cls, client: Client, dataset_id: str | None, name: str | None, project: str | None,
                 version: int | str | None) -> dict[str, Any]:
        if dataset_id:
            return client.get(f"/datasets/{_seg(dataset_id)}")
        if not name or not project:
            raise DatasetError("Dataset.get needs dataset_id, or dataset_name and dataset_project")
        number = None
        if version is not None:
            try:
                number = int(str(version).lstrip("v"))
            except ValueError:
                raise DatasetError(f"dataset version must be a number, got {version!r}") from None
        items = client.get("/datasets", project=project, name=name, version=number,
                           status=None if number is not None else "final", page_size=1)["items"]
        if not items:
            which = f"version {number}" if number is not None else "finalized version"
            raise NotFound(f"no {which} of dataset {name!r} in project {project!r}")
        return items[0]

    @classmethod
    def _load(cls, client: Client, doc: dict[str, Any]) -> Dataset:
        base = cls._parents_manifest(client, doc)
        if doc["status"] == "draft":
            draft = _read_draft(doc["id"])
            if draft is not None:
                manifest, sources = draft
                return cls(client, doc, manifest, base, sources)
        manifest = _fetch_manifest(client, doc["manifest"]) if doc.get("manifest") else dict(base)
        return cls(client, doc, manifest, base)

    @staticmethod
    def _parents_manifest(client: Client, doc: Mapping[str, Any]) -> Manifest:
        parents = [client.get(f"/datasets/{_seg(p)}") for p in doc["parents"]]
        return manifests.merge(_fetch_manifest(client, p["manifest"]) for p in parents)

    # -- changing a draft ------------------------------------------------------------------

    def add_files(self, path: str | os.PathLike[str], wildcard: str | Sequence[str] | None = None,
                  recursive: bool = True, dataset_path: str | None = None,
                  progress: ProgressFactory | None = None, max_workers: int | None = None) -> int:
        """Add (or update) the files under ``path``; returns how many files were added or changed.

        Each file is hashed (streamed, in parallel); a file whose content and mode are unchanged
        does not count. Refuses, changing nothing, any path that could escape the root (a symlink
        leading out of it, ``..``) or that differs from another only by case or Unicode form.

        Args:
            path: a folder or a file.
            wildcard: file-name pattern(s), e.g. ``"*.jpg"``.
            recursive: include sub-folders.
            dataset_path: folder inside the dataset to put the files in (default: its root).
            progress: progress reporting (default: none).
            max_workers: hashing threads.
        """
        self._check_draft("add files to")
        files = scan(path, wildcard=wildcard, recursive=recursive, dataset_path=dataset_path)
        changed = self._add(files, progress, max_workers)
        self._save_draft()
        return changed

    def _add(self, files: list[SourceFile], progress: ProgressFactory | None, max_workers: int | None,
             dropping: Sequence[str] = ()) -> int:
        """Hash ``files`` into the working manifest.

        Collisions are checked before anything is hashed, so a refusal changes nothing.

        Args:
            dropping: paths about to be removed (a sync), which cannot collide with the new ones.
        """
        incoming = {f.dataset_path for f in files}
        leaving = incoming.union(dropping)
        manifests.check_collisions([*(p for p in self._manifest if p not in leaving), *incoming])
        sizes = [f.size for f in files]
        advance = (progress or no_progress)(f"hashing {len(files)} files", sum(sizes))
        hashes = hash_files([f.source for f in files], sizes=sizes, workers=max_workers, advance=advance)
        changed = 0
        for file, sha in zip(files, hashes):
            entry = FileEntry(sha, file.size, file.mode)
            if self._manifest.get(file.dataset_path) != entry:
                changed += 1
                self._manifest[file.dataset_path] = entry
            self._sources[file.dataset_path] = file.source
        return changed

    def sync_folder(self, local_path: str | os.PathLike[str], dataset_path: str | None = None,
                    progress: ProgressFactory | None = None,
                    max_workers: int | None = None) -> tuple[int, int]:
        """Make the dataset folder ``dataset_path`` mirror ``local_path``: add and update what is on disk,
        remove what is not.

        Returns:
            (files removed, files added or changed), as ClearML's ``sync_folder``.
        """
        self._check_draft("sync files into")
        folder = (dataset_path or "").strip("/")
        prefix = manifests.check_path(folder) + "/" if folder else ""
        files = scan(local_path, dataset_path=dataset_path)
        on_disk = {f.dataset_path for f in files}
        gone = [p for p in self._manifest if p.startswith(prefix) and p not in on_disk]
        changed = self._add(files, progress, max_workers, dropping=gone)
        for path in gone:
            del self._manifest[path]
            self._sources.pop(path, None)
        self._save_draft()
        return len(gone), changed

    def remove_files(self, dataset_path: str, recursive: bool = True) -> int:
        """Remove files matching a path pattern (``*`` matches across folders) or under a folder.

        Returns:
            How many files were removed.
        """
        self._check_draft("remove files from")
        pattern = dataset_path.strip("/")
        folder = pattern + "/"
        doomed = [p for p in self._manifest
                  if fnmatch.fnmatchcase(p, pattern) or (recursive and p.startswith(folder))]
        for path in doomed:
            del self._manifest[path]
            self._sources.pop(path, None)
        self._save_draft()
        return len(doomed)

    def add_tags(self, *tags: str) -> None:
        """Tag the version (allowed on finalized versions too)."""
        merged = list(dict.fromkeys([*self._doc["tags"], *tags]))
        self._doc = self._client.request("PATCH", f"/datasets/{self.id}", json={"tags": merged})

    def remove_tags(self, *tags: str) -> None:
        kept = [t for t in self._doc["tags"] if t not in tags]
        self._doc = self._client.request("PATCH", f"/datasets/{self.id}", json={"tags": kept})

    # -- uploading and finalizing ----------------------------------------------------------

    def upload(self, show_progress: bool = True, progress: ProgressFactory | None = None,
               max_workers: int | None = None) -> UploadStats:
        """Upload the content the server lacks, then the manifest; safe to call again after a failure.

        Content is asked for in batches (``POST /blobs/missing``), so a file already stored by any
        version of any dataset is not sent. Small files (up to 1 MiB) travel many to a request
        (``POST /blobs/batch``); larger ones are uploaded in chunks that resume where they stopped.

        Raises:
            DatasetError: a file changed or vanished since it was added.
        """
        self._check_draft("upload")
        progress = progress or (text_progress() if show_progress else no_progress)
        wanted: dict[str, tuple[str, int]] = {}
        for path, source in self._sources.items():
            entry = self._manifest.get(path)
            if entry is not None:
                wanted.setdefault(entry.sha256, (source, entry.size))
        missing = self._missing(list(wanted))
        total = sum(wanted[sha][1] for sha in missing)
        advance = progress(f"uploading {len(missing)} files", total)
        lock = threading.Lock()

        def locked_advance(n: int) -> None:
            with lock:
                advance(n)

        def send_large(sha: str) -> int:
            source, size = wanted[sha]
            _check_unchanged(source, size)
            try:
                self._client.upload_blob(source, sha256=sha, size=size, progress=locked_advance)
            except RequestRejected as exc:
                if exc.status_code == 422:
                    raise DatasetError(f"{source} changed since it was added (content hash differs); "
                                       "add it again") from None
                raise
            return size

        def send_small(batch: list[str]) -> int:
            header, contents = [], []
            for sha in batch:
                source, size = wanted[sha]
                _check_unchanged(source, size)
                with open(source, "rb") as fh:
                    data = fh.read()
                if len(data) != size or hashlib.sha256(data).digest().hex() != sha:
                    raise DatasetError(f"{source} changed since it was added (content hash differs); "
                                       "add it again")
                header.append([sha, size])
                contents.append(data)
            head = json.dumps(header).encode()
            body = b"".join([len(head).to_bytes(8, "big"), head, *contents])
            self._client.request("POST", "/blobs/batch", content=body, idempotent=True,
                                 headers={"Content-Type": "application/octet-stream"},
                                 timeout=max(self._client.settings.timeout_s, 60.0))
            sent = sum(wanted[sha][1] for sha in batch)
            locked_advance(sent)
            return sent

        small = [sha for sha in missing if wanted[sha][1] <= _SMALL_BLOB_MAX]
        large = [sha for sha in missing if wanted[sha][1] > _SMALL_BLOB_MAX]
        with ThreadPoolExecutor(max_workers=max_workers or min(8, default_workers()),
                                thread_name_prefix="fd-put") as pool:
            sent = sum(pool.map(send_small, _batches(small, wanted)))
            sent += sum(pool.map(send_large, large))
        blob = manifests.encode(self._manifest)
        sha = _sha256(blob)
        if self._missing([sha]):
            self._client.upload_blob(io.BytesIO(blob), sha256=sha, size=len(blob))
        self._doc = self._client.request("PATCH", f"/datasets/{self.id}", json={"manifest": sha})
        self._uploaded = sha
        self._save_draft()
        missing_set = set(missing)
        skipped = sum(size for s, (_, size) in wanted.items() if s not in missing_set)
        return UploadStats(files=len(self._manifest), files_uploaded=len(missing), bytes_uploaded=sent,
                           bytes_skipped=skipped, manifest_bytes=len(blob))

    def _missing(self, shas: list[str]) -> list[str]:
        missing: list[str] = []
        for start in range(0, len(shas), _MISSING_BATCH):
            batch = shas[start:start + _MISSING_BATCH]
            missing.extend(self._client.post("/blobs/missing", {"sha256": batch}, idempotent=True)["missing"])
        return missing

    def finalize(self, auto_upload: bool = True, show_progress: bool = False) -> None:
        """Freeze the version; the server refuses any later change but tags.

        Args:
            auto_upload: upload first if the file list changed since the last upload.
        """
        if self.is_final:
            return
        if self._uploaded != _sha256(manifests.encode(self._manifest)):
            if not auto_upload:
                raise DatasetError(f"dataset {self.name!r} has changes that are not uploaded; call upload()")
            self.upload(show_progress=show_progress)
        self._doc = self._client.post(f"/datasets/{self.id}/finalize", idempotent=True)
        _draft_file(self.id).unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def list_files(self, dataset_path: str | None = None) -> list[str]:
        """Every file path of the version, sorted; optionally only those matching a pattern."""
        paths = sorted(self._manifest)
        return [p for p in paths if fnmatch.fnmatchcase(p, dataset_path)] if dataset_path else paths

    def file_entry(self, path: str) -> FileEntry:
        """Size, sha256 and mode of one file."""
        try:
            return self._manifest[path]
        except KeyError:
            raise NotFound(f"dataset {self.name!r} v{self.version} has no file {path!r}") from None

    def list_added_files(self) -> list[str]:
        """Files this version has that its parents do not."""
        return self.diff().added

    def list_modified_files(self) -> list[str]:
        """Files whose content or executable bit differ from the parents'."""
        return self.diff().modified

    def list_removed_files(self) -> list[str]:
        """Files of the parents that this version no longer has."""
        return self.diff().removed

    def diff(self, other: Dataset | None = None) -> ManifestDiff:
        """Changes from ``other`` (default: the merged parents) to this version."""
        base = self._base if other is None else other._manifest
        return manifests.diff(base, self._manifest)

    def readers(self) -> list[dict[str, Any]]:
        """Tasks that read this version (input lineage), most recent first."""
        return self._client.get(f"/datasets/{self.id}/readers")["items"]

    def get_local_copy(self, progress: ProgressFactory | None = None) -> str:
        """A read-only local copy (cached; parents merged): the same path on every call.

        Files the cache already holds are not downloaded again; a cached file that was altered is
        detected (its size, time or inode changed) and fetched again.
        """
        key = self._cache_key()
        return str(self._copies().cached_copy(key, self._manifest, progress or no_progress))

    def get_mutable_local_copy(self, target_folder: str | os.PathLike[str], overwrite: bool = False,
                               progress: ProgressFactory | None = None) -> str:
        """A writable copy of the version in ``target_folder`` (empty, unless ``overwrite``)."""
        self._cache_key()
        return str(self._copies().mutable_copy(Path(target_folder), self._manifest, overwrite=overwrite,
                                               progress=progress or no_progress))

    def verify(self, path: str | os.PathLike[str] | None = None, repair: bool = True,
               progress: ProgressFactory | None = None) -> VerifyReport:
        """Re-hash a local copy (default: the cached one) against the manifest and fetch what differs."""
        key = self._cache_key()
        copies = self._copies()
        cached = path is None
        target = copies.root / "datasets" / key if cached else Path(path)  # type: ignore[arg-type]
        if cached and not target.is_dir():
            copies.cached_copy(key, self._manifest, progress or no_progress)
        return copies.verify(target, self._manifest, repair=repair, link=cached,
                             progress=progress or no_progress)

    # -- internals -------------------------------------------------------------------------

    def _copies(self) -> LocalCopies:
        return LocalCopies(self._client)

    def _cache_key(self) -> str:
        """Name of the cached copy: the id of a final version; a draft's id and uploaded manifest.

        Raises:
            DatasetError: a draft whose current file list is not uploaded (its content may not be
                on the server yet).
        """
        if self.is_final:
            return self.id
        if self._uploaded is None or self._uploaded != _sha256(manifests.encode(self._manifest)):
            raise DatasetError(f"dataset {self.name!r} v{self.version} is a draft with changes that are not "
                               "uploaded; call upload() first")
        return f"{self.id}-{self._uploaded[:16]}"

    def _check_draft(self, action: str) -> None:
        if self.is_final:
            raise DatasetError(f"cannot {action} dataset {self.name!r} version {self.version}: "
                               "it is finalized; create a new version with it as parent")

    def _save_draft(self) -> None:
        _write_draft(self.id, self._manifest, self._sources)

    def _record_reader(self) -> None:
        task_id = _current_task_id()
        if not task_id:
            return
        try:
            self._client.post(f"/datasets/{self.id}/readers", {"task_id": task_id}, idempotent=True)
        except FleetdeckError as exc:  # lineage is bookkeeping: the training job goes on without it
            log.warning("could not record dataset %s v%s as input of task %s: %s", self.name, self.version,
                        task_id, exc)


def _current_task_id() -> str | None:
    """The server id of the task this process runs: ``Task.current_task()``, else ``$FLEETDECK_TASK_ID``.

    ``fleetdeck.task`` is only consulted when the script imported it: without ``Task.init`` there
    is no current task, and importing the module just to learn that would cost start-up time.
    """
    task_module = sys.modules.get("fleetdeck.task")
    current = task_module.Task.current_task() if task_module is not None else None
    if current is not None:
        task_id = current.id
        # offline runs ("offline-...") and non-zero ranks ("") have no server task to link to
        return task_id if _ID.match(task_id) else None
    return os.environ.get("FLEETDECK_TASK_ID") or None




def _fetch_manifest(client: Client, sha256: str) -> Manifest:
    return manifests.decode(LocalCopies(client).blobs.read(sha256))


def _check_unchanged(source: str, size: int) -> None:
    try:
        current = os.stat(source).st_size
    except FileNotFoundError:
        raise DatasetError(f"{source} was removed after it was added; add it again") from None
    if current != size:
        raise DatasetError(f"{source} changed since it was added ({size} -> {current} bytes); add it again")


def _batches(shas: list[str], wanted: Mapping[str, tuple[str, int]]) -> list[list[str]]:
    """Group small blobs into requests of at most ``_BATCH_BYTES`` bytes and ``_BATCH_FILES`` files."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for sha in shas:
        blob_size = wanted[sha][1]
        if current and (size + blob_size > _BATCH_BYTES or len(current) >= _BATCH_FILES):
            batches.append(current)
            current, size = [], 0
        current.append(sha)
        size += blob_size
    if current:
        batches.append(current)
    return batches


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# -- draft state on disk -------------------------------------------------------------------------


def _draft_file(dataset_id: str) -> Path:
    if not _ID.match(dataset_id):
        raise DatasetError(f"{dataset_id!r} is not a dataset id")
    return data_home() / "dataset-drafts" / f"{dataset_id}.draft"


_DRAFT_MAGIC = b"fleetdeck-draft/1\n"


def _write_draft(dataset_id: str, manifest: Manifest, sources: Mapping[str, str]) -> None:
    """Save a draft's file list (as a manifest) and the local source of each new file.

    Sources are NUL-separated in the manifest's path order (NUL cannot occur in a file name),
    so a draft of 100,000 files is written in C-speed joins, not one JSON object per file.
    """
    path = _draft_file(dataset_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = manifests.encode(manifest)
    joined = "\0".join(sources.get(p, "") for p in sorted(manifest)).encode("utf-8", "surrogateescape")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(b"".join([_DRAFT_MAGIC, len(blob).to_bytes(8, "little"), blob, zlib.compress(joined, 1)]))
    os.replace(tmp, path)


def _read_draft(dataset_id: str) -> tuple[Manifest, dict[str, str]] | None:
    path = _draft_file(dataset_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    damaged = DatasetError(f"local state of draft {dataset_id} ({path}) is damaged; delete it and add the "
                           "files again")
    if not data.startswith(_DRAFT_MAGIC):
        raise damaged
    at = len(_DRAFT_MAGIC)
    length = int.from_bytes(data[at:at + 8], "little")
    try:
        manifest = manifests.decode(data[at + 8:at + 8 + length])
        joined = zlib.decompress(data[at + 8 + length:]).decode("utf-8", "surrogateescape")
    except (manifests.BadManifest, zlib.error):
        raise damaged from None
    names = joined.split("\0") if manifest else []
    if len(names) != len(manifest):
        raise damaged
    return manifest, {p: src for p, src in zip(sorted(manifest), names) if src}
