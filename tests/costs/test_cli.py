"""``fleetdeck costs`` as a user runs it: a real ``fleetdeck`` process against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import click
import pytest

from fleetdeck.app.cli.costs import parse_since
from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess


def _fleetdeck(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
           "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", "costs", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_costs_table_totals_and_json(server: ServerProcess, client: Client) -> None:
    h100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}
    task = client.create_task(name="resnet", project="vision", runtime={"host": "box", "gpus": [0, 1]},
                              environment={"gpus": [h100, {**h100, "index": 1}]})
    client.set_status(task["id"], "in_progress")
    client.set_status(task["id"], "completed")
    task = client.get_task(task["id"])
    by_hand = (task["ended"] - task["started"]) / 3600 * 2 * 3.00

    out = _fleetdeck(server, "--by", "project")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("GPU cost by project" in line for line in lines)
    header = next(line for line in lines if "PROJECT" in line)
    for column in ("TASKS", "GPU-H", "COST", "HELD IDLE", "ORPHANED", "IDLE CAP", "WASTE", "WASTE %"):
        assert column in header
    vision = next(line for line in lines if line.lstrip().startswith("vision"))
    assert f"${by_hand:,.2f}" in vision
    assert any(line.lstrip().startswith("TOTAL") and f"${by_hand:,.2f}" in line for line in lines)

    raw = json.loads(_fleetdeck(server, "--by", "task", "--since", "1h", "--json").stdout)
    assert raw["by"] == "task" and raw["rows"][0]["key"] == task["id"]
    assert raw["totals"]["cost"] == pytest.approx(by_hand, rel=1e-9)


def _fleetdeck_at(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETDECK_SERVER_URL": url, "FLEETDECK_API_TOKEN": "fd_not_used"}
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", "costs", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_user_mistakes_are_one_line_and_exit_2() -> None:
    """Refused before any request: the URL points nowhere."""
    bad_since = _fleetdeck_at("http://127.0.0.1:9", "--since", "fortnight")
    assert bad_since.returncode == 2
    assert "'fortnight' is not a duration like 7d" in bad_since.stderr
    assert "Traceback" not in bad_since.stderr
    bad_by = _fleetdeck_at("http://127.0.0.1:9", "--by", "colour")
    assert bad_by.returncode == 2 and "Traceback" not in bad_by.stderr and "colour" in bad_by.stderr
    backwards = _fleetdeck_at("http://127.0.0.1:9", "--since", "1d", "--until", "2d")
    assert backwards.returncode == 2 and "--until must be after --since" in backwards.stderr


def test_unreachable_server_is_one_line() -> None:
    out = _fleetdeck_at("http://127.0.0.1:9")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: cannot reach fleetdeck server at http://127.0.0.1:9")
    assert len(out.stderr.strip().splitlines()) == 1


def test_parse_since_forms() -> None:
    now = 1_800_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("12h", now) == now - 12 * 3600
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * 86400
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-11-01T12:00+02:00", now) == datetime(2026, 11, 1, 10, tzinfo=timezone.utc).timestamp()
    with pytest.raises(click.BadParameter):
        parse_since("yesterday", now)
