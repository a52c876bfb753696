"""Validation of every name or id that could reach the filesystem or a URL path.

Names never become paths: blobs are stored under their sha256, task data under a server-made id.
These checks are the second line: anything that does not match is refused before a path is built.
"""

from __future__ import annotations

import re
import unicodedata

ID_RE = re.compile(r"^[0-9a-f]{32}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_MAX = 200
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")


class BadName(ValueError):
    """A name or id that fleetdeck refuses; the message says why."""


def check_id(value: str, what: str = "id") -> str:
    if not ID_RE.fullmatch(value):
        raise BadName(f"{what} must be 32 lowercase hex characters")
    return value


def check_sha256(value: str) -> str:
    if not SHA256_RE.fullmatch(value):
        raise BadName("sha256 must be 64 lowercase hex characters")
    return value


def check_name(value: str, what: str = "name", *, nested: bool = False) -> str:
    """A display name (artifact, queue, worker): printable, no path separators, not '.'/'..'.

    Args:
        nested: allow '/' between parts (``vision/detection`` sub-projects); no part may be
            empty, '.' or '..', so the name still reads as no path outside itself.
    """
    value = unicodedata.normalize("NFC", value)
    if not value or not value.strip():
        raise BadName(f"{what} must not be empty")
    if len(value) > NAME_MAX:
        raise BadName(f"{what} is longer than {NAME_MAX} characters")
    parts = value.split("/") if nested else [value]
    for part in parts:
        if _FORBIDDEN.search(part):
            raise BadName(f"{what} must not contain '/', '\\\\' or control characters")
        if part.strip() in ("", ".", ".."):
            raise BadName(f"{what} must not have empty, '.' or '..' parts")
    return value
