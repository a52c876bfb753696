"""``fleetdeck demo`` makes real experiments by running the example scripts under Task.init."""

from __future__ import annotations

from typing import Any

import pytest

from fleetdeck.app.cli import main
from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess
from tests.support import wait_for


def test_demo_runs_the_examples_and_the_server_holds_their_runs(
        server: ServerProcess, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--server", server.url, "--token", server.admin_token, "demo", "--runs", "5"])
    out = capsys.readouterr().out
    assert out.count("ran examples/") == 5 and "diverging_run.py" in out

    def finished() -> list[dict[str, Any]] | None:
        items = client.list_tasks(project="examples")["items"]
        done = [t for t in items if t["status"] in ("completed", "failed")]
        return items if len(items) == 5 and len(done) == 5 and all(t["metrics"] for t in done) else None

    runs = wait_for(finished, timeout=60, message="five example runs uploaded by the SDK helper")
    assert sorted(t["status"] for t in runs) == ["completed"] * 4 + ["failed"]
    lrs = sorted(client.get_task(t["id"])["hyperparams"]["Args"]["lr"]["value"]
                 for t in runs if t["name"] == "classifier")
    assert lrs == [0.05, 0.3, 1.5]


def test_demo_open_fills_once_and_lists_without_a_terminal(
        server: ServerProcess, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--server", server.url, "--token", server.admin_token, "demo", "--runs", "1", "--open"])
    first = capsys.readouterr().out
    assert "ran examples/train_classifier.py" in first
    main(["--server", server.url, "--token", server.admin_token, "demo", "--runs", "1", "--open"])
    assert "demo data already present" in capsys.readouterr().out
    assert len(client.list_tasks(project="examples")["items"]) == 1
