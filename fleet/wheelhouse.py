"""Everything a host needs to install the agent without internet: a fleetdeck wheel plus wheels of
its dependencies, built on the workstation and cached.

Two caches under ``$XDG_CACHE_HOME/fleetdeck/wheelhouse``:

- ``deps-<key>/``: ``pip wheel`` of the agent's dependencies, keyed by the dependency list (the
  lock), the Python version and the platform, so it is built once and reused across runs.
- ``fleetdeck-<key>/``: the fleetdeck wheel, keyed by a hash of the source files, so an unchanged
  tree reuses the same wheel file (same bytes, same hash) and the host sees nothing new.

The bundle's content hash (over every wheel's name and sha256) names the venv on the host, so a
new bundle installs side by side and the switch is one atomic symlink rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetdeck.config import _xdg
from fleetdeck.errors import FleetdeckError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SOURCE_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("sdk", "app", "fleet", "server_lite")
AGENT_EXTRAS = ("click>=8.1", "rich>=13")
"""What the agent's command line needs beyond the SDK's dependencies."""


class WheelhouseError(FleetdeckError):
    """The wheels for the hosts could not be built."""


@dataclass(frozen=True)
class Bundle:
    """The wheels one install needs."""

    fleetdeck_wheel: Path
    dependency_wheels: tuple[Path, ...]
    requirements: tuple[str, ...]
    """What pip installs on the host (resolved from the wheels, offline)."""
    content_hash: str
    """sha256 over every wheel's name and content; names the venv on the host."""
    python_tag: str
    """``cp311-x86_64``: hosts must match it, since binary wheels (psutil) are built for it."""

    @property
    def wheels(self) -> tuple[Path, ...]:
        return (self.fleetdeck_wheel, *self.dependency_wheels)

    def manifest(self) -> dict[str, str]:
        """Wheel file name -> sha256."""
        return {w.name: _sha256(w) for w in self.wheels}


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "fleetdeck" / "wheelhouse"


def agent_requirements(source_root: Path = SOURCE_ROOT) -> list[str]:
    """The fleetdeck core dependencies (from pyproject.toml) plus what the agent's CLI needs."""
    try:
        project = tomllib.loads((source_root / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise WheelhouseError(f"cannot read the dependencies from {source_root / 'pyproject.toml'}: {exc}") from None
    return [*project.get("dependencies", []), *AGENT_EXTRAS]


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"


def build(source_root: Path = SOURCE_ROOT, cache: Path | None = None) -> Bundle:
    """Build (or reuse from the cache) the fleetdeck wheel and the dependency wheelhouse.

    Raises:
        WheelhouseError: pip failed; the message ends with pip's last error line.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if not (source_root / "pyproject.toml").is_file():
        raise WheelhouseError(f"{source_root} is not a fleetdeck source tree (no pyproject.toml); "
                              "provisioning builds the agent's wheel from the source tree")
    requirements = agent_requirements(source_root)
    tag = python_tag()
    lock = hashlib.sha256(json.dumps({"reqs": sorted(requirements), "py": tag}).encode()).hexdigest()[:16]
    deps_dir = _cached(cache / f"deps-{lock}", lambda out: _pip(["wheel", "-q", "-w", str(out), *requirements]))
    fleetdeck_dir = _cached(cache / f"fleetdeck-{source_hash(source_root)}",
                            lambda out: _build_fleetdeck_wheel(source_root, out))
    (fleetdeck_wheel,) = sorted(fleetdeck_dir.glob("fleetdeck-*.whl"))
    deps = tuple(sorted(p for p in deps_dir.glob("*.whl") if not p.name.startswith("fleetdeck-")))
    digest = hashlib.sha256()
    for wheel in (fleetdeck_wheel, *deps):
        digest.update(f"{wheel.name}\0{_sha256(wheel)}\n".encode())
    return Bundle(fleetdeck_wheel=fleetdeck_wheel, dependency_wheels=deps,
                  requirements=(fleetdeck_wheel.name.split("-")[0] + "==" + fleetdeck_wheel.name.split("-")[1],
                                *AGENT_EXTRAS),
                  content_hash=digest.hexdigest(), python_tag=tag)


def source_hash(source_root: Path = SOURCE_ROOT) -> str:
    """A hash of the files that go into the fleetdeck wheel (code, package data, pyproject)."""
    digest = hashlib.sha256()
    files = [source_root / "pyproject.toml"]
    for folder in SOURCE_DIRS:
        files += [p for p in (source_root / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".tcss", ".json", ".toml")]
    for path in sorted(files):
        digest.update(str(path.relative_to(source_root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cached(target: Path, make: Callable[[Path], None]) -> Path:
    """Return ``target`` if a previous build completed it, else build into a temp dir and rename."""
    if (target / ".complete").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        make(tmp)
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / ".complete").exists():  # not a concurrent builder that won the race
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_fleetdeck_wheel(source_root: Path, out: Path) -> None:
    # Build from a copy so the shared source tree never gets build/ or egg-info litter.
    with tempfile.TemporaryDirectory(prefix="fleetdeck-src-") as tmp:
        src = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            if (source_root / name).exists():
                shutil.copy2(source_root / name, src / name)
        for folder in SOURCE_DIRS:
            shutil.copytree(source_root / folder, src / folder,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)], cwd=src)


def _pip(args: list[str], cwd: Path | None = None) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                                timeout=900, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        raise WheelhouseError(f"pip {args[0]} did not finish in 15 minutes") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise WheelhouseError(f"pip {args[0]} failed: {lines[-1] if lines else 'exit ' + str(result.returncode)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
