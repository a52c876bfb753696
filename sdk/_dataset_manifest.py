"""Dataset manifests: the sorted list of (path, size, sha256, mode) that is one dataset version.

A manifest is stored as a content-addressed blob, never as one big document, so a version of
1,000,000 files costs the server one small version document plus one blob. The encoding is
columnar, so that encoding and decoding run in C loops rather than per entry in Python::

    b"fleetdeck-manifest/1\n"
    u64 length + zlib(level 1) of:  u64 count | u64 length + paths joined by "\n" (UTF-8, sorted)
                                    | count x i64 sizes | count x u8 mode (0: 644, 1: 755)
    count x 32 bytes of sha256 (raw; they would not compress)

(all integers little-endian). It is deterministic: the same tree always gives the same bytes,
so an unchanged tree gives the same manifest blob. Both the SDK and the server read it with
this module; every path in it is checked by :func:`check_path` on the way in and on the way
out, so a hand-made manifest cannot name a file outside a dataset's root.
"""

from __future__ import annotations

import gc
import re
import unicodedata
import zlib
from array import array
from itertools import repeat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from fleetdeck.errors import FleetdeckError

MAGIC = b"fleetdeck-manifest/1\n"
PATH_MAX = 4096
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_BAD_CHARS_IN_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\\]")
_DRIVE_IN_LINES = re.compile(r"\n[A-Za-z]:")
_BAD_PARTS_IN_LINES = ("\n\n", "//", "\n/", "/\n", "/./", "/../", "\n./", "\n../", "/.\n", "/..\n",
                       "\n.\n", "\n..\n")
"""Substrings that betray an absolute path or an empty, '.' or '..' part among newline-joined paths."""
EXECUTABLE = 0o755
REGULAR = 0o644
_MODES = (REGULAR, EXECUTABLE)
_MODE_CODE = {REGULAR: 0, EXECUTABLE: 1}


class HostilePath(FleetdeckError):
    """A dataset path that could escape the dataset's root or collide with another path."""


class BadManifest(FleetdeckError):
    """Bytes that are not a valid manifest (corrupt, truncated or hand-made)."""


class FileEntry(NamedTuple):
    """One file of a dataset version."""

    sha256: str
    size: int
    mode: int
    """``0o644`` or ``0o755``: only the executable bit is kept, as in git."""


Manifest = dict[str, FileEntry]
"""Dataset path (``/``-separated, NFC) -> entry."""


def check_path(path: str) -> str:
    """Refuse a dataset path that is absolute, climbs out (``..``), or holds odd characters.

    Args:
        path: a ``/``-separated path relative to the dataset root.

    Returns:
        The path in Unicode NFC form.

    Raises:
        HostilePath: naming the path and what is wrong with it.
    """
    if not isinstance(path, str) or not path:
        raise HostilePath("dataset path must be a non-empty string")
    if len(path) > PATH_MAX:
        raise HostilePath(f"dataset path {path[:60]!r}... is longer than {PATH_MAX} characters")
    if _BAD_CHARS.search(path):
        raise HostilePath(f"dataset path {path!r} contains a backslash or a control character")
    if path.startswith("/") or _DRIVE.match(path):
        raise HostilePath(f"dataset path {path!r} is absolute")
    if "" in (parts := path.split("/")) or "." in parts or ".." in parts:
        raise HostilePath(f"dataset path {path!r} has an empty, '.' or '..' part")
    return path if path.isascii() else unicodedata.normalize("NFC", path)


def check_paths(paths: list[str]) -> list[str]:
    """:func:`check_path` for many paths at C speed: one regex scan over all of them joined.

    Returns:
        The paths in NFC form (the same list object when all are ASCII).
    """
    joined = "\n".join(paths)
    padded = f"\n{joined}\n"
    if any(bad in padded for bad in _BAD_PARTS_IN_LINES) or _BAD_CHARS_IN_LINES.search(joined) or \
            _DRIVE_IN_LINES.search(padded) or (paths and max(map(len, paths)) > PATH_MAX):
        for path in paths:
            check_path(path)  # names the first bad one
        raise HostilePath("a dataset path is empty")
    if joined.isascii():
        return paths
    return [check_path(p) for p in paths]


def collision_key(path: str) -> str:
    """Two paths with the same key would be one file on a case-insensitive or normalising filesystem."""
    return unicodedata.normalize("NFC", path).casefold()


