"""Fixtures for the TUI tests: one real server process per module, with runs written over HTTP.

The runs are written through :class:`fleetdeck.client.Client` with the fields and events
``Task.init`` records (hyperparameters, script and diff, environment, scalars, resource series,
console). The SDK's own end-to-end path is tested in ``tests/sdk``; here the point is what the TUI
shows of what the server holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess

def _env(home: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache")}


@pytest.fixture(scope="module")
def tui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server shared by one test module (the views read; actions use their own tasks)."""
    home = tmp_path_factory.mktemp("tui-home")
    proc = ServerProcess(home / "server-data", env=_env(home))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def tui_client(tui_server: ServerProcess) -> Iterator[Client]:
    with Client(url=tui_server.url, token=tui_server.admin_token) as client:
        yield client


CONSOLE = ["[red]markup[/] stays literal", "\x1b[2J\x1b[31mescape codes\x1b[0m stay harmless",
           "unicode: 日本語 ✓ 🚀 ü", "wide-" + "x" * 20000,
           *(f"step {step} loss {2.0 * math.exp(-step * 0.01):.4f}" for step in range(300)), "needle-in-the-log"]
DIFF = "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-lr = 0.1\n+lr = 0.01\n"


def record_run(client: Client, name: str, lr: float, project: str = "tui/runs", parent: str | None = None,
               status: str = "completed") -> dict[str, Any]:
    """Record one run through the client the way ``Task.init`` records it (same fields and events)."""
    task = client.create_task(
        name=name, project=project, tags=["tui"], parent=parent,
        hyperparams={"Args": {"lr": {"value": lr, "type": "float"}, "epochs": {"value": 3, "type": "int"}}},
        script={"repository": "https://example.invalid/ml.git", "branch": "main", "commit": "0" * 40,
                "entry_point": "train.py", "diff": DIFF},
        environment={"python": "3.11.7", "os": "Linux", "host": "gpu-1", "packages": {"numpy": "2.4.6", "torch": "2.5"}})
    client.set_status(task["id"], "in_progress")
    iterations = list(range(200))
    client.post_events(task["id"], {
        "scalars": [{"metric": "loss", "variant": "train", "iterations": iterations,
                     "values": [2.0 * math.exp(-i * lr) + 0.05 for i in iterations]},
                    {"metric": "accuracy", "variant": "val", "iterations": iterations,
                     "values": [1 - math.exp(-i * lr) for i in iterations]},
                    {"metric": ":monitor:", "variant": "cpu_percent", "iterations": iterations,
                     "values": [50 + (i % 7) for i in iterations]}],
        "console": [{"line": line, "stream": "stderr" if "escape" in line else "stdout"} for line in CONSOLE]})
    if status != "in_progress":
        client.set_status(task["id"], status, reason="CUDA out of memory" if status == "failed" else "")
    return client.get_task(task["id"])


@pytest.fixture(scope="module")
def runs(tui_client: Client) -> list[dict[str, Any]]:
    """Three runs: two completed (lr 0.01 and 0.05, the second a clone of the first), one failed."""
    first = record_run(tui_client, "resnet-lr0.01", 0.01)
    second = record_run(tui_client, "resnet-lr0.05", 0.05, parent=first["id"])
    failed = record_run(tui_client, "resnet-lr0.5", 0.5, status="failed")
    return [first, second, failed]
