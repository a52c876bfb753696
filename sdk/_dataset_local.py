"""Local copies of dataset versions: a verified blob cache, safe materialisation, repair.

Layout under the cache root (``$FLEETDECK_DATASET_CACHE``, default
``$XDG_CACHE_HOME/fleetdeck``)::

    blobs/ab/<sha256>        content, read-only, verified when downloaded
    datasets/<id>/           read-only copy of a version: hard links into blobs/ (no second copy)
    datasets/<id>.state      what each file looked like when written (size, mtime, inode)

A read-only copy is checked against its ``.state`` on each use (one ``stat`` per file): a file
that was touched is re-hashed and, if its content differs, fetched again. ``verify`` re-hashes
every file (bit rot keeps the ``stat`` unchanged) and repairs what differs. Nothing is written
outside the target: every path was checked when its manifest was read, and each folder a file
goes into is resolved and must lie inside the target, so a symlink planted in the target is
refused instead of followed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fleetdeck._dataset_files import default_workers, hash_files, sha256_of
from fleetdeck._dataset_manifest import EXECUTABLE, FileEntry, HostilePath, check_path
from fleetdeck._dataset_progress import ProgressFactory, no_progress
from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError

_LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}


def cache_root() -> Path:
    """Where datasets are cached: ``$FLEETDECK_DATASET_CACHE`` or ``$XDG_CACHE_HOME/fleetdeck``."""
    explicit = os.environ.get("FLEETDECK_DATASET_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fleetdeck"


class BlobCache:
    """Content fetched from the server, by sha256; every file here was verified on arrival."""

    def __init__(self, client: Client, root: Path | None = None) -> None:
        self.client = client
        self.root = (root or cache_root()) / "blobs"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def read(self, sha256: str) -> bytes:
        """A small blob's bytes (a manifest), re-hashed on each read so a damaged cache is noticed."""
        self.fetch({sha256: 0})
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            self.discard(sha256)
            self.fetch({sha256: 0})
            data = self.path(sha256).read_bytes()
        return data

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def fetch(self, wanted: Mapping[str, int], progress: ProgressFactory = no_progress,
              workers: int | None = None) -> int:
        """Download the blobs not cached yet, in parallel; returns the bytes downloaded.

        Args:
            wanted: sha256 -> size (the size only feeds the progress bar).
        """
        todo = {sha: size for sha, size in wanted.items() if not self.path(sha).is_file()}
        if not todo:
            return 0
        advance = progress(f"downloading {len(todo)} files", sum(todo.values()))
        lock = threading.Lock()

        def locked_advance(n: int) -> None:
            with lock:
                advance(n)

        def one(sha: str) -> int:
            final = self.path(sha)
            tmp = self.root / "tmp" / f"{sha}.{uuid.uuid4().hex}"
            try:
                self.client.download_blob(sha, tmp, progress=locked_advance)
                os.chmod(tmp, 0o444)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            return final.stat().st_size

        with ThreadPoolExecutor(max_workers=workers or min(16, default_workers()),
                                thread_name_prefix="fd-get") as pool:
            return sum(pool.map(one, sorted(todo)))


