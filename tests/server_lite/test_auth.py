"""Authentication and roles, against a real server process.

The route walk reads the live route table of ``create_app`` (every router registered in
``ROUTERS``, including those added by later features), so a new route without authentication
fails here without anyone having to list it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetdeck.client import Client
from fleetdeck.config import config_path, load_file
from fleetdeck.errors import AuthError
from fleetdeck.server_lite.app import create_app
from fleetdeck.server_lite.process import ServerProcess
from fleetdeck.server_lite.runner import open_state

PUBLIC = {("GET", "/health")}


def _flat_routes(routes: list[Any]) -> list[tuple[str, set[str] | None]]:
    """(path template, methods) of every route, looking inside included routers (FastAPI >= 0.13x)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are already flat
        return [(route.path, getattr(route, "methods", None)) for route in routes]
    return [(ctx.path, ctx.methods) for ctx in iter_route_contexts(routes)]


def live_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the app, path parameters filled with plausible ids."""
    state = open_state(tmp_path / "walk-state")
    try:
        app = create_app(state)
        out = []
        for template, methods in _flat_routes(app.routes):
            assert methods, f"route {template} has no HTTP methods (a mount or websocket?): teach this test to check it"
            path = re.sub(r"\{(\w+)(:\w+)?\}",
                          lambda m: "ab" * 32 if "sha" in m.group(1) else "0" * 32, template)
            out += [(method, path) for method in sorted(methods)]
        return out
    finally:
        state.store.close()


def test_every_route_but_health_refuses_a_missing_or_wrong_token(server: ServerProcess, tmp_path: Path) -> None:
    routes = live_routes(tmp_path)
    assert ("GET", "/tasks") in routes and ("POST", "/tokens") in routes and ("GET", "/openapi.json") in routes
    assert len(routes) > 20
    checked = 0
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for method, path in routes:
            if (method, path) in PUBLIC:
                assert http.request(method, path).status_code == 200
                continue
            for headers in ({}, {"Authorization": "Bearer fd_not-a-real-token"}, {"Authorization": "Basic eDp5"},
                            {"Authorization": f"Bearer {server.admin_token}x"}):
                response = http.request(method, path, headers=headers)
                assert response.status_code == 401, f"{method} {path} with {headers}: {response.status_code}"
                if method != "HEAD":
                    assert response.json()["detail"], "a 401 says why"
                checked += 1
    assert checked == 4 * (len(routes) - len(PUBLIC))


def test_token_lifecycle_through_the_cli(server: ServerProcess) -> None:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleetdeck.app", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    created = cli("token", "create", "--name", "ci-runner", "--role", "user")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("fd_") and "not shown again" in created.stderr
    token_id = re.search(r"token ([0-9a-f]{32})", created.stderr).group(1)  # type: ignore[union-attr]

    listing = cli("token", "list")
    assert listing.returncode == 0 and "ci-runner" in listing.stdout and token_id in listing.stdout
    assert secret not in listing.stdout, "secrets are never listed"

    with Client(url=server.url, token=secret) as user:
        assert user.create_task(name="t", project="p")["user"] == "ci-runner"

    revoked = cli("token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in cli("token", "list").stdout
    with Client(url=server.url, token=secret) as user, pytest.raises(AuthError, match="401"):
        user.list_tasks()
    again = cli("token", "revoke", "f" * 32)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr


def test_tokens_are_stored_hashed(server: ServerProcess, client: Client) -> None:
    secret = client.create_token("hash-check", "agent")["token"]
    server.stop()  # compact, so the snapshot holds every token record
    blobs = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file() and p.name != "admin-token")
    assert secret.encode() not in blobs and server.admin_token.encode() not in blobs
    server.start()


@pytest.mark.parametrize("role", ["agent", "user"])
def test_only_admins_manage_tokens(server: ServerProcess, client: Client, role: str) -> None:
    secret = client.create_token(f"a-{role}", role)["token"]
    with Client(url=server.url, token=secret) as limited:
        with pytest.raises(AuthError, match="403.*admin role"):
            limited.create_token("escalate", "admin")
        with pytest.raises(AuthError, match="403"):
            limited.list_tokens()
        with pytest.raises(AuthError, match="403"):
            limited.revoke_token(client.list_tokens()[0]["id"])
        limited.list_tasks()  # but the token works where its role allows


def test_agent_cannot_delete_tasks_but_user_can(server: ServerProcess, client: Client) -> None:
    task = client.create_task(name="doomed", project="p")
    agent = client.create_token("agent-1", "agent")["token"]
    with Client(url=server.url, token=agent) as limited, pytest.raises(AuthError, match="403"):
        limited.request("DELETE", f"/tasks/{task['id']}")
    assert client.get_task(task["id"])["name"] == "doomed"


def test_first_start_writes_admin_token_and_client_config_mode_600(server: ServerProcess) -> None:
    token_file = server.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    path = config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_file(path)["server"] == {"url": server.url, "token": server.admin_token}
    with Client() as local:  # a local user needs no manual step
        assert local.list_tasks()["items"] == []


def test_restart_does_not_mint_a_second_admin_token(server: ServerProcess, client: Client) -> None:
    before = server.admin_token
    server.restart()
    assert server.admin_token == before
    assert [t["name"] for t in client.list_tokens()] == ["bootstrap-admin"]
