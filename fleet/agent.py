"""The agent: takes leased tasks from queues and runs them, one at a time per GPU set.

Each slot (one per GPU set, or a single slot) long-polls ``/queues/dequeue`` over the agent's
queues in priority order, so a task starts as soon as it is enqueued, and heartbeats every
``heartbeat_s`` with the agent's health. The heartbeat renews the task's lease; its reply says
whether the task was aborted (or the lease lost), and the job is then stopped: SIGTERM, a grace
period, SIGKILL (the whole process group, or the container).

A run goes through phases, each reported with timestamps in ``runtime.agent`` and each with its own
timeout: cloning, installing (venv) or pulling (Docker), starting, running, uploading. Console
lines stream to the server in small batches under the task's lease; exit 0 completes the task,
anything else fails it with the tail of stderr. The job gets a token scoped to its own task.

When the server goes away the slots keep retrying with backoff and resume on reconnect; the
leases (journaled on the server) carry over.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError, RequestRejected
from fleetdeck.fleet import code
from fleetdeck.fleet.executors.base import Executor, JobSpec, RunningJob

log = logging.getLogger("fleetdeck.agent")

PHASES = ("cloning", "installing", "pulling", "starting", "running", "uploading")
DEFAULT_PHASE_TIMEOUTS: dict[str, float | None] = {
    "cloning": 600, "installing": 1800, "pulling": 1800, "starting": 120, "running": None, "uploading": 300}
"""Seconds per phase (None: no limit); ``--phase-timeout running=3600`` sets one."""
LEASE_HEADER = "X-Fleetdeck-Lease"
ABORTING_STATUSES = {"aborted", "stopped", "created", "queued"}
"""Statuses that stop a running job; completed/failed are the job's own report of its end."""
STDERR_TAIL_LINES = 20


@dataclass
class AgentConfig:
    """How an agent runs; every field has a ``fleetdeck agent`` option."""

    queues: list[str]
    """Queue names, highest priority first."""
    name: str = field(default_factory=socket.gethostname)
    """Worker name as the server shows it (slots add ``:gpuN``)."""
    gpu_sets: list[list[str]] | None = None
    """One slot per GPU set; None leaves GPUs alone (one slot), [[]] hides them (CPU only)."""
    work_dir: Path = Path("fleetdeck-agent")
    """Where task checkouts go (one folder per run, removed after it)."""
    lease_s: float = 15.0
    """Lease length; a dead agent's task is requeued about this long after its last heartbeat."""
    heartbeat_s: float = 2.0
    poll_wait_s: float = 20.0
    """How long one dequeue long-poll waits on the server."""
    abort_grace_s: float = 5.0
    """Seconds between SIGTERM and SIGKILL when a task is aborted."""
    phase_timeouts: dict[str, float | None] = field(default_factory=lambda: dict(DEFAULT_PHASE_TIMEOUTS))
    keep_work_dirs: bool = False


class Aborted(Exception):
    """The task was aborted or its lease lost while a phase ran."""


