"""The local spool: an ordered, append-only queue of records that a run leaves for upload.

Every run gets one folder ``<spool root>/<run key>/``. The training process and its helper each
write their own numbered records (``p0000000000.rec``, ``h0000000000.rec``); the uploader sends
them in order and deletes each one once the server acknowledged it. Because a record's name is
also the idempotency key of what it sends (an event batch's ``batch_id``), a record that was sent
but not yet deleted when the uploader died is sent again and the server drops the duplicate:
every record reaches the server exactly once, during the run or later with ``fleetdeck sync``.

A record file is ``FDR1``, a little-endian u32 header length, a JSON header and a binary payload
(scalar columns as raw int64/float64 arrays, so the training process never formats numbers). It is
written to a temporary name, fsynced and renamed, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from pathlib import Path
from typing import Any


MAGIC = b"FDR1"
_HEADER = struct.Struct("<4sI")
_RECORD_NAME = re.compile(r"^([ph])(\d{10})\.rec$")
_RUN_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
STATE_FILE = "state.json"
PROCESS = "p"
"""Producer prefix of records written by the training process."""
HELPER = "h"
"""Producer prefix of records written by the helper (code capture, resource samples)."""


def spool_root() -> Path:
    """Where runs keep their spool folders (``$FLEETDECK_SPOOL_DIR`` or ``<data home>/spool``).

    Same rule as :func:`fleetdeck.config.data_home` (a test keeps them equal), written out here so
    the training process does not import ``fleetdeck.config`` (tomllib, dataclasses) to find it.
    """
    explicit = os.environ.get("FLEETDECK_SPOOL_DIR")
    if explicit:
        return Path(explicit).absolute()  # the script may chdir; the helper starts elsewhere
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local/share") / "fleetdeck" / "spool"


def new_run_key() -> str:
    """A unique, sortable, path-safe key for one run (also the prefix of its batch ids)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"


def check_run_key(key: str) -> str:
    if not _RUN_KEY.match(key) or key in (".", ".."):
        raise ValueError(f"not a spool run key: {key!r}")
    return key


class Record:
    """One spooled record as read back (a plain class: ``dataclasses`` costs the training process import time)."""

    __slots__ = ("path", "producer", "seq", "header", "payload")

    def __init__(self, path: Path, producer: str, seq: int, header: dict[str, Any], payload: bytes) -> None:
        self.path = path
        self.producer = producer
        self.seq = seq
        self.header = header
        self.payload = payload

    @property
    def name(self) -> str:
        return f"{self.producer}{self.seq:010d}"


class SpoolWriter:
    """Appends records of one producer to a run's spool folder.

    Not thread-safe: each producer writes from one thread (the flusher thread in the training
    process, the capture thread in the helper).
    """

    def __init__(self, folder: Path, producer: str) -> None:
        self.folder = folder
        self.producer = producer
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / "files").mkdir(exist_ok=True, mode=0o700)
        existing = [int(m.group(2)) for p in folder.iterdir()
                    if (m := _RECORD_NAME.match(p.name)) and m.group(1) == producer]
        self._next = max(existing, default=-1) + 1

    def next_name(self) -> str:
        return f"{self.producer}{self._next:010d}"

    def write(self, header: dict[str, Any], payload: bytes | list[Any] = b"") -> str:
        """Durably add one record; returns its name (``p0000000007``).

        Args:
            header: the record's JSON header.
            payload: bytes, or a list of ``array.array`` columns written one after the other
                (no concatenated copy).
        """
        name = self.next_name()
        head = json.dumps(header, separators=(",", ":"), default=str).encode()
        tmp = self.folder / f".tmp-{name}"
        with open(tmp, "wb") as fh:
            fh.write(_HEADER.pack(MAGIC, len(head)))
            fh.write(head)
            if isinstance(payload, list):
                for column in payload:
                    column.tofile(fh)
            else:
                fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / f"{name}.rec")
        self._next += 1
        return name


def read_record(path: Path) -> Record:
    """Read one record file.

    Raises:
        ValueError: the file is not a complete spool record.
    """
    match = _RECORD_NAME.match(path.name)
    if not match:
        raise ValueError(f"{path.name} is not a spool record name")
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"spool record {path} is truncated")
    magic, head_len = _HEADER.unpack_from(data)
    if magic != MAGIC or _HEADER.size + head_len > len(data):
        raise ValueError(f"spool record {path} is corrupt")
    header = json.loads(data[_HEADER.size:_HEADER.size + head_len])
    return Record(path, match.group(1), int(match.group(2)), header, data[_HEADER.size + head_len:])


def read_header(path: Path) -> dict[str, Any]:
    """Only the JSON header of a record (cheap even when the payload is large)."""
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER.size)
        if len(raw) < _HEADER.size:
            raise ValueError(f"spool record {path} is truncated")
        magic, head_len = _HEADER.unpack(raw)
        if magic != MAGIC:
            raise ValueError(f"spool record {path} is corrupt")
        return json.loads(fh.read(head_len))


def pending(folder: Path, producer: str | None = None) -> list[Path]:
    """Record files still to upload, in order (helper records first, then the process's)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = [(m.group(1), int(m.group(2)), n) for n in names if (m := _RECORD_NAME.match(n))]
    found = [f for f in found if producer is None or f[0] == producer]
    found.sort(key=lambda f: (f[0] != HELPER, f[1]))
    return [folder / f[2] for f in found]


def read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, folder / STATE_FILE)


def run_folders(root: Path | None = None) -> list[Path]:
    """Every run folder under the spool root that still holds records, oldest first."""
    root = root or spool_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _RUN_KEY.match(p.name) and pending(p))
