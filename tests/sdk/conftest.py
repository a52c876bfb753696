"""Fixtures for SDK tests: training scripts run as real subprocesses against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetdeck.server_lite.process import ServerProcess


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def sdk_env(tmp_path: Path, spool_dir: Path, isolated_home: Path) -> dict[str, str]:
    """Environment for a training script: no server configured yet, a private spool, fast monitor."""
    return {**os.environ, "FLEETDECK_SPOOL_DIR": str(spool_dir), "FLEETDECK_MONITOR_SAMPLE_S": "0.1",
            "FLEETDECK_MONITOR_REPORT_S": "0.3", "FLEETDECK_FLUSH_DEADLINE_S": "20", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def server_env(sdk_env: dict[str, str], server: ServerProcess) -> dict[str, str]:
    return {**sdk_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}


def write_script(folder: Path, source: str, name: str = "train.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


@pytest.fixture
def run_script() -> Callable[..., ScriptRun]:
    """Run a script to completion, waiting for its helper too (it shares the stderr pipe)."""

    def run(script: Path, *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120) -> ScriptRun:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd or script.parent, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return ScriptRun(proc.returncode, proc.stdout, proc.stderr)

    return run
