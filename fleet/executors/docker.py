"""Run a task in a container of a pre-built image (docker SDK).

The image already holds the job's dependencies: nothing is installed inside unless the task's
image says so itself. The container is locked down whatever the task asks: no ``--privileged``,
no capabilities, no new privileges, no Docker socket, one bind mount (the task's own work dir),
memory and CPU limits, host loopback networking (so it reaches the server on 127.0.0.1 and never
sits on Docker's bridge), GPUs only through device requests, and in its environment only the
job's variables with the task-scoped token, never the agent's credentials.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet.executors.base import (
    Executor, JobSpec, Launcher, OnLine, RunningJob, iter_chunks_as_lines,
)

WORK_MOUNT = "/work"
"""Where the task's work dir (its code checkout) appears inside the container."""


class DockerError(FleetdeckError):
    """The Docker engine or image cannot run the task (absent, too large, engine down)."""


@dataclass(frozen=True)
class DockerSettings:
    image: str
    """The agent's image; a task's ``runtime.docker_image`` overrides it."""
    python: str = "python3"
    """The interpreter inside the image."""
    memory: str = "8g"
    """Memory limit (Docker syntax: 512m, 8g)."""
    cpus: float = 2.0
    """CPU limit in cores."""
    max_image_bytes: int = 30 * 1024**3
    """Images larger than this are refused."""
    registry: str | None = None
    """Pull a missing image from here; None means images must already be on the host."""


def container_options(settings: DockerSettings, spec: JobSpec, work_dir: str, name: str) -> dict[str, Any]:
    """The ``containers.create`` arguments for a job (pure, so the security settings are testable)."""
    from docker.types import DeviceRequest

    relative_cwd = os.path.relpath(spec.checkout.cwd, spec.checkout.root)
    options: dict[str, Any] = {
        "command": [settings.python, "-u", spec.checkout.entry_point, *spec.argv],
        "name": name,
        "working_dir": os.path.normpath(f"{WORK_MOUNT}/{relative_cwd}"),
        "environment": {"PYTHONUNBUFFERED": "1", "HOME": "/tmp", **spec.env},
        "volumes": {work_dir: {"bind": WORK_MOUNT, "mode": "rw"}},
        "network_mode": "host",
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "user": f"{os.getuid()}:{os.getgid()}",
        "mem_limit": settings.memory,
        "nano_cpus": int(settings.cpus * 1e9),
        "pids_limit": 4096,
        "labels": {"fleetdeck.task": str(spec.task["id"])},
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }
    if spec.gpus:
        options["device_requests"] = [DeviceRequest(device_ids=list(spec.gpus), capabilities=[["gpu"]])]
        options["environment"]["NVIDIA_VISIBLE_DEVICES"] = ",".join(spec.gpus)
    elif spec.gpus == []:
        options["environment"]["NVIDIA_VISIBLE_DEVICES"] = "void"
    return options


class ContainerJob(RunningJob):
    def __init__(self, container: Any, on_line: OnLine) -> None:
        self.container = container
        self.pid = None
        self._readers = [self._pump("stdout", on_line), self._pump("stderr", on_line)]
        self._exit: int | None = None
        self._done = threading.Event()
        threading.Thread(target=self._wait, name="job-container-wait", daemon=True).start()

    def _pump(self, stream: str, on_line: OnLine) -> threading.Thread:
        def run() -> None:
            chunks = self.container.logs(stdout=stream == "stdout", stderr=stream == "stderr", stream=True,
                                         follow=True)
            iter_chunks_as_lines(chunks, stream, on_line)

        thread = threading.Thread(target=run, name=f"job-container-{stream}", daemon=True)
        thread.start()
        return thread

    def _wait(self) -> None:
        import docker.errors
        import requests.exceptions

        try:
            self._exit = int(self.container.wait()["StatusCode"])
        except (docker.errors.APIError, requests.exceptions.RequestException):
            self._exit = 137  # removed while waiting: it was stopped
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            return None
        for reader in self._readers:
            reader.join(timeout=5)
        return self._exit

    def stop(self, grace_s: float) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.container.stop(timeout=max(1, int(round(grace_s))))  # SIGTERM, grace, SIGKILL
        self._done.wait(10)
        self.close()

    def close(self) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


class DockerLauncher(Launcher):
    def __init__(self, executor: DockerExecutor, image: str) -> None:
        self.executor = executor
        self.image = image

    def start(self, spec: JobSpec, on_line: OnLine) -> RunningJob:
        import docker.errors

        settings = DockerSettings(**{**self.executor.settings.__dict__, "image": self.image})
        name = f"fleetdeck-{spec.task['id'][:12]}-{os.getpid()}-{threading.get_ident() % 100000}"
        options = container_options(settings, spec, str(spec.checkout.root), name)
        try:
            container = self.executor.client.containers.create(self.image, **options)
        except docker.errors.APIError as exc:
            raise DockerError(f"cannot create a container of {self.image}: {exc.explanation or exc}") from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise DockerError(f"cannot start a container of {self.image}: {exc.explanation or exc}") from None
        return ContainerJob(container, on_line)


class DockerExecutor(Executor):
    """Runs tasks in containers of the agent's (or the task's) pre-built image."""

    kind = "docker"
    prepare_phase = "pulling"

    def __init__(self, settings: DockerSettings) -> None:
        import docker
        import docker.errors

        self.settings = settings
        try:
            self.client = docker.from_env(timeout=60)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise DockerError(f"the Docker engine does not answer: {exc}") from None

    def image_for(self, task: dict[str, Any]) -> str:
        return str((task.get("runtime") or {}).get("docker_image") or self.settings.image)

    def check_image(self, image: str) -> None:
        """Make sure ``image`` is on the host and within the size limit.

        Raises:
            DockerError: absent (a pull is tried only when a registry is configured) or too large.
        """
        import docker.errors

        try:
            found = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            if not self.settings.registry:
                raise DockerError(f"docker image {image!r} is not on this host and no registry is configured; "
                                  "build or load it first") from None
            try:
                found = self.client.images.pull(f"{self.settings.registry.rstrip('/')}/{image}")
            except docker.errors.APIError as exc:
                raise DockerError(f"cannot pull docker image {image!r} from {self.settings.registry}: "
                                  f"{exc.explanation or exc}") from None
        size = int(found.attrs.get("Size") or 0)
        if size > self.settings.max_image_bytes:
            raise DockerError(f"docker image {image!r} is {size / 1024**3:.1f} GiB, over the "
                              f"{self.settings.max_image_bytes / 1024**3:.1f} GiB limit; refused")

    @contextlib.contextmanager
    def prepare(self, task: dict[str, Any], deadline: float | None,
                cancel: threading.Event | None = None) -> Iterator[Launcher]:
        image = self.image_for(task)
        self.check_image(image)
        yield DockerLauncher(self, image)
