"""The real ``fleetdeck`` command, run as a subprocess against a real server.

A user's mistake must print exactly one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetdeck._version import __version__
from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess, free_port

FLEETDECK = str(Path(sys.executable).with_name("fleetdeck"))

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(isolated_home: Path) -> Run:
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run([FLEETDECK, *args], capture_output=True, text=True, env=full_env, timeout=60)
    return run


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_the_commands(run: Run) -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("server", "tasks", "token", "version"):
        assert f"  {command} " in result.stdout
    assert run("tasks", "--help").returncode == 0 and "list" in run("tasks", "--help").stdout


def test_version(run: Run) -> None:
    result = run("version")
    assert result.returncode == 0 and result.stdout.strip() == f"fleetdeck {__version__}"


@pytest.fixture
def seeded(server: ServerProcess, client: Client) -> dict[str, str]:
    task = client.create_task(name="resnet-[red]lr0.1[/]", project="vision", tags=["sweep"],
                              hyperparams={"Args": {"lr": {"value": 0.1, "type": "float"}}})
    client.post_events(task["id"], {"scalars": [{"metric": "loss", "variant": "train", "iterations": [1, 2],
                                                  "values": [0.9, 0.4]}]})
    client.create_task(name="vit-base", project="nlp")
    return {"id": task["id"], "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}


def test_tasks_list_and_show(run: Run, seeded: dict[str, str]) -> None:
    env = {k: v for k, v in seeded.items() if k.startswith("FLEETDECK")}
    table = run("tasks", "list", env=env)
    assert table.returncode == 0, table.stderr
    assert "resnet-[red]lr0.1[/]" in table.stdout, "user text is printed literally, never as markup"
    assert "vit-base" in table.stdout and seeded["id"][:8] in table.stdout
    only = run("tasks", "list", "--project", "nlp", "--json", env=env)
    rows = [json.loads(line) for line in only.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["vit-base"]
    shown = run("tasks", "show", seeded["id"][:8], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Args/lr" in shown.stdout and "0.1" in shown.stdout and "loss" in shown.stdout and "0.4" in shown.stdout
    raw = json.loads(run("tasks", "show", seeded["id"], "--json", env=env).stdout)
    assert raw["id"] == seeded["id"]


def test_local_user_needs_no_configuration(run: Run, server: ServerProcess) -> None:
    """The server wrote the client config (url + token) on first start; the CLI just works."""
    result = run("tasks", "list")
    assert result.returncode == 0 and "no tasks match" in result.stdout, result.stderr


def test_unreachable_server(run: Run) -> None:
    result = run("tasks", "list", env={"FLEETDECK_SERVER_URL": f"http://127.0.0.1:{free_port()}",
                                       "FLEETDECK_API_TOKEN": "fd_x"})
    one_line_error(result, "cannot reach fleetdeck server at http://127.0.0.1:")


def test_bad_token(run: Run, server: ServerProcess) -> None:
    result = run("tasks", "list", env={"FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": "fd_wrong"})
    one_line_error(result, "refused the token", "401")


def test_no_token(run: Run, server: ServerProcess, isolated_home: Path) -> None:
    result = run("tasks", "list", env={"FLEETDECK_SERVER_URL": server.url,
                                       "FLEETDECK_CONFIG": str(isolated_home / "none.toml")})
    one_line_error(result, "no API token configured")


@pytest.mark.parametrize("task_id", ["0" * 32, "deadbeef", "../../etc"])
def test_unknown_task_id(run: Run, seeded: dict[str, str], task_id: str) -> None:
    env = {k: v for k, v in seeded.items() if k.startswith("FLEETDECK")}
    one_line_error(run("tasks", "show", task_id, env=env), "no task")


@pytest.mark.parametrize(("args", "fragment"), [
    (["tasks", "list", "--bogus"], "No such option '--bogus'"),
    (["tasks", "lst"], "No such command 'lst'"),
    (["tasks", "list", "--status", "nope"], "'nope' is not one of"),
    (["tasks", "list", "--limit", "0"], "--limit"),
    (["nosuch"], "No such command 'nosuch'"),
    (["token", "create"], "Missing option '--name'"),
    (["server", "--port", "99999"], "--port"),
])
def test_bad_flags(run: Run, args: list[str], fragment: str) -> None:
    one_line_error(run(*args), fragment)


def test_bad_config_file(run: Run, isolated_home: Path) -> None:
    config = isolated_home / "bad.toml"
    config.write_text("[server\nurl = ")
    one_line_error(run("tasks", "list", env={"FLEETDECK_CONFIG": str(config)}), "is not valid TOML")
    config.write_text('[server]\nurl = "ftp://x"\n')
    one_line_error(run("tasks", "list", env={"FLEETDECK_CONFIG": str(config)}), "must start with http://")


def test_server_port_taken(run: Run, server: ServerProcess, tmp_path: Path) -> None:
    result = run("server", "--data-dir", str(tmp_path / "other"), "--port", str(server.port))
    one_line_error(result, f"cannot listen on 127.0.0.1:{server.port}")
