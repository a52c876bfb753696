"""An append-only, checksummed, fsynced write journal.

Each record is ``<u32 length><u32 crc32><payload>`` where the payload is one JSON object.
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

from fleetdeck.server_lite.store.base import BadDocument, StoreError, StoreFull

_HEADER = struct.Struct("<II")
MAX_RECORD = 256 * 1024 * 1024


class CorruptJournal(StoreError):
    """A record in the middle of a journal is damaged (not a torn tail)."""


def encode(record: Any) -> bytes:
    payload = orjson.dumps(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> tuple[list[Any], int]:
    """Every complete record of a journal file, and the byte offset where valid data ends.

    Raises:
        CorruptJournal: a damaged record is followed by a complete, valid one. A crash can only
            tear the tail (the last append), so valid data after damage means the file was
            corrupted in place; dropping the damage would silently drop acknowledged writes.
    """
    data = path.read_bytes()
    records: list[Any] = []
    pos = 0
    size = len(data)
    while pos + _HEADER.size <= size:
        payload = _payload_at(data, pos)
        if payload is None:
            break
        try:
            records.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            break
        pos += _HEADER.size + len(payload)
    if pos < size:
        later = _next_valid_record(data, pos + 1)
        if later is not None:
            raise CorruptJournal(
                f"journal {path} is damaged at byte {pos} and holds complete records after it "
                f"(from byte {later}): the file was corrupted, not torn by a crash; fleetdeck will not "
                "drop acknowledged writes: restore the data dir from a backup, or move this journal "
                "aside to start without the writes it holds")
    return records, pos


def _payload_at(data: bytes, pos: int) -> bytes | None:
    """The payload of a complete record with a matching checksum at ``pos``, else None."""
    if pos + _HEADER.size > len(data):
        return None
    length, crc = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if length == 0 or length > MAX_RECORD or end > len(data):
        return None
    payload = data[pos + _HEADER.size:end]
    return payload if zlib.crc32(payload) == crc else None


def _next_valid_record(data: bytes, start: int) -> int | None:
    """Offset of the first complete, checksummed JSON-object record at or after ``start``.

    Payloads are JSON objects, so candidates are found with a fast ``bytes.find`` for ``{"``.
    """
    pos = data.find(b'{"', start + _HEADER.size)
    while pos != -1:
        head = pos - _HEADER.size
        payload = _payload_at(data, head)
        if payload is not None:
            try:
                orjson.loads(payload)
                return head
            except orjson.JSONDecodeError:
                pass
        pos = data.find(b'{"', pos + 1)
    return None


class JournalWriter:
    """Appends records to one journal file, durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size
        self._broken: str | None = None

    def append(self, records: list[Any]) -> None:
        """Write and fsync records; on failure the file is cut back and nothing is acknowledged.

        Raises:
            BadDocument: a record holds a value JSON cannot carry (nothing written).
            StoreFull: the disk is full.
            StoreError: any other I/O failure.
        """
        if self._broken:
            raise StoreError(self._broken)
        try:
            blob = b"".join(encode(r) for r in records)
        except orjson.JSONEncodeError as exc:
            raise BadDocument(f"a value cannot be stored: {exc}") from None
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
        except OSError as exc:
            # The partial record stays as the file's tail, where the next open cuts it off. A
            # later append would bury it mid-file (read as corruption), so refuse further writes.
            self._broken = (f"journal {self.path} could not be rolled back after a failed write "
                            f"({exc.strerror}); restart the server to recover it")

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
