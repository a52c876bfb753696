"""What every executor gives the agent: a prepared environment that starts a job, and the running job.

An executor's ``prepare`` is the agent's ``installing`` (venv) or ``pulling`` (Docker) phase; its
``Launcher.start`` begins the ``running`` phase. Output arrives line by line through ``on_line``
from reader threads; the agent batches it to the server.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from fleetdeck.fleet.code import Checkout

OnLine = Callable[[str, str], None]
"""Called with (stream, line) for each line the job prints; stream is "stdout" or "stderr"."""


@dataclass(frozen=True)
class JobSpec:
    """Everything an executor needs to start one task's job."""

    task: dict[str, Any]
    """The task document (with ``script`` details)."""
    checkout: Checkout
    env: dict[str, str]
    """Variables for the job: ``FLEETDECK_TASK_ID``, the server URL and the task-scoped token."""
    gpus: list[str] | None = None
    """GPU ids for the job; None leaves the host's default, [] hides every GPU."""
    argv: list[str] = field(default_factory=list)
    """Extra arguments after the entry point."""


class RunningJob(abc.ABC):
    """A started job."""

    pid: int | None = None
    """The job's process id on this host, where there is one."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""

    @abc.abstractmethod
    def stop(self, grace_s: float) -> None:
        """SIGTERM, up to ``grace_s`` to exit, then SIGKILL; returns once the job is gone."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the job held (a container) after it ended and its output was read."""


class Launcher(abc.ABC):
    """A prepared environment that can start the job."""

    @abc.abstractmethod
    def start(self, spec: JobSpec, on_line: OnLine) -> RunningJob:
        """Start the job; its output goes to ``on_line``."""


class Executor(abc.ABC):
    """One way of running tasks (a venv on the host, a Docker container)."""

    prepare_phase: str = "installing"
    """The phase name reported while ``prepare`` runs."""

    @abc.abstractmethod
    def prepare(self, task: dict[str, Any], deadline: float | None) -> contextlib.AbstractContextManager[Launcher]:
        """Make the task's environment ready (held until the context exits); honour ``deadline``."""


def pump_lines(stream: IO[bytes], name: str, on_line: OnLine) -> threading.Thread:
    """Read ``stream`` line by line in a daemon thread, decoding as UTF-8 (bad bytes replaced)."""

    def run() -> None:
        with contextlib.closing(stream):
            for raw in iter(stream.readline, b""):
                on_line(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    thread = threading.Thread(target=run, name=f"job-{name}", daemon=True)
    thread.start()
    return thread


def iter_chunks_as_lines(chunks: Iterator[bytes], name: str, on_line: OnLine) -> None:
    """Split a byte stream that arrives in arbitrary chunks (Docker logs) into lines."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            on_line(name, raw.decode("utf-8", errors="replace").rstrip("\r"))
    if pending:
        on_line(name, pending.decode("utf-8", errors="replace").rstrip("\r"))