class _Placer:
    """Writes files into ``target`` only, refusing to follow a symlink planted along the way."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.target.mkdir(parents=True, exist_ok=True)
        self.real_target = os.path.realpath(target)
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def destination(self, path: str) -> Path:
        check_path(path)
        dest = self.target / path
        parent = os.path.dirname(path)
        with self._lock:
            if parent not in self._checked:
                (self.target / parent).mkdir(parents=True, exist_ok=True)
                real = os.path.realpath(self.target / parent)
                if real != self.real_target and not real.startswith(self.real_target + os.sep):
                    raise HostilePath(f"folder {parent!r} in {self.target} leads out of it (to {real}); "
                                      "refused")
                self._checked.add(parent)
        if dest.is_dir() and not dest.is_symlink():
            raise HostilePath(f"{dest} is a folder, but the version has a file there; refused")
        return dest  # a file or symlink already there is replaced by rename, never written through

    def place(self, path: str, source: Path, entry: FileEntry, *, link: bool) -> None:
        """Put ``source``'s content at ``path``: a hard link (read-only copies) or a private copy."""
        dest = self.destination(path)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            if link and entry.mode != EXECUTABLE:
                try:
                    os.link(source, tmp)
                except OSError as exc:
                    if exc.errno not in _LINK_FALLBACK:
                        raise
                    _copy(source, tmp, 0o444)
            else:
                _copy(source, tmp, (0o555 if link else 0o755) if entry.mode == EXECUTABLE
                      else (0o444 if link else 0o644))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def _copy(source: Path, dest: Path, mode: int) -> None:
    shutil.copyfile(source, dest)
    os.chmod(dest, mode)


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found in a local copy."""

    checked: int
    corrupted: list[str] = field(default_factory=list)
    """Files whose content does not hash to the manifest's sha256."""
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    """Files in the copy that the version does not have (reported, never deleted)."""
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the copy matches the version (after repairs)."""
        return set(self.corrupted) | set(self.missing) <= set(self.repaired)


class LocalCopies:
    """Materialises versions from the blob cache and keeps the copies honest."""

    def __init__(self, client: Client, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.blobs = BlobCache(client, self.root)

    def cached_copy(self, dataset_id: str, manifest: Mapping[str, FileEntry],
                    progress: ProgressFactory = no_progress) -> Path:
        """The read-only copy of a version, built once, checked and repaired on each call.

        A lock file serialises processes that get the same version at once: the second waits and
        then finds the copy built, instead of building (or deleting) one beside it.
        """
        target = self.root / "datasets" / dataset_id
        state_file = target.with_name(dataset_id + ".state")
        with _locked(target.with_name(dataset_id + ".lock")):
            stats = _read_state(state_file)
            if stats is not None and target.is_dir():
                suspects = [p for p in manifest if _stat_key(target / p) != stats.get(p)]
                if suspects:
                    bad = self._check(target, {p: manifest[p] for p in suspects})
                    self._repair(target, {p: manifest[p] for p in bad}, link=True, progress=progress)
                    stats.update({p: _stat_key(target / p) for p in suspects})
                    _write_state(state_file, stats)
                return target
            self.blobs.fetch({e.sha256: e.size for e in manifest.values()}, progress)
            building = target.with_name(f"{dataset_id}.{uuid.uuid4().hex}.building")
            try:
                self._place_all(building, manifest, link=True)
                if target.exists():  # an earlier build was interrupted before its state was written
                    shutil.rmtree(target)
                os.replace(building, target)
            finally:
                if building.exists():
                    shutil.rmtree(building)
            _write_state(state_file, {p: _stat_key(target / p) for p in manifest})
        return target

    def mutable_copy(self, target: Path, manifest: Mapping[str, FileEntry], *, overwrite: bool,
                     progress: ProgressFactory = no_progress) -> Path:
        """A writable copy of a version in ``target`` (which must be empty unless ``overwrite``)."""
        if target.exists() and not target.is_dir():
            raise FleetdeckError(f"{target} exists and is not a folder")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise FleetdeckError(f"{target} is not empty; pass overwrite=True to write into it")
        self.blobs.fetch({e.sha256: e.size for e in manifest.values()}, progress)
        self._place_all(target, manifest, link=False)
        return target

    def verify(self, target: Path, manifest: Mapping[str, FileEntry], *, repair: bool, link: bool,
               progress: ProgressFactory = no_progress) -> VerifyReport:
        """Re-hash every file of a local copy against the manifest; optionally fetch what differs."""
        present = {p: e for p, e in manifest.items()
                   if (target / p).is_file() and not (target / p).is_symlink()}
        missing = sorted(manifest.keys() - present.keys())
        corrupted = self._check(target, present, progress)
        extra = sorted(_walk(target) - manifest.keys()) if target.is_dir() else []
        repaired: list[str] = []
        if repair and (corrupted or missing):
            todo = {p: manifest[p] for p in [*corrupted, *missing]}
            self._repair(target, todo, link=link, progress=progress)
            repaired = sorted(todo)
            state_file = target.with_name(target.name + ".state")
            stats = _read_state(state_file) if link else None
            if stats is not None:
                stats.update({p: _stat_key(target / p) for p in todo})
                _write_state(state_file, stats)
        return VerifyReport(checked=len(manifest), corrupted=corrupted, missing=missing, extra=extra,
                            repaired=repaired)

    # -- internals ---------------------------------------------------------------------------

    def _check(self, target: Path, entries: Mapping[str, FileEntry],
               progress: ProgressFactory = no_progress) -> list[str]:
        """Paths among ``entries`` whose file is missing or hashes to something else."""
        paths = sorted(entries)
        present = [p for p in paths if (target / p).is_file()]
        sizes = [entries[p].size for p in present]
        advance = progress(f"verifying {len(present)} files", sum(sizes))
        hashes = hash_files([str(target / p) for p in present], sizes=sizes, advance=advance)
        bad = {p for p, h in zip(present, hashes) if h != entries[p].sha256}
        bad.update(set(paths) - set(present))
        return sorted(bad)

    def _repair(self, target: Path, entries: Mapping[str, FileEntry], *, link: bool,
                progress: ProgressFactory) -> None:
        """Fetch these files again; a cached blob that is damaged too is downloaded anew."""
        if not entries:
            return
        shas = {e.sha256: e.size for e in entries.values()}
        for sha in shas:
            cached = self.blobs.path(sha)
            if cached.is_file() and sha256_of(str(cached)) != sha:
                self.blobs.discard(sha)
        self.blobs.fetch(shas, progress)
        self._place_all(target, entries, link=link)

    def _place_all(self, target: Path, manifest: Mapping[str, FileEntry], *, link: bool) -> None:
        placer = _Placer(target)
        items = sorted(manifest.items())

        def run(start: int) -> None:
            for path, entry in items[start:start + 256]:
                placer.place(path, self.blobs.path(entry.sha256), entry, link=link)

        with ThreadPoolExecutor(max_workers=min(8, default_workers()), thread_name_prefix="fd-place") as pool:
            list(pool.map(run, range(0, len(items), 256)))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _read_state(path: Path) -> dict[str, list[int] | None] | None:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:  # a torn state file: the copy is re-checked from scratch
        return {}


def _write_state(path: Path, stats: Mapping[str, list[int] | None]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(stats, separators=(",", ":")))
    os.replace(tmp, path)


def _walk(root: Path) -> set[str]:
    found: set[str] = set()
    stack = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, f"{rel}{entry.name}/"))
                else:
                    found.add(f"{rel}{entry.name}")
    return found

