"""Fixtures for agent tests: agent processes, a shared venv cache, a real Docker engine and image."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
PYTHON_IMAGE = "fleetdeck-test-python:bookworm"


@pytest.fixture(scope="session")
def venv_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the session's agents, as the agents of one host share it."""
    return tmp_path_factory.mktemp("venv-cache")


@pytest.fixture
def agent_token(client: Client) -> str:
    return str(client.post("/tokens", {"name": "test-agent", "role": "agent"})["token"])


AgentFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_agent(server: ServerProcess, agent_token: str, tmp_path: Path, venv_cache_dir: Path,
                isolated_home: Path) -> Iterator[AgentFactory]:
    """Start ``fleetdeck agent`` processes (each in its own session); all are stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, queues: tuple[str, ...] = ("default",), lease: float = 15,
              token: str | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"agent-{name}.log", "ab")
        argv = [sys.executable, "-m", "fleetdeck.app", "agent", "--name", name, "--lease", str(lease),
                "--heartbeat", "0.5", "--abort-grace", "1", "--work-dir", str(tmp_path / f"work-{name}"),
                "--venv-cache", str(venv_cache_dir), "--min-free", "100m", *args]
        for queue in queues:
            argv += ["--queue", queue]
        env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": token or agent_token,
               "XDG_CONFIG_HOME": str(isolated_home / "config")}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def agent_log(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"agent-{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


# -- Docker ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """The real Docker engine (started by scripts/start-dockerd.sh); tests skip when there is none."""
    docker = pytest.importorskip("docker")
    subprocess.run(["bash", str(REPO / "scripts" / "start-dockerd.sh")], check=False)
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def job_image(docker_client: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local Python image plus this checkout's fleetdeck SDK, installed from a freshly built wheel.

    The base image (debootstrap, ~2 min) is built once per machine; the layer with the wheel is
    tagged by the wheel's hash, so it is rebuilt only when the SDK changes.
    """
    built = subprocess.run(["bash", str(REPO / "tests" / "images" / "build-python-image.sh"), PYTHON_IMAGE],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"building {PYTHON_IMAGE} failed: {built.stderr[-2000:]}")
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("fleetdeck-*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    tag = f"fleetdeck-test-job:{digest}"
    client = docker_client
    try:
        client.images.get(tag)  # type: ignore[attr-defined]
        return tag
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound; docker is imported lazily
        pass
    site = "/opt/fleetdeck/lib/python3.11/site-packages"
    archive = io.BytesIO()
    with zipfile.ZipFile(wheel) as zf, tarfile.open(fileobj=archive, mode="w") as tar:
        for info in zf.infolist():  # a pure wheel installs by unpacking it into site-packages
            if info.is_dir():
                continue
            data = zf.read(info)
            member = tarfile.TarInfo(info.filename)
            member.size = len(data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))
    container = client.containers.create(PYTHON_IMAGE, command=["true"], network_mode="none")  # type: ignore[attr-defined]
    try:
        container.put_archive(site, archive.getvalue())
        container.commit(repository="fleetdeck-test-job", tag=digest)
    finally:
        container.remove(force=True)
    for old in client.images.list(name="fleetdeck-test-job"):  # type: ignore[attr-defined]
        if tag not in old.tags:  # layers of earlier SDK versions: not needed again
            client.images.remove(old.id, force=True)  # type: ignore[attr-defined]
    return tag
