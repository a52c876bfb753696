"""One server process per test module: dataset tests use their own dataset names, so they can share it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from fleetdeck.server_lite.process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``fleetdeck server`` process shared by the tests of one module."""
    root = tmp_path_factory.mktemp("dataset-server")
    proc = ServerProcess(root / "data", env={"XDG_CONFIG_HOME": str(root / "config")})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A dataset name unique to the test, so version numbers start at 1 on the shared server."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
