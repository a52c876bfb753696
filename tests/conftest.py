"""Shared fixtures: an isolated config home per test and real server processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own XDG dirs, so no test reads or writes the user's real config."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache")):
        monkeypatch.setenv(var, str(home / sub))
    for var in ("FLEETDECK_SERVER_URL", "FLEETDECK_API_TOKEN", "FLEETDECK_CONFIG", "FLEETDECK_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def server(tmp_path: Path, isolated_home: Path) -> Iterator[ServerProcess]:
    """A real ``fleetdeck server`` process with an empty data dir."""
    proc = ServerProcess(tmp_path / "server-data", env={"XDG_CONFIG_HOME": str(isolated_home / "config")})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    """An admin client of the ``server`` fixture."""
    with Client(url=server.url, token=server.admin_token) as c:
        yield c
