"""Artifacts: serialising objects for upload and getting verified local copies back.

Files are uploaded as they are (hashed and sent in chunks by the helper; never read into memory
whole, so size is not limited); folders are zipped; dicts/lists become JSON, numpy arrays ``.npy``,
pandas frames ``.csv.gz``, other objects a pickle. A pickle is loaded only with
``allow_pickle=True``: unpickling runs arbitrary code from whoever wrote the artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdeck.errors import FleetdeckError

if TYPE_CHECKING:  # pragma: no cover
    from fleetdeck.client import Client


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "fleetdeck" / "artifacts"


def prepare(name: str, obj: Any, files_dir: Path, delete_after: bool = False) -> dict[str, Any]:
    """Turn ``obj`` into a file the helper can upload.

    Returns:
        the artifact record fields: ``path``, ``delete_after``, ``content_type``, ``metadata``.
    """
    if not name or "/" in name or name.startswith("."):
        raise FleetdeckError(f"artifact name {name!r} must be non-empty, without '/' and not start with '.'")
    files_dir.mkdir(parents=True, exist_ok=True)
    stem = f"artifact-{os.getpid()}-{len(os.listdir(files_dir))}"
    if isinstance(obj, (str, os.PathLike)) and Path(obj).exists():
        path = Path(obj).resolve()
        if path.is_dir():
            target = files_dir / f"{stem}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(path.rglob("*")):
                    if file.is_file():
                        archive.write(file, file.relative_to(path).as_posix())
            return _fields(target.name, True, "application/zip", {"type": "folder", "filename": path.name + ".zip"})
        return _fields(str(path), delete_after, "", {"type": "file", "filename": path.name})
    if isinstance(obj, (Mapping, list, tuple)):
        target = files_dir / f"{stem}.json"
        target.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        return _fields(target.name, True, "application/json", {"type": "json"})
    if type(obj).__module__ == "numpy" and hasattr(obj, "dtype"):
        import numpy as np

        target = files_dir / f"{stem}.npy"
        np.save(target, obj, allow_pickle=False)
        return _fields(target.name, True, "application/x-npy", {"type": "numpy", "shape": list(obj.shape),
                                                                "dtype": str(obj.dtype)})
    if type(obj).__module__.startswith("pandas") and hasattr(obj, "to_csv"):
        target = files_dir / f"{stem}.csv.gz"
        obj.to_csv(target, compression="gzip")
        return _fields(target.name, True, "text/csv", {"type": "pandas", "shape": list(obj.shape)})
    if isinstance(obj, str):
        target = files_dir / f"{stem}.txt"
        target.write_text(obj, encoding="utf-8")
        return _fields(target.name, True, "text/plain", {"type": "text"})
    if isinstance(obj, bytes):
        target = files_dir / f"{stem}.bin"
        target.write_bytes(obj)
        return _fields(target.name, True, "application/octet-stream", {"type": "bytes"})
    import pickle

    target = files_dir / f"{stem}.pkl"
    with open(target, "wb") as fh:
        pickle.dump(obj, fh)
    return _fields(target.name, True, "application/x-pickle", {"type": "pickle", "class": type(obj).__qualname__})


def _fields(path: str, delete_after: bool, content_type: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"path": path, "delete_after": delete_after, "content_type": content_type, "metadata": metadata}


class Artifact:
    """A stored artifact or model of a task."""

    def __init__(self, doc: dict[str, Any], client: Client) -> None:
        self._doc = doc
        self._client = client
        self.name: str = doc["name"]
        self.kind: str = doc.get("kind", "artifact")
        self.sha256: str | None = doc.get("sha256")
        self.size: int | None = doc.get("size")
        self.metadata: dict[str, Any] = doc.get("metadata") or {}
        self.type: str = self.metadata.get("type", "file")

    def __repr__(self) -> str:
        return f"<Artifact {self.name!r} {self.type} {self.size} bytes>"

    def get_local_copy(self, extract_archive: bool = True, target: str | os.PathLike[str] | None = None) -> str:
        """Download (or reuse a cached copy), verify the sha256, and return the local path.

        A folder artifact is extracted and the folder's path returned.
        """
        if not self.sha256:
            raise FleetdeckError(f"artifact {self.name!r} has no stored file")
        cached = _cache_dir() / self.sha256
        if not cached.exists():
            self._client.download_blob(self.sha256, cached)
        else:
            from fleetdeck.client import sha256_file

            if sha256_file(cached) != self.sha256:
                cached.unlink()
                self._client.download_blob(self.sha256, cached)
        if self.type == "folder" and extract_archive:
            folder = Path(target) if target else cached.with_name(cached.name + ".d")
            if not folder.exists():
                with zipfile.ZipFile(cached) as archive:
                    _safe_extract(archive, folder)
            return str(folder)
        if target is not None:
            shutil.copyfile(cached, target)
            return str(target)
        return str(cached)

    def get(self, allow_pickle: bool = False) -> Any:
        """Load the artifact as the object it was made from (JSON, numpy, pandas, text, pickle)."""
        path = self.get_local_copy()
        if self.type == "json":
            return json.loads(Path(path).read_text(encoding="utf-8"))
        if self.type == "numpy":
            import numpy as np

            return np.load(path, allow_pickle=False)
        if self.type == "pandas":
            import pandas as pd

            return pd.read_csv(path, compression="gzip", index_col=0)
        if self.type == "text":
            return Path(path).read_text(encoding="utf-8")
        if self.type == "pickle":
            if not allow_pickle:
                raise FleetdeckError(f"artifact {self.name!r} is a pickle; loading it runs code from whoever stored "
                                     "it, so pass allow_pickle=True if you trust it")
            import pickle

            with open(path, "rb") as fh:
                return pickle.load(fh)  # noqa: S301 - explicitly allowed by the caller
        return path


def _safe_extract(archive: zipfile.ZipFile, folder: Path) -> None:
    """Extract refusing members that would land outside ``folder`` (zip slip)."""
    root = folder.resolve()
    for member in archive.namelist():
        dest = (root / member).resolve()
        if root not in dest.parents and dest != root:
            raise FleetdeckError(f"archive member {member!r} would be written outside {folder}")
    archive.extractall(root)
