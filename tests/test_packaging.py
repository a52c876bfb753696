"""The wheel installs into a fresh venv and every module imports; ``import fleetdeck`` stays light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = {"sdk": "fleetdeck", "app": "fleetdeck.app", "fleet": "fleetdeck.fleet",
               "server_lite": "fleetdeck.server_lite"}
HEAVY = ("textual", "fastapi", "uvicorn", "starlette", "paramiko", "docker", "pymongo", "httpx", "numpy",
         "pydantic", "rich", "click")
"""What a training script must not pay for when it imports the SDK."""

PIP_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "FLEETDECK_"))}
"""pip's environment as the user had it (read at import, before the per-test XDG isolation)."""

IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
import fleetdeck
failed, done = {}, []
for info in pkgutil.walk_packages(fleetdeck.__path__, "fleetdeck.", onerror=lambda name: failed.setdefault(name, "walk")):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
        done.append(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"imported": done, "failed": failed, "file": fleetdeck.__file__}))
"""


def source_packages() -> set[str]:
    """Import names of every folder with an ``__init__.py`` in the source tree."""
    found = set()
    for folder, name in SOURCE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source")  # a private copy: setuptools writes build/ next to the sources
    for name in ("pyproject.toml", "README.md", *SOURCE_DIRS):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(source)], check=True, env=PIP_ENV, timeout=120, cwd=source)
    (built,) = out.glob("fleetdeck-*.whl")
    return built


def test_wheel_ships_every_package_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    shipped = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    missing = source_packages() - shipped
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert "fleetdeck = fleetdeck.app.cli:main" in entry_points


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_every_module_imports(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[all]"], check=True, env=PIP_ENV,
                   timeout=300)
    result = subprocess.run([str(python), "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=PIP_ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert str(env_dir) in report["file"], "imported the source tree instead of the installed wheel"
    assert report["failed"] == {}
    assert source_packages() <= set(report["imported"]) | {"fleetdeck"}
    version = subprocess.run([str(env_dir / "bin" / "fleetdeck"), "version"], capture_output=True, text=True,
                             timeout=60, env=PIP_ENV)
    assert version.returncode == 0 and version.stdout.startswith("fleetdeck ")


def test_import_fleetdeck_is_light() -> None:
    code = "import json, sys, fleetdeck; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(result.stdout))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"import fleetdeck pulled in {heavy}"
    assert not any(m.startswith(("fleetdeck.app", "fleetdeck.fleet", "fleetdeck.server_lite")) for m in loaded)
