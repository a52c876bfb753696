"""Run a task in a cached virtualenv on the agent's host, as its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

from fleetdeck.fleet.executors.base import Executor, JobSpec, Launcher, OnLine, RunningJob, pump_lines
from fleetdeck.fleet.venv_cache import Venv, VenvCache, task_requirements

_DROPPED_ENV_PREFIXES = ("FLEETDECK_",)
_DROPPED_ENV = {"SSH_AUTH_SOCK", "GIT_ASKPASS", "SSH_ASKPASS"}
"""The agent's own credentials never reach a job: its token and config, its SSH agent and git helpers."""


def job_environment(spec: JobSpec, path_prefix: str) -> dict[str, str]:
    """The agent's environment minus its credentials, plus the job's variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in _DROPPED_ENV and not k.startswith(_DROPPED_ENV_PREFIXES)}
    env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # An empty config path: the job's client must not find the agent's config file and token.
    env["FLEETDECK_CONFIG"] = os.devnull
    if spec.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpus)
    env.update(spec.env)
    return env


class ProcessJob(RunningJob):
    """A job process and everything it starts (one session, so one process group)."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], on_line: OnLine) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [pump_lines(self.proc.stdout, "stdout", on_line),
                         pump_lines(self.proc.stderr, "stderr", on_line)]
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self, grace_s: float) -> None:
        with self._lock:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
            self._signal(signal.SIGKILL)  # also reaps children that outlived the leader
            self.proc.wait()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class VenvLauncher(Launcher):
    def __init__(self, venv: Venv) -> None:
        self.venv = venv

    def start(self, spec: JobSpec, on_line: OnLine) -> RunningJob:
        argv = [str(self.venv.python), "-u", spec.checkout.entry_point, *spec.argv]
        env = job_environment(spec, str(self.venv.path / "bin"))
        env["VIRTUAL_ENV"] = str(self.venv.path)
        return ProcessJob(argv, str(spec.checkout.cwd), env, on_line)


class VenvExecutor(Executor):
    """Runs tasks with the host's Python in a venv holding the task's recorded packages."""

    kind = "venv"
    prepare_phase = "installing"

    def __init__(self, cache: VenvCache) -> None:
        self.cache = cache
        self.last_venv: Venv | None = None
        """The venv of the latest task (``installed`` says whether it was a cache miss)."""

    @contextlib.contextmanager
    def prepare(self, task: dict[str, Any], deadline: float | None,
                cancel: threading.Event | None = None) -> Iterator[Launcher]:
        with self.cache.use(task_requirements(task), deadline, cancel) as venv:
            self.last_venv = venv
            yield VenvLauncher(venv)
