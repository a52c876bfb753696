"""Virtual environments for tasks, cached by a hash of (requirements, Python version).

A second task with the same requirements gets the same venv and installs nothing. Entries are
built in place (venvs are not relocatable) and marked complete last, so a crash mid-install leaves
an entry that is rebuilt, never used. Several agents on one host can share the cache: a build
holds an exclusive ``flock`` on the entry, a job holds a shared one, and eviction (least recently
used first, beyond ``max_entries`` or below the free-space floor) skips entries in use.

The job's venv reaches the agent's own fleetdeck SDK through a ``.pth`` file, and gets the SDK's
runtime dependencies pinned to the agent's versions, so the job's ``Task.init`` speaks the same
API as the agent; the task's own packages are installed at their recorded versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet.executors.base import CommandFailed, run_command

log = logging.getLogger("fleetdeck.agent.venv")

SDK_DEPENDENCIES = ("httpx", "psutil", "nvidia-ml-py", "gitpython")
"""The SDK's runtime dependencies (pyproject ``dependencies``), pinned into every job venv."""
_NOT_INSTALLED = {"fleetdeck", "pip", "setuptools", "wheel"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class VenvError(FleetdeckError):
    """A job venv could not be built (bad requirement, pip failure, disk below the floor)."""


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def task_requirements(task: dict[str, Any]) -> list[str]:
    """The requirement lines a task's venv is built from.

    ``script.requirements`` (a requirements.txt the user recorded) wins. Otherwise the packages
    recorded in ``environment.packages`` pinned to their versions; when the task also records
    which top-level packages its code imported, only those are pinned and pip resolves the rest
    (what ClearML calls "installed packages"), so a script run from a large environment does not
    drag that whole environment along. fleetdeck itself and pip tooling are never installed.
    """
    script = task.get("script") or {}
    text = script.get("requirements") or ""
    if text.strip():
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return sorted({line for line in lines if line and normalize(re.split(r"[<>=!~;\[ ]", line)[0]) not in _NOT_INSTALLED})
    env = task.get("environment") or {}
    packages: dict[str, str] = env.get("packages") or {}
    imported = {normalize(m.split(".")[0]) for m in env.get("imported") or []}
    chosen = []
    for name, version in packages.items():
        key = normalize(name)
        if key in _NOT_INSTALLED or (imported and key not in imported):
            continue
        if not _NAME.match(name):
            raise VenvError(f"recorded package name {name!r} is not a valid distribution name")
        chosen.append(f"{name}=={version}" if version else name)
    return sorted(chosen)


def sdk_requirements() -> list[str]:
    """The SDK's dependencies at the versions the agent itself runs with."""
    pins = []
    for name in SDK_DEPENDENCIES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def sdk_path() -> Path:
    """The folder holding the agent's ``fleetdeck`` SDK package."""
    import fleetdeck

    return Path(fleetdeck.__file__).resolve().parent


@dataclass(frozen=True)
class Venv:
    path: Path
    key: str
    installed: bool
    """True when this call built the venv (a cache miss)."""

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


class VenvCache:
    """Job venvs under ``root``, one per requirement set.

    Args:
        root: the cache folder (shared by the agents of a host).
        max_entries: venvs kept; the least recently used beyond this are deleted.
        min_free_bytes: free-space floor on the cache's disk; LRU entries go first to keep it,
            and a build is refused when it cannot be kept.
        python: interpreter the venvs are made from (the agent's by default).
        install_timeout_s: limit for one pip install.
    """

    def __init__(self, root: Path, max_entries: int = 10, min_free_bytes: int = 2 * 1024**3,
                 python: str | None = None, install_timeout_s: float | None = 1800) -> None:
        self.root = root
        self.max_entries = max_entries
        self.min_free_bytes = min_free_bytes
        self.python = python or getattr(sys, "_base_executable", sys.executable)
        self.install_timeout_s = install_timeout_s
        self.root.mkdir(parents=True, exist_ok=True)

    @functools.cached_property
    def python_version(self) -> str:
        out = subprocess.run([self.python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def key(self, requirements: list[str]) -> str:
        spec = {"python": self.python_version, "requirements": sorted(requirements),
                "sdk": sdk_requirements(), "layout": 1}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def use(self, requirements: list[str], deadline: float | None = None,
            cancel: threading.Event | None = None) -> Iterator[Venv]:
        """A venv with ``requirements``, held (shared lock) while the job runs.

        A build stops at ``deadline`` (monotonic) or when ``cancel`` is set, and leaves nothing behind
        that a later task would use.

        Raises:
            VenvError: pip failed (its last error line is in the message), the deadline passed,
                or the disk is below the free-space floor even after eviction.
        """
        key = self.key(requirements)
        path = self.root / key
        installed = False
        with self._lock(key, exclusive=False) as held:
            if not (path / ".complete").exists():
                # Build under the exclusive lock, then come back for a shared one: many jobs may
                # share a venv at once, and eviction (exclusive, non-blocking) skips it meanwhile.
                fcntl.flock(held, fcntl.LOCK_UN)
                with self._lock(key, exclusive=True):
                    if not (path / ".complete").exists():
                        self._make_room(keep=key)
                        self._build(path, requirements, deadline, cancel)
                        installed = True
                fcntl.flock(held, fcntl.LOCK_SH)
                if not (path / ".complete").exists():  # evicted between the locks: very unlikely
                    raise VenvError(f"venv {key} was evicted before the job started; retry the task")
            os.utime(path / ".complete")
            yield Venv(path=path, key=key, installed=installed)

    def entries(self) -> list[Path]:
        """Complete entries, least recently used first."""
        done = [p for p in self.root.iterdir() if (p / ".complete").exists()]
        return sorted(done, key=lambda p: (p / ".complete").stat().st_mtime)

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, key: str, exclusive: bool, blocking: bool = True) -> Iterator[IO[str]]:
        fh = open(self.root / f"{key}.lock", "a+")
        try:
            flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
            fcntl.flock(fh, flags)
            yield fh
        finally:
            fh.close()

    def _build(self, path: Path, requirements: list[str], deadline: float | None,
               cancel: threading.Event | None) -> None:
        if path.exists():
            shutil.rmtree(path)  # an incomplete build from a crash
        started = time.monotonic()
        self._run([self.python, "-m", "venv", "--without-pip", str(path)], "create the venv", deadline, cancel)
        site = next((path / "lib").glob("python*/site-packages"))
        (site / "fleetdeck-sdk.pth").write_text(str(self._sdk_link(path)) + "\n")
        pins = sdk_requirements()
        pinned = {normalize(re.split(r"[<>=!~;\[ ]", r)[0]) for r in requirements}
        wanted = [*requirements, *(p for p in pins if normalize(p.split("==")[0]) not in pinned)]
        self._run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"), "install",
                   "--disable-pip-version-check", "--no-input", "--quiet", *wanted], "pip install", deadline, cancel)
        (path / "requirements.txt").write_text("\n".join(wanted) + "\n")
        (path / ".complete").write_text(f"{time.time()}\n")
        log.info("built venv %s (%d requirements) in %.1fs", path.name, len(wanted), time.monotonic() - started)

    def _sdk_link(self, path: Path) -> Path:
        """A folder holding only a ``fleetdeck`` link to the agent's SDK (not its server or CLI)."""
        folder = path / "fleetdeck-sdk"
        folder.mkdir()
        (folder / "fleetdeck").symlink_to(sdk_path(), target_is_directory=True)
        return folder

    def _run(self, argv: list[str], what: str, deadline: float | None, cancel: threading.Event | None) -> None:
        timeout = self.install_timeout_s
        if deadline is not None:
            left = max(0.1, deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        try:
            run_command(argv, what, timeout_s=timeout, cancel=cancel)
        except CommandFailed as exc:
            raise VenvError(str(exc)) from None

    def _make_room(self, keep: str) -> None:
        """Evict LRU entries (not in use) beyond ``max_entries - 1`` or below the free-space floor."""
        for entry in self.entries():
            too_many = len(self.entries()) >= self.max_entries
            too_full = shutil.disk_usage(self.root).free < self.min_free_bytes
            if not (too_many or too_full):
                break
            if entry.name == keep:
                continue
            try:
                with self._lock(entry.name, exclusive=True, blocking=False):
                    (entry / ".complete").unlink(missing_ok=True)
                    shutil.rmtree(entry, ignore_errors=False)
                    log.info("evicted venv %s (least recently used)", entry.name)
            except BlockingIOError:
                continue  # a job is using it
        free = shutil.disk_usage(self.root).free
        if free < self.min_free_bytes:
            raise VenvError(f"only {free / 1024**3:.1f} GiB free under {self.root}, below the "
                            f"{self.min_free_bytes / 1024**3:.1f} GiB floor, even after evicting unused venvs")
