"""Content-addressed blob files with resumable, verified uploads.

A blob lives at ``blobs/<sha[:2]>/<sha>``; the sha256 is validated before any path is built, so no
user-supplied name ever reaches the filesystem. An upload is keyed by the sha256 it promises:
chunks are appended at the offset the client states (a mismatch answers with the offset the
server has, so the client resumes there), and ``complete`` re-hashes the file before it becomes
visible. A second upload of content already stored finishes at once (deduplication).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from fleetdeck.server_lite.names import check_sha256
from fleetdeck.server_lite.store.base import StoreError, StoreFull


class OffsetMismatch(Exception):
    def __init__(self, expected: int) -> None:
        super().__init__(f"upload is at byte {expected}")
        self.expected = expected


class BadBlob(Exception):
    """The uploaded bytes do not hash to the promised sha256, or exceed the promised size."""


def storage_error(exc: OSError, what: str) -> StoreError:
    """The store error for a failed file operation: StoreFull (507) when the disk is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"disk full: {what}")
    return StoreError(f"{what}: {exc.strerror}")


class BlobStore:
    def __init__(self, root: str | Path, max_blob_bytes: int = 1 << 40) -> None:
        self.root = Path(root)
        self.uploads = self.root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.max_blob_bytes = max_blob_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _lock(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sha256, threading.Lock())

    def _part(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.uploads / f"{sha256}.part"

    def begin(self, sha256: str, size: int) -> dict[str, object]:
        """Start or resume an upload; says how many bytes the server already has."""
        if size < 0 or size > self.max_blob_bytes:
            raise BadBlob(f"size {size} is outside 0..{self.max_blob_bytes}")
        if self.exists(sha256):
            return {"sha256": sha256, "size": size, "offset": size, "complete": True}
        part = self._part(sha256)
        meta = part.with_suffix(".json")
        with self._lock(sha256):
            if not meta.exists():
                try:
                    part.touch()
                    meta.write_bytes(orjson.dumps({"size": size}))
                except OSError as exc:
                    meta.unlink(missing_ok=True)
                    raise storage_error(exc, "cannot start the upload") from None
            elif orjson.loads(meta.read_bytes())["size"] != size:
                raise BadBlob(f"an upload of {sha256[:12]} with another size is in progress")
            offset = part.stat().st_size
        return {"sha256": sha256, "size": size, "offset": offset, "complete": False}

    def expected_size(self, sha256: str) -> int:
        meta = self._part(sha256).with_suffix(".json")
        try:
            return int(orjson.loads(meta.read_bytes())["size"])
        except FileNotFoundError:
            raise KeyError(f"no upload in progress for blob {sha256[:12]}") from None

    async def write(self, sha256: str, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Append a request body at ``offset``; returns the new offset (durable)."""
        size = self.expected_size(sha256)
        part = self._part(sha256)
        lock = self._lock(sha256)
        if not lock.acquire(blocking=False):
            raise OffsetMismatch(part.stat().st_size)
        try:
            current = part.stat().st_size
            if offset != current:
                raise OffsetMismatch(current)
            fd = os.open(part, os.O_WRONLY | os.O_APPEND)
            try:
                written = current
                async for chunk in chunks:
                    if written + len(chunk) > size:
                        os.ftruncate(fd, current)
                        raise BadBlob(f"chunk runs past the promised size {size}")
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                        written += n
                os.fdatasync(fd)
            except OSError as exc:
                os.ftruncate(fd, current)
                raise storage_error(exc, "cannot store the upload") from None
            finally:
                os.close(fd)
            return written
        finally:
            lock.release()

    def complete(self, sha256: str) -> dict[str, object]:
        """Verify the upload's hash and publish it; a bad upload is discarded."""
        final = self.path(sha256)
        if final.exists():
            return {"sha256": sha256, "size": final.stat().st_size}
        size = self.expected_size(sha256)
        part = self._part(sha256)
        with self._lock(sha256):
            have = part.stat().st_size
            if have != size:
                raise OffsetMismatch(have)
            digest = hashlib.sha256()
            with open(part, "rb") as fh:
                while block := fh.read(8 * 1024 * 1024):
                    digest.update(block)
            if digest.hexdigest() != sha256:
                part.unlink(missing_ok=True)
                part.with_suffix(".json").unlink(missing_ok=True)
                raise BadBlob(f"uploaded bytes hash to {digest.hexdigest()[:12]}, not {sha256[:12]}; upload discarded")
            try:
                final.parent.mkdir(exist_ok=True)
                os.replace(part, final)
            except OSError as exc:
                raise storage_error(exc, "cannot publish the upload") from None
            part.with_suffix(".json").unlink(missing_ok=True)
        return {"sha256": sha256, "size": size}
