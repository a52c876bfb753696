"""The example training scripts run (offline, fast settings) and end with the expected status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("script", "args", "code"), [
    ("train_classifier.py", ["--epochs", "3", "--step-delay", "0"], 0),
    ("train_regression.py", ["--epochs", "2", "--step-delay", "0"], 0),
    ("diverging_run.py", [], 1),
])
def test_example_runs(script: str, args: list[str], code: int, sdk_env: dict[str, str], tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], env={**sdk_env, "FLEETDECK_OFFLINE": "1"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    assert "fleetdeck sync" in out.stderr  # offline: the run is kept for upload
