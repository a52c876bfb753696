"""An append-only, checksummed, fsynced write journal.

Each record is ``<u32 length><u32 crc32><payload>`` where the payload is one JSON document.
A record is acknowledged only after ``fdatasync``; a torn tail (a crash or power loss mid-write)
fails its length or checksum and is cut off on the next open, keeping every complete record.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fleetdeck.server_lite.store.base import StoreError, StoreFull

_HEADER = struct.Struct("<II")
MAX_RECORD = 256 * 1024 * 1024


class CorruptJournal(StoreError):
    """A record in the middle of a journal is damaged (not a torn tail)."""


def encode(record: Any) -> bytes:
    payload = orjson.dumps(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> tuple[list[Any], int]:
    """Every complete record of a journal file, and the byte offset where valid data ends."""
    data = path.read_bytes()
    records: list[Any] = []
    pos = 0
    size = len(data)
    while pos + _HEADER.size <= size:
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > MAX_RECORD or end > size:
            break
        payload = data[pos + _HEADER.size:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            break
        pos = end
    return records, pos


class JournalWriter:
    """Appends records to one journal file, durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, records: list[Any]) -> None:
        """Write and fsync records; on failure the file is cut back and nothing is acknowledged.

        Raises:
            StoreFull: the disk is full.
            StoreError: any other I/O failure.
        """
        blob = b"".join(encode(r) for r in records)
        try:
            written = 0
            while written < len(blob):
                written += os.write(self._fd, blob[written:])
            os.fdatasync(self._fd)
        except OSError as exc:
            self._rollback()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"disk full: cannot write to {self.path.parent}") from None
            raise StoreError(f"cannot write journal {self.path}: {exc.strerror}") from None
        self.size += len(blob)

    def _rollback(self) -> None:
        try:
            os.ftruncate(self._fd, self.size)
        except OSError:
            # The record could not be cut back; its checksum (or length) marks it torn and the
            # next open drops it, so it is never taken for an acknowledged write.
            pass

    def close(self) -> None:
        os.close(self._fd)


def iter_journal_files(folder: Path) -> Iterator[tuple[int, Path]]:
    """Journal files in sequence order."""
    found = []
    for entry in folder.glob("*.log"):
        try:
            found.append((int(entry.stem), entry))
        except ValueError:
            continue
    yield from sorted(found)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
