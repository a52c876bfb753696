"""Local files of a dataset: scanning a folder safely and hashing many files in parallel.

Hashing streams each file through sha256 in 1 MiB blocks (a file is never held in memory whole)
and runs across files on a thread pool: ``hashlib`` releases the GIL while it hashes a buffer,
and reads release it too, so threads use every core on large files and hide I/O latency on
small ones. Files are handed to the threads in batches, so 100,000 small files cost 100,000
file reads, not 100,000 futures.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from fleetdeck._dataset_manifest import EXECUTABLE, REGULAR, HostilePath, check_path, check_paths

BLOCK = 1 << 20
BATCH = 64
Advance = Callable[[int], None]
"""Progress callback: called with the number of bytes just processed."""


class SourceFile(NamedTuple):
    """A local file about to become a dataset file (a tuple: scans make 100,000s of them)."""

    dataset_path: str
    source: str
    """Path to read the content from (may be a symlink that stays inside the scanned root)."""
    size: int
    mode: int


def default_workers() -> int:
    """Threads for hashing and transfers: enough to overlap I/O even on a 2-core machine."""
    return min(32, (os.cpu_count() or 2) * 4)


def scan(path: str | os.PathLike[str], *, wildcard: str | Sequence[str] | None = None,
         recursive: bool = True, dataset_path: str | None = None) -> list[SourceFile]:
    """List the files under ``path`` (or ``path`` itself) as dataset files.

    Symlinks to files inside the scanned root are stored as regular files; a symlink that leads
    out of the root, or to a folder, is refused, as are special files (fifos, sockets, devices)
    that cannot be read as data.

    Args:
        path: a folder or a single file.
        wildcard: file-name pattern(s) (``*.jpg``); None takes every file.
        recursive: descend into sub-folders.
        dataset_path: folder inside the dataset to place the files under.

    Raises:
        HostilePath: a path that could escape the root or cannot be stored.
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    prefix = ""
    if dataset_path:
        if dataset_path.startswith("/"):
            raise HostilePath(f"dataset path {dataset_path!r} is absolute")
        prefix = check_path(dataset_path.rstrip("/")) + "/"
    patterns = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
    if not root.exists() and not root.is_symlink():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if not root.is_dir():
        real_root = os.path.realpath(root.parent)
        file = _source(str(root), root.name, real_root, prefix)
        return [SourceFile(check_path(file.dataset_path), file.source, file.size, file.mode)] \
            if _matches(root.name, patterns) else []
    real_root = os.path.realpath(root)
    found: list[SourceFile] = []
    stack = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel_path = f"{rel}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        stack.append((entry.path, rel_path + "/"))
                    continue
                if not _matches(entry.name, patterns):
                    continue
                if entry.is_file(follow_symlinks=False):  # the common case: one stat, no realpath
                    info = entry.stat(follow_symlinks=False)
                    mode = EXECUTABLE if info.st_mode & 0o111 else REGULAR
                    found.append(SourceFile(prefix + rel_path, entry.path, info.st_size, mode))
                else:
                    found.append(_source(entry.path, rel_path, real_root, prefix))
    checked = check_paths([f.dataset_path for f in found])
    if any(c != f.dataset_path for c, f in zip(checked, found)):
        found = [SourceFile(c, f.source, f.size, f.mode) for c, f in zip(checked, found)]
    found.sort(key=lambda f: f.dataset_path)
    for first, second in zip(found, found[1:]):
        if first.dataset_path == second.dataset_path:
            raise HostilePath(f"{first.source!r} and {second.source!r} differ only by Unicode normalisation; "
                              "they would be one dataset file")
    return found


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)


def _source(source: str, rel_path: str, real_root: str, prefix: str) -> SourceFile:
    """The file at ``source`` as dataset file ``prefix + rel_path`` (checked by the caller)."""
    dataset_path = prefix + rel_path
    info = os.lstat(source)
    if stat.S_ISLNK(info.st_mode):
        target = os.path.realpath(source)
        if not target.startswith(real_root + os.sep):
            raise HostilePath(f"{source} is a symlink leading out of {real_root} (to {target}); refused")
        try:
            info = os.stat(source)
        except FileNotFoundError:
            raise HostilePath(f"{source} is a dangling symlink") from None
        if stat.S_ISDIR(info.st_mode):
            raise HostilePath(f"{source} is a symlink to a folder; add the folder itself instead")
    if not stat.S_ISREG(info.st_mode):
        raise HostilePath(f"{source} is not a regular file (fifo, socket or device); refused")
    mode = EXECUTABLE if info.st_mode & 0o111 else REGULAR
    return SourceFile(dataset_path, source, info.st_size, mode)


def sha256_of(path: str, buffer: bytearray | None = None) -> str:
    """Stream one file through sha256."""
    digest = hashlib.sha256()
    view = memoryview(buffer if buffer is not None else bytearray(BLOCK))
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def hash_files(paths: Sequence[str], *, sizes: Sequence[int] | None = None, workers: int | None = None,
               advance: Advance | None = None) -> list[str]:
    """The sha256 of each file, in order, hashed in parallel.

    Args:
        paths: files to hash.
        sizes: their sizes, only to report progress in bytes (files count 1 each without).
        workers: threads (default :func:`default_workers`).
        advance: progress callback, called once per batch with its bytes.
    """
    results: list[str] = [""] * len(paths)

    def run(start: int) -> int:
        buffer = bytearray(BLOCK)
        end = min(start + BATCH, len(paths))
        for i in range(start, end):
            results[i] = sha256_of(paths[i], buffer)
        return sum(sizes[start:end]) if sizes is not None else end - start

    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="fd-hash") as pool:
        for done in pool.map(run, range(0, len(paths), BATCH)):
            if advance:
                advance(done)
    return results
