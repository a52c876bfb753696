"""Helpers for dataset tests: trees on disk, and what the server stored."""

from __future__ import annotations

import os
from pathlib import Path

from fleetdeck.server_lite.process import ServerProcess


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def read_tree(root: str | Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative '/'-path -> bytes), symlinks included as what they read."""
    root = Path(root)
    found: dict[str, bytes] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def stored_blob_bytes(server: ServerProcess) -> int:
    """Bytes of finished blobs in the server's data dir (uploads in progress excluded)."""
    blobs = server.data_dir / "blobs"
    return sum(p.stat().st_size for p in blobs.glob("??/*") if p.is_file())
