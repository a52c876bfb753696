"""Framework hooks act only on frameworks the script imports itself."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdeck.client import Client
from tests.sdk.conftest import write_script

TORCH_VERSION = "2.13.0"


@pytest.fixture(scope="session")
def torch_installed() -> None:
    """PyTorch for the ``torch.save`` test: installed here from the machine's local CPU wheel when missing.

    It is not in the ``dev`` extra (750 MB); without a local wheel the test is skipped.
    """
    if importlib.util.find_spec("torch") is not None:
        return
    if not glob.glob(f"/opt/wheels/torch-{TORCH_VERSION}*.whl"):
        pytest.skip("torch is not installed and no local wheel is available")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"torch=={TORCH_VERSION}"],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.skip(f"torch could not be installed: {result.stderr.strip().splitlines()[-1:]}")
    importlib.invalidate_caches()


def test_fleetdeck_imports_no_framework(tmp_path: Path, sdk_env: dict[str, str]) -> None:
    script = write_script(tmp_path / "bare", """
        import sys
        from fleetdeck import Task
        Task.init(project_name="p", task_name="bare")
        print(sorted(m for m in ("matplotlib", "torch", "tensorboardX", "numpy", "pandas") if m in sys.modules))
    """)
    env = {**sdk_env, "FLEETDECK_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="tensorboardX not installed")
def test_framework_imported_before_init_is_hooked(tmp_path: Path, server_env: dict[str, str], client: Client) -> None:
    script = write_script(tmp_path / "tb", """
        import tensorboardX
        from fleetdeck import Task
        Task.init(project_name="p", task_name="tb first")
        writer = tensorboardX.SummaryWriter("logs")
        for step in range(3):
            writer.add_scalar("loss/train", 1.0 / (step + 1), step)
        writer.add_scalars("acc", {"train": 0.8, "val": 0.7}, 2)
        writer.close()
    """)
    out = subprocess.run([sys.executable, str(script)], env=server_env, capture_output=True, text=True, timeout=60,
                         cwd=script.parent)
    assert out.returncode == 0, out.stderr
    task_id = client.list_tasks(project=["p"])["items"][0]["id"]
    series = {(s["metric"], s["variant"]): s["count"] for s in client.list_series(task_id) if s["metric"] != ":monitor:"}
    assert series == {("loss", "train"): 3, ("acc", "train"): 1, ("acc", "val"): 1}


def test_torch_save_registers_an_output_model(tmp_path: Path, server_env: dict[str, str], client: Client,
                                              torch_installed: None) -> None:
    script = write_script(tmp_path / "torch", """
        import io
        import torch
        from fleetdeck import Task
        Task.init(project_name="p", task_name="torch")
        torch.save({"w": torch.ones(3)}, "checkpoint.pt")
        torch.save({"w": torch.ones(3)}, io.BytesIO())  # not a file: nothing to register
    """)
    out = subprocess.run([sys.executable, str(script)], env=server_env, capture_output=True, text=True, timeout=120,
                         cwd=script.parent)
    assert out.returncode == 0, out.stderr
    task_id = client.list_tasks(project=["p"])["items"][0]["id"]
    models = client.get(f"/tasks/{task_id}/artifacts", kind="model")["items"]
    assert [m["name"] for m in models] == ["checkpoint.pt"]
    assert models[0]["sha256"] == hashlib.sha256((script.parent / "checkpoint.pt").read_bytes()).hexdigest()