class Run:
    """One leased task on one slot: phases, console shipping, the abort signal."""

    def __init__(self, client: Client, task: dict[str, Any], lease: dict[str, Any], token: str,
                 timeouts: dict[str, float | None]) -> None:
        self.client = client
        self.task = task
        self.task_id: str = task["id"]
        self.lease = lease
        self.token = token
        self.timeouts = timeouts
        self.headers = {LEASE_HEADER: lease["id"]}
        self.phase = "starting"
        self.phase_started = time.time()
        self.phases: dict[str, dict[str, float | None]] = {}
        self.last_output_ts: float | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.abort_reason: str | None = None
        self.lease_lost = False
        self.timed_out = False
        self.grace_s = 5.0
        self.aborted = threading.Event()
        self.job: RunningJob | None = None
        self.extra: dict[str, Any] = {}
        self.console = ConsoleShipper(self)

    # -- phases ----------------------------------------------------------------------------

    def deadline(self) -> float | None:
        limit = self.timeouts.get(self.phase)
        return None if limit is None else time.monotonic() + limit

    def start_phase(self, name: str) -> float | None:
        """Enter a phase and report it; returns its deadline (monotonic) or None."""
        if self.aborted.is_set() and name != "uploading":
            raise Aborted(self.abort_reason)
        self.phase = name
        self.phase_started = time.time()
        self.phases[name] = {"started": self.phase_started, "ended": None}
        self.report()
        return self.deadline()

    def end_phase(self) -> None:
        if self.phase in self.phases:
            self.phases[self.phase]["ended"] = time.time()

    @contextlib.contextmanager
    def in_phase(self, name: str) -> Iterator[float | None]:
        deadline = self.start_phase(name)
        yield deadline
        self.end_phase()

    def report(self) -> None:
        """Record phases in ``runtime.agent`` (best effort: a failure is logged, the run goes on)."""
        try:  # merge: the job's own SDK writes runtime fields too
            current = self.client.get(f"/tasks/{self.task_id}", details=False).get("runtime") or {}
        except FleetdeckError as exc:
            log.warning("task %s: phase report failed: %s", self.task_id, exc)
            return
        runtime = {**current, "agent": {
            "phase": self.phase, "phase_started": self.phase_started, "phases": self.phases,
            "lease": self.lease["id"], **self.extra}}
        try:
            self.client.request("PATCH", f"/tasks/{self.task_id}", json={"runtime": runtime},
                                headers=self.headers, idempotent=True)
        except FleetdeckError as exc:
            self.server_refused(exc, "phase report")

    # -- abort -----------------------------------------------------------------------------

    def abort(self, reason: str, lease_lost: bool = False) -> None:
        if self.aborted.is_set():
            return
        self.abort_reason = reason
        self.lease_lost = lease_lost
        self.aborted.set()
        log.warning("task %s: %s; stopping it", self.task_id, reason)

    def server_refused(self, exc: FleetdeckError, what: str) -> None:
        if isinstance(exc, RequestRejected) and exc.status_code == 409:
            self.abort("the task's lease was lost (requeued or reassigned)", lease_lost=True)
        else:
            log.warning("task %s: %s failed: %s", self.task_id, what, exc)

    # -- output ----------------------------------------------------------------------------

    def on_line(self, stream: str, line: str) -> None:
        self.last_output_ts = time.time()
        if stream == "stderr":
            self.stderr_tail.append(line)
        self.console.add(line, stream)

    def supervise(self, job: RunningJob, deadline: float | None) -> int | None:
        """Wait for the job; stop it on abort or at the deadline. The exit code, or None when stopped."""
        while True:
            exit_code = job.wait(0.2)
            if exit_code is not None:
                return exit_code
            if deadline is not None and time.monotonic() > deadline and not self.aborted.is_set():
                self.timed_out = True
                self.abort(f"phase running timed out after {self.timeouts.get('running'):.0f}s")
            if self.aborted.is_set():
                job.stop(self.grace_s)
                return None


