"""What every executor gives the agent: a prepared environment that starts a job, and the running job.

An executor's ``prepare`` is the agent's ``installing`` (venv) or ``pulling`` (Docker) phase; its
``Launcher.start`` begins the ``running`` phase. Output arrives line by line through ``on_line``
from reader threads; the agent batches it to the server.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    kind: str = "venv"
    """Shown in the agent's heartbeat stats."""
    prepare_phase: str = "installing"
    """The phase name reported while ``prepare`` runs."""

    @abc.abstractmethod
    def prepare(self, task: dict[str, Any], deadline: float | None,
                cancel: threading.Event | None = None) -> contextlib.AbstractContextManager[Launcher]:
        """Make the task's environment ready (held until the context exits).

        Work stops at ``deadline`` (monotonic) or as soon as ``cancel`` is set (the task was aborted).
        """


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


class CommandFailed(Exception):
    """A setup command failed, timed out or was cancelled; the message is one line."""


def run_command(argv: list[str], what: str, *, timeout_s: float | None = None,
                cancel: threading.Event | None = None, cwd: str | os.PathLike[str] | None = None,
                env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run a setup command (git, pip) in its own process group; its stdout on success.

    It is killed (the whole group) at ``timeout_s`` or when ``cancel`` is set, so an abort does not
    wait for a long install.

    Raises:
        CommandFailed: naming ``what`` and the command's last error line, the timeout or the abort.
    """
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    except FileNotFoundError:
        raise CommandFailed(f"{what} failed: {argv[0]} is not installed") from None
    result: dict[str, str] = {}
    talker = threading.Thread(target=lambda: result.update(zip(("out", "err"), proc.communicate(stdin))),
                              daemon=True)
    talker.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while talker.is_alive():
        talker.join(0.1)
        stop = None
        if cancel is not None and cancel.is_set():
            stop = f"{what} was cancelled (the task was aborted)"
        elif deadline is not None and time.monotonic() > deadline:
            stop = f"{what} did not finish within {timeout_s:.0f}s"
        if stop:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            talker.join()
            raise CommandFailed(stop)
    if proc.returncode != 0:
        lines = [line for line in (result.get("err") or result.get("out") or "").strip().splitlines() if line.strip()]
        raise CommandFailed(f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return result.get("out", "")
