"""Dataset manifests: the sorted list of (path, size, sha256, mode) that is one dataset version.

A manifest is stored as a content-addressed blob, never as one big document, so a version of
1,000,000 files costs the server one small version document plus one blob. The encoding is a
zlib-compressed text file, one entry per line, sorted by path::

    fleetdeck-manifest/1
    <sha256>\\t<size>\\t<mode, octal>\\t<path>

It is deterministic (the same tree always gives the same bytes, so an unchanged tree gives the
same manifest blob) and readable with ``zlib`` and a text editor. Both the SDK and the server
read it with this module; every path in it is checked by :func:`check_path` on the way in and
on the way out, so a hand-made manifest cannot name a file outside a dataset's root.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from fleetdeck.errors import FleetdeckError

MAGIC = "fleetdeck-manifest/1"
PATH_MAX = 4096
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
EXECUTABLE = 0o755
REGULAR = 0o644


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
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise HostilePath(f"dataset path {path!r} has an empty, '.' or '..' part")
    return unicodedata.normalize("NFC", path)


def collision_key(path: str) -> str:
    """Two paths with the same key would be one file on a case-insensitive or normalising filesystem."""
    return unicodedata.normalize("NFC", path).casefold()


def check_collisions(paths: Iterable[str]) -> None:
    """Refuse names that differ only by case or Unicode normalisation, and files used as folders.

    Raises:
        HostilePath: naming both colliding paths.
    """
    seen: dict[str, str] = {}
    for path in paths:
        key = collision_key(path)
        other = seen.get(key)
        if other is not None and other != path:
            raise HostilePath(f"dataset paths {other!r} and {path!r} differ only by case or Unicode "
                              "normalisation; they would overwrite each other")
        seen[key] = path
    folders: set[str] = set()
    for key in seen:
        parent = key.rpartition("/")[0]
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    clash = folders & seen.keys()
    if clash:
        key = min(clash)
        raise HostilePath(f"dataset path {seen[key]!r} is a file and also a folder of other files")


def encode(manifest: Mapping[str, FileEntry]) -> bytes:
    """The manifest's blob bytes (deterministic: sorted by path)."""
    lines = [MAGIC]
    lines.extend(f"{e.sha256}\t{e.size}\t{e.mode:o}\t{p}" for p, e in sorted(manifest.items()))
    lines.append("")
    return zlib.compress("\n".join(lines).encode("utf-8"), 6)


def decode(blob: bytes) -> Manifest:
    """Parse and check a manifest blob.

    Raises:
        BadManifest: the bytes are not a manifest.
        HostilePath: a path in it could escape the root or collides with another.
    """
    try:
        text = zlib.decompress(blob).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise BadManifest(f"manifest is not valid compressed UTF-8: {exc}") from None
    lines = text.split("\n")
    if not lines or lines[0] != MAGIC or lines[-1] != "":
        raise BadManifest(f"manifest does not start with {MAGIC!r} or is truncated")
    manifest: Manifest = {}
    previous = ""
    for number, line in enumerate(lines[1:-1], start=2):
        try:
            sha, size, mode, path = line.split("\t", 3)
            entry = FileEntry(sha, int(size), int(mode, 8))
        except ValueError:
            raise BadManifest(f"manifest line {number} is malformed") from None
        if not _SHA256.match(sha) or entry.size < 0 or entry.mode not in (REGULAR, EXECUTABLE):
            raise BadManifest(f"manifest line {number} has a bad sha256, size or mode")
        if check_path(path) != path:
            raise HostilePath(f"dataset path {path!r} is not in Unicode NFC form")
        if path <= previous:
            raise BadManifest(f"manifest line {number} is out of order or repeated")
        previous = path
        manifest[path] = entry
    check_collisions(manifest)
    return manifest


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