class ConsoleShipper:
    """Batches console lines and posts them every 0.25 s under the task's lease (exactly once)."""

    def __init__(self, run: Run, interval_s: float = 0.25, max_pending: int = 100_000) -> None:
        self.run = run
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"console-{run.task_id[:8]}", daemon=True)
        self._thread.start()

    def add(self, line: str, stream: str) -> None:
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._pending.pop(0)
                self._dropped += 1
            self._pending.append({"line": line, "stream": stream, "ts": time.time()})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> bool:
        """Send what is pending; False if the server did not take it (kept for the next try)."""
        while not self.run.lease_lost:
            with self._lock:
                batch, self._pending = self._pending[:5000], self._pending[5000:]
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.insert(0, {"line": f"[fleetdeck agent: {dropped} console lines dropped while the server "
                                         "was unreachable]", "stream": "stderr", "ts": time.time()})
            if not batch:
                return True
            body = {"batch_id": uuid.uuid4().hex, "console": batch}
            try:
                self.run.client.request("POST", f"/tasks/{self.run.task_id}/events", json=body,
                                        headers=self.run.headers, idempotent=True)
            except FleetdeckError as exc:
                self.run.server_refused(exc, "console upload")
                if not self.run.lease_lost:
                    with self._lock:
                        self._pending[:0] = batch
                return False
        return True

    def close(self, timeout_s: float) -> bool:
        """Stop the background thread and send the rest, retrying until ``timeout_s``."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout_s
        while not self.flush():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


class Slot:
    """One worker identity on the server, running one task at a time on one GPU set."""

    def __init__(self, agent: Agent, name: str, gpus: list[str] | None) -> None:
        self.agent = agent
        self.name = name
        self.gpus = gpus
        self.client = agent.new_client()
        self.heartbeat_client = agent.new_client()  # heartbeats never queue behind a long-poll or an upload
        self.run: Run | None = None
        self.tasks_done = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    # -- heartbeats ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        run = self.run
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            cpu = self._process.cpu_percent(None)
        job_pid = run.job.pid if run is not None and run.job is not None else None
        return {"rss": rss, "cpu_percent": cpu, "pid": os.getpid(), "task_id": run.task_id if run else None,
                "phase": run.phase if run else None, "phase_started": run.phase_started if run else None,
                "last_output_ts": run.last_output_ts if run else None, "job_pid": job_pid,
                "gpus": ",".join(self.gpus) if self.gpus is not None else "all", "tasks_done": self.tasks_done,
                "executor": self.agent.executor.kind}

    def heartbeat(self) -> None:
        run = self.run
        config = self.agent.config
        reply = self.heartbeat_client.heartbeat(self.name, queues=config.queues, status="busy" if run else "idle",
                                      task_id=run.task_id if run else None, host=socket.gethostname(),
                                      ttl_s=max(10.0, config.heartbeat_s * 5), stats=self.stats())
        state = reply.get("task") if run else None
        if run is None or state is None or state.get("id") != run.task_id:
            return
        if state.get("lease") == "lost":
            run.abort("the task's lease was lost (requeued or reassigned)", lease_lost=True)
        elif state.get("status") in ABORTING_STATUSES:
            run.abort(f"task status changed to {state['status']}")

    def heartbeat_loop(self) -> None:
        failing = False
        while not self.agent.stopping.is_set():
            try:
                self.heartbeat()
                if failing:
                    log.info("%s: heartbeats reach the server again", self.name)
                failing = False
            except FleetdeckError as exc:
                if not failing:
                    log.warning("%s: heartbeat failed: %s", self.name, exc)
                failing = True
            self.agent.stopping.wait(self.agent.config.heartbeat_s)

    # -- work ------------------------------------------------------------------------------

    def work_loop(self) -> None:
        config = self.agent.config
        backoff = 0.5
        while not self.agent.stopping.is_set():
            try:
                taken = self.client.post(
                    "/queues/dequeue", {"queues": config.queues, "worker": self.name, "wait_s": config.poll_wait_s,
                                        "lease_s": config.lease_s},
                    timeout=self.client.settings.timeout_s + config.poll_wait_s)
                backoff = 0.5
            except FleetdeckError as exc:
                log.warning("%s: cannot take work: %s (retrying in %.1fs)", self.name, exc, backoff)
                self.agent.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if taken.get("task") is None:
                continue
            self.execute(taken)
            self.tasks_done += 1
            if self.agent.max_tasks is not None and self.agent.total_done() >= self.agent.max_tasks:
                self.agent.stopping.set()

    def execute(self, taken: dict[str, Any]) -> None:
        config = self.agent.config
        run = Run(self.client, taken["task"], taken["lease"], taken["token"], config.phase_timeouts)
        run.grace_s = config.abort_grace_s
        self.run = run
        attempt = taken["task"].get("attempt", 1)
        work = config.work_dir / f"{run.task_id}-{attempt}-{uuid.uuid4().hex[:6]}"
        log.info("%s: running task %s (attempt %s)", self.name, run.task_id, attempt)
        exit_code: int | None = None
        failure: str | None = None
        try:
            exit_code = self._phases(run, work)
        except Aborted:
            pass
        except (FleetdeckError, OSError) as exc:
            failure = f"phase {run.phase} failed: {exc}"
            log.warning("task %s: %s", run.task_id, failure)
        except Exception as exc:  # an agent bug or a library error: fail this task, keep serving
            failure = f"phase {run.phase} failed: agent error {type(exc).__name__}: {exc}"
            log.exception("task %s: %s", run.task_id, failure)
        finally:
            run.end_phase()
            if run.lease_lost:
                run.console.close(timeout_s=0)
            else:
                run.start_phase("uploading")
                run.console.close(timeout_s=config.phase_timeouts.get("uploading") or 300)
                run.end_phase()
                run.report()
            self._finish(run, exit_code, failure)
            self.run = None
            if not config.keep_work_dirs:
                shutil.rmtree(work, ignore_errors=True)

    def _phases(self, run: Run, work: Path) -> int | None:
        executor = self.agent.executor
        client = self.client
        task = client.get_task(run.task_id)
        run.task = task
        with run.in_phase("cloning") as deadline:
            timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
            checkout = code.prepare(task.get("script") or {}, work, timeout, cancel=run.aborted)
        with contextlib.ExitStack() as stack:
            with run.in_phase(executor.prepare_phase) as deadline:
                launcher = stack.enter_context(executor.prepare(task, deadline, cancel=run.aborted))
                venv = getattr(executor, "last_venv", None)
                if venv is not None:
                    run.extra.update({"venv": venv.key, "venv_cache_hit": not venv.installed})
            env = {"FLEETDECK_TASK_ID": run.task_id, "FLEETDECK_SERVER_URL": client.url,
                   "FLEETDECK_API_TOKEN": run.token, "FLEETDECK_AGENT_CONSOLE": "1"}
            spec = JobSpec(task=task, checkout=checkout, env=env, gpus=self.gpus)
            with run.in_phase("starting"):
                job = launcher.start(spec, run.on_line)
                run.job = job
            try:
                with run.in_phase("running") as deadline:
                    return run.supervise(job, deadline)
            finally:
                job.close()

    def _finish(self, run: Run, exit_code: int | None, failure: str | None) -> None:
        """Set the final status (unless the job or the user already did) and release the lease."""
        if run.lease_lost:
            return
        status, reason = None, ""
        if failure is not None:
            status, reason = "failed", failure
        elif run.timed_out:
            status, reason = "failed", str(run.abort_reason)
        elif exit_code == 0:
            status, reason = "completed", "exit code 0"
        elif exit_code is not None:
            tail = "\n".join(run.stderr_tail)[-2000:]
            status, reason = "failed", f"exit code {exit_code}" + (f": {tail}" if tail else "")
        try:
            if status is not None:
                current = self.client.get_task(run.task_id)["status"]
                if current == "in_progress":
                    self.client.request("POST", f"/tasks/{run.task_id}/status", headers=run.headers,
                                        json={"status": status, "reason": reason})
                elif status == "failed" and current == "completed":
                    log.warning("task %s: the job marked itself completed but %s", run.task_id, reason)
            self.client.request("DELETE", f"/tasks/{run.task_id}/lease", headers=run.headers)
        except FleetdeckError as exc:
            log.warning("task %s: could not record the end of the run: %s", run.task_id, exc)


class Agent:
    """An agent process: one slot per GPU set, each with its own heartbeat and work threads.

    Args:
        config: queues, name, GPU sets, timeouts.
        executor: how jobs run (``VenvExecutor`` or ``DockerExecutor``).
        client_factory: makes a client (each slot gets one for its work and one for heartbeats).
        max_tasks: stop after this many tasks (tests and benchmarks); None runs until stopped.
    """

    def __init__(self, config: AgentConfig, executor: Executor, client_factory: Any,
                 max_tasks: int | None = None) -> None:
        self.config = config
        self.executor = executor
        self.new_client = client_factory
        self.max_tasks = max_tasks
        self.stopping = threading.Event()
        sets: list[list[str] | None] = list(config.gpu_sets) if config.gpu_sets else [None]
        self.slots = [Slot(self, config.name if len(sets) == 1 else f"{config.name}:gpu{'+'.join(s or [])}", s)
                      for s in sets]

    def total_done(self) -> int:
        return sum(s.tasks_done for s in self.slots)

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``max_tasks``); a running job is stopped on the way out."""
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        threads = []
        for slot in self.slots:
            for target, kind in ((slot.heartbeat_loop, "heartbeat"), (slot.work_loop, "work")):
                thread = threading.Thread(target=target, name=f"{kind}-{slot.name}", daemon=True)
                thread.start()
                threads.append(thread)
        log.info("agent %s serving queues %s with %d slot(s)", self.config.name, ", ".join(self.config.queues),
                 len(self.slots))
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop taking work; stop running jobs (their leases expire and the server requeues them)."""
        self.stopping.set()
        for slot in self.slots:
            run = slot.run
            if run is not None and run.job is not None:
                run.lease_lost = True  # we are leaving: let the lease expire so another agent reruns it
                run.job.stop(self.config.abort_grace_s)
            with contextlib.suppress(FleetdeckError):  # best effort: the heartbeat expires anyway
                slot.heartbeat_client.request("DELETE", f"/workers/{slot.name}")

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: Any) -> None:
            log.info("agent %s: signal %d, stopping", self.config.name, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