def check_collisions(paths: Iterable[str]) -> None:
    """Refuse names that differ only by case or Unicode normalisation, and files used as folders.

    Raises:
        HostilePath: naming both colliding paths.
    """
    paths = list(paths)
    joined = "\n".join(paths)
    folded = joined.lower() if joined.isascii() else unicodedata.normalize("NFC", joined).casefold()
    keys = folded.split("\n") if paths else []
    if len(set(keys)) != len(keys):
        seen: dict[str, str] = {}
        for path, key in zip(paths, keys):
            other = seen.setdefault(key, path)
            if other != path:
                raise HostilePath(f"dataset paths {other!r} and {path!r} differ only by case or Unicode "
                                  "normalisation; they would overwrite each other")
    folders: set[str] = set()
    for parent in {key.rpartition("/")[0] for key in keys}:
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    clash = folders.intersection(keys)
    if clash:
        key = min(clash)
        raise HostilePath(f"dataset path {paths[keys.index(key)]!r} is a file and also a folder "
                          "of other files")


def encode(manifest: Mapping[str, FileEntry]) -> bytes:
    """The manifest's blob bytes (deterministic: sorted by path)."""
    paths = sorted(manifest)
    return pack(paths, [manifest[p] for p in paths])


def pack(paths: list[str], entries: list[FileEntry]) -> bytes:
    """Lay out entries in the given order, unchecked: :func:`encode` sorts first; tests forge with this."""
    columns = b"".join([
        len(paths).to_bytes(8, "little"),
        _sized("\n".join(paths).encode("utf-8")),
        array("q", [e.size for e in entries]).tobytes(),
        bytes(_MODE_CODE[e.mode] for e in entries),
    ])
    shas = bytes.fromhex("".join(e.sha256 for e in entries))
    return MAGIC + _sized(zlib.compress(columns, 1)) + shas


def decode(blob: bytes) -> Manifest:
    """Parse and check a manifest blob.

    Raises:
        BadManifest: the bytes are not a manifest.
        HostilePath: a path in it could escape the root or collides with another.
    """
    if not blob.startswith(MAGIC):
        raise BadManifest(f"manifest does not start with {MAGIC!r}")
    try:
        columns, offset = _read_sized(blob, len(MAGIC))
        columns = zlib.decompress(columns)
        count = int.from_bytes(columns[:8], "little")
        joined, at = _read_sized(columns, 8)
        paths = joined.decode("utf-8").split("\n") if count else []
        sizes = array("q")
        sizes.frombytes(columns[at:at + 8 * count])
        modes = [_MODES[code] for code in columns[at + 8 * count:]]
        shas_hex = blob[offset:].hex()
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, zlib.error) as exc:
        raise BadManifest(f"manifest is corrupt or truncated: {exc}") from None
    if not (len(paths) == len(sizes) == len(modes) == count and len(shas_hex) == 64 * count):
        raise BadManifest("manifest is truncated: its columns disagree on the number of files")
    if count and min(sizes) < 0:
        raise BadManifest("manifest has a negative file size")
    if check_paths(paths) != paths:
        raise HostilePath("a dataset path is not in Unicode NFC form")
    if paths != sorted(paths):
        raise BadManifest("manifest paths are out of order")
    shas = [shas_hex[i:i + 64] for i in range(0, len(shas_hex), 64)]
    # A million small tuples would trigger the cyclic GC over and over while they are made; they
    # hold no cycles, so it is paused. tuple.__new__ builds each FileEntry in C (no Python __new__).
    collecting = gc.isenabled()
    gc.disable()
    try:
        manifest = dict(zip(paths, map(tuple.__new__, repeat(FileEntry), zip(shas, sizes, modes))))
    finally:
        if collecting:
            gc.enable()
    if len(manifest) != count:
        raise BadManifest("manifest lists a path twice")
    check_collisions(paths)
    return manifest


def _sized(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def _read_sized(data: bytes, offset: int) -> tuple[bytes, int]:
    length = int.from_bytes(data[offset:offset + 8], "little")
    end = offset + 8 + length
    if len(data) < end:
        raise ValueError("a section ends past the end of the data")
    return data[offset + 8:end], end


def merge(parents: Iterable[Mapping[str, FileEntry]]) -> Manifest:
    """The starting content of a version with several parents: later parents win on conflicts."""
    merged: Manifest = {}
    for parent in parents:
        merged.update(parent)
    return merged


@dataclass(frozen=True)
class ManifestDiff:
    """What changed from one manifest to another, each list sorted by path."""

    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "modified": len(self.modified), "removed": len(self.removed)}

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)


def diff(old: Mapping[str, FileEntry], new: Mapping[str, FileEntry]) -> ManifestDiff:
    """Files added, modified (content or executable bit) and removed going from ``old`` to ``new``."""
    old_keys, new_keys = old.keys(), new.keys()
    modified = [p for p in new_keys & old_keys if new[p] != old[p]]
    return ManifestDiff(added=sorted(new_keys - old_keys), modified=sorted(modified),
                        removed=sorted(old_keys - new_keys))


def totals(manifest: Mapping[str, FileEntry]) -> dict[str, int]:
    """File count and total bytes, as stored on the version document."""
    return {"files": len(manifest), "size": sum(e.size for e in manifest.values())}
