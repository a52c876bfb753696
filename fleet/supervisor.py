"""The supervisor that runs on each fleet host and keeps its agent alive and healthy.

``python -m fleetdeck.fleet.supervisor ROOT`` reads ``ROOT/supervisor.json`` (written by
provisioning) and then, until told to stop:

- **crash**: when the agent exits on its own, it is started again after a capped exponential
  backoff (1 s doubling to 5 min by default; back to 1 s after 10 healthy minutes). After
  ``crash_loop_after`` consecutive crashes the host is reported as crash-looping, and the
  restarts go on: a supervisor never gives up silently.
- **leak**: the RSS of the agent's process tree (the agent and its helpers; jobs run in their own
  session and are not the agent's memory) is sampled; past ``memory_limit_mb``, or
  when its growth over ``leak_window_s`` exceeds ``leak_slope_mb_per_min``, the agent is restarted
  at the next safe point (no task running); past ``hard_limit_mb`` at once.
- **stuck**: :class:`~fleetdeck.fleet.triage.StuckDetector` flags silent tasks, setup phases over
  their timeout and idle GPUs, with evidence.

Every restart is appended to ``ROOT/run/restarts.jsonl`` with its reason and the memory curve
that caused it, and sent to the server; status goes to ``ROOT/run/status.json`` and the server
every ``sample_interval_s``. Signals: TERM/INT stop (agent first), HUP restarts the agent now (or
puts a drained host back to work), USR1 drains (stop the agent at the next safe point and do not
start it again).
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fleetdeck.fleet.inventory import AgentLimits
from fleetdeck.fleet.triage import Finding, Sample, StuckDetector, capture_evidence, finding_id, tail

LOG_ROTATE_BYTES = 64 * 1024 * 1024
STOP_GRACE_S = 10.0
CURVE_POINTS = 300
"""Memory samples kept for a restart record (the curve that caused it)."""


class Backoff:
    """Capped exponential backoff that resets after a long enough healthy run."""

    def __init__(self, initial_s: float, max_s: float, reset_after_s: float) -> None:
        self.initial_s, self.max_s, self.reset_after_s = initial_s, max_s, reset_after_s
        self.consecutive = 0

    def crashed(self, ran_for_s: float) -> float:
        """Record a crash after a run of ``ran_for_s``; returns the delay before the next start."""
        if ran_for_s >= self.reset_after_s:
            self.consecutive = 0
        self.consecutive += 1
        return min(self.initial_s * 2 ** (self.consecutive - 1), self.max_s)


class MemoryWatch:
    """RSS samples of the agent's tree; decides when memory calls for a restart."""

    def __init__(self, limits: AgentLimits) -> None:
        self.limits = limits
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=20_000)

    def add(self, ts: float, rss_mb: float) -> None:
        self.samples.append((ts, rss_mb))
        horizon = ts - max(self.limits.leak_window_s, 60.0) * 2
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()

    def reset(self) -> None:
        self.samples.clear()

    def slope_mb_per_min(self) -> float | None:
        """Least-squares growth over the last window; None until a whole window is sampled."""
        if not self.samples:
            return None
        end = self.samples[-1][0]
        window = [(t, m) for t, m in self.samples if t >= end - self.limits.leak_window_s]
        if len(window) < 3 or window[-1][0] - window[0][0] < 0.9 * self.limits.leak_window_s:
            return None
        n = len(window)
        mean_t = sum(t for t, _ in window) / n
        mean_m = sum(m for _, m in window) / n
        var = sum((t - mean_t) ** 2 for t, _ in window)
        if var == 0:
            return None
        return 60.0 * sum((t - mean_t) * (m - mean_m) for t, m in window) / var

    def verdict(self) -> tuple[str, str] | None:
        """(kind, reason) when a restart is due: kind ``hard_limit`` (now) or ``leak`` (at a safe point)."""
        if not self.samples:
            return None
        rss = self.samples[-1][1]
        lim = self.limits
        if rss > lim.hard_limit_mb:
            return "hard_limit", f"agent tree RSS {rss:.0f} MiB over the hard limit {lim.hard_limit_mb:.0f} MiB"
        if rss > lim.memory_limit_mb:
            return "leak", f"agent tree RSS {rss:.0f} MiB over the limit {lim.memory_limit_mb:.0f} MiB"
        slope = self.slope_mb_per_min()
        if slope is not None and slope > lim.leak_slope_mb_per_min:
            return "leak", (f"agent tree RSS growing {slope:.1f} MiB/min over {lim.leak_window_s:.0f}s "
                            f"(threshold {lim.leak_slope_mb_per_min:g} MiB/min), now {rss:.0f} MiB")
        return None

    def curve(self, since: float | None = None) -> list[list[float]]:
        points = [(t, m) for t, m in self.samples if since is None or t >= since]
        step = max(1, len(points) // CURVE_POINTS)
        picked = points[::step]
        if points and picked[-1] != points[-1]:
            picked.append(points[-1])
        return [[round(t, 3), round(m, 2)] for t, m in picked]


def tree_usage(pid: int) -> tuple[float, float, bool]:
    """(agent RSS MiB, CPU percent of the agent's descendants, whether it has any child).

    The agent's memory is the RSS of the processes of its tree that share its session: the agent
    and its helpers. Jobs run in their own session (the executors start them so), and a task's
    memory is the task's business; counting it would restart agents for every large job.
    """
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
        session = os.getsid(pid)
    except (psutil.Error, OSError):
        return 0.0, 0.0, False
    rss = 0
    cpu = 0.0
    for proc in [root, *children]:
        try:
            if os.getsid(proc.pid) == session:
                rss += proc.memory_info().rss
            if proc.pid != pid:
                cpu += _cpu_percent(proc)
        except (psutil.Error, OSError):
            continue
    return rss / 2**20, cpu, bool(children)


_CPU_CACHE: dict[int, psutil.Process] = {}


def _cpu_percent(proc: psutil.Process) -> float:
    """CPU percent since this process was last sampled (psutil needs the same object each time)."""
    cached = _CPU_CACHE.get(proc.pid)
    if cached is None or cached.create_time() != proc.create_time():
        _CPU_CACHE[proc.pid] = proc
        proc.cpu_percent(None)
        return 0.0
    return cached.cpu_percent(None)


@dataclass
class Config:
    host: str
    worker: str
    server_url: str
    token_file: str
    agent_command: list[str]
    venv: str = ""
    queues: list[str] = field(default_factory=list)
    limits: AgentLimits = field(default_factory=AgentLimits)

    @classmethod
    def load(cls, root: Path) -> Config:
        raw = json.loads((root / "supervisor.json").read_text())
        limits = AgentLimits.from_dict(raw.pop("limits", {}))
        return cls(limits=limits, **{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


class Reporter(threading.Thread):
    """Sends status, restarts and findings to the server from a background thread.

    The supervisor's loop never waits on the network: status is latest-wins; restarts and
    findings queue up (bounded) and are retried until the server takes them.
    """

    def __init__(self, config: Config, token: str) -> None:
        super().__init__(name="fleetdeck-reporter", daemon=True)
        from fleetdeck.client import Client
        from fleetdeck.config import ClientSettings

        self.client = Client(settings=ClientSettings(url=config.server_url, token=token, timeout_s=5.0, retries=0))
        self.host = config.host
        self.outbox: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue(maxsize=10_000)
        self._status: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.last_worker: dict[str, Any] | None = None
        self.errors = 0

    def status(self, status: dict[str, Any]) -> None:
        self._status = status
        self._wake.set()

    def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait((method, path, body))
        except queue.Full:
            print("supervisor: report queue full; dropping the oldest report", file=sys.stderr, flush=True)
            self.outbox.get_nowait()
            self.outbox.put_nowait((method, path, body))
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        from urllib.parse import quote

        from fleetdeck.errors import FleetdeckError

        pending: list[tuple[str, str, dict[str, Any]]] = []
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            while not self.outbox.empty():
                pending.append(self.outbox.get_nowait())
            try:
                status, self._status = self._status, None
                if status is not None:
                    self.client.request("PUT", f"/fleet/supervisors/{quote(self.host, safe='')}", json=status)
                while pending:
                    method, path, body = pending[0]
                    self.client.request(method, path, json=body, idempotent=True)
                    pending.pop(0)
                if status is not None:
                    self.last_worker = _agent_worker(self.client.list_workers(), status)
            except FleetdeckError as exc:
                self.errors += 1
                if self.errors in (1, 10) or self.errors % 100 == 0:
                    print(f"supervisor: cannot report to the server ({self.errors} failures): {exc}",
                          file=sys.stderr, flush=True)
            else:
                self.errors = 0
            flushed = self._status is None and self.outbox.empty() and not pending
            if self._stopping.is_set() and (flushed or self.errors):  # the final "stopped" goes out first
                self.client.close()
                return


def _agent_worker(workers: list[dict[str, Any]], status: dict[str, Any]) -> dict[str, Any] | None:
    """The agent's heartbeat: the worker with the agent's pid (an agent with GPU slots has one per
    slot, named ``NAME:gpuN``; a busy one wins), else the one named like the host's worker."""
    pid = status.get("agent_pid")
    mine = [w for w in workers if pid is not None and (w.get("stats") or {}).get("pid") == pid]
    mine = mine or [w for w in workers if w.get("id") == status.get("worker")]
    return next((w for w in mine if w.get("task_id")), mine[0] if mine else None)


class Supervisor:
    """Runs the agent and watches it. All state lives in one thread; signals only set flags."""

    def __init__(self, root: Path, config: Config, token: str, report: bool = True) -> None:
        self.root = root
        self.config = config
        self.limits = config.limits
        self.token = token
        self.log_file = root / "logs" / "agent.log"
        self.backoff = Backoff(self.limits.backoff_initial_s, self.limits.backoff_max_s, self.limits.backoff_reset_s)
        self.memory = MemoryWatch(self.limits)
        self.detector = StuckDetector(config.host, self.limits)
        self.reporter = Reporter(config, token) if report else None
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_started = 0.0
        self.next_start = 0.0
        self.restarts = 0
        self.pending: tuple[str, str] | None = None
        self.state = "starting"
        self.draining = False
        self._stop = False
        self._manual = False
        self._dead_finding: dict[str, Any] | None = None
        self._journal_lock = threading.Lock()

    # -- signals ---------------------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "_manual", True))
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "draining", True))

    def _on_stop(self, *_: object) -> None:
        self._stop = True

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        if self.reporter:
            self.reporter.start()
        try:
            while not self._stop:
                self.tick(time.time())
                self._sleep(self.limits.sample_interval_s)
        finally:
            self.stop_agent("supervisor stopping")
            self.state = "stopped"
            self._publish(time.time(), 0.0)
            if self.reporter:
                self.reporter.stop()

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the agent exits (so a crash is seen within ~0.1 s)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop and not self._manual:
            if self.agent is not None and self.agent.poll() is not None:
                return
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def tick(self, now: float) -> None:
        """One round: handle an exit, start when due, sample memory, act on leaks and stuck tasks."""
        if self.agent is not None and self.agent.poll() is not None:
            self._crashed(now)
        if self.agent is None:
            if self.draining:
                self.state = "drained"
            elif now >= self.next_start:
                self.start_agent(now)
        rss, cpu, busy = (0.0, 0.0, False)
        if self.agent is not None:
            rss, cpu, busy = tree_usage(self.agent.pid)
            self.memory.add(now, rss)
            self._memory_actions(now, busy)
            self._stuck(now, cpu)
            if self._dead_finding and now - self.agent_started > min(30.0, self.limits.backoff_reset_s):
                self._report_finding({**self._dead_finding, "state": "resolved",
                                      "resolution": "agent restarted by the supervisor and running"})
                self._dead_finding = None
        if self._manual:
            self._manual = False
            if self.agent is not None:
                self.restart(now, "manual", "restart requested (fleetdeck fleet restart / triage act)")
            elif self.draining:
                self.draining = False  # ``fleet restart`` puts a drained host back to work
                self.next_start = now
        if self.draining and self.agent is not None and not busy and not self._heartbeat_task():
            self.restart(now, "drain", "drained: stopped between tasks, not restarted")
        self._publish(now, rss)

    # -- agent process ---------------------------------------------------------------------

    def start_agent(self, now: float) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists() and self.log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(self.log_file, self.log_file.with_suffix(".log.1"))
        env = {**os.environ, "FLEETDECK_SERVER_URL": self.config.server_url, "FLEETDECK_API_TOKEN": self.token,
               "FLEETDECK_WORKER_NAME": self.config.worker, "PYTHONUNBUFFERED": "1"}
        with self.log_file.open("ab") as log:
            log.write(f"--- supervisor: starting agent at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            try:
                self.agent = subprocess.Popen(self.config.agent_command, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                              cwd=str(self.root))
            except OSError as exc:
                log.write(f"--- supervisor: cannot start {self.config.agent_command[0]}: {exc}\n".encode())
                self.agent = None
                self._after_crash(now, None, f"cannot start the agent: {exc}", 0.0)
                return
        self.agent_started = now
        self.memory.reset()
        self.state = "running"

    def stop_agent(self, why: str) -> int | None:
        """Stop the agent's process group: TERM, a grace period, then KILL. Returns its exit code."""
        agent, self.agent = self.agent, None
        if agent is None:
            return None
        if agent.poll() is None:
            try:
                os.killpg(agent.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                agent.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(agent.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                agent.wait()
        self._kill_group_leftovers(agent.pid)
        with self.log_file.open("ab") as log:
            log.write(f"--- supervisor: stopped agent ({why})\n".encode())
        return agent.returncode

    @staticmethod
    def _kill_group_leftovers(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self, now: float, kind: str, reason: str, at_safe_point: bool = True) -> None:
        """Stop the agent, record why with the memory curve, and start it again (unless draining)."""
        curve = self.memory.curve()
        rss = self.memory.samples[-1][1] if self.memory.samples else None
        code = self.stop_agent(reason)
        self.pending = None
        self._record(now, kind, reason, code, 0.0, rss, at_safe_point, curve)
        if kind == "drain":
            self.state = "drained"
            return
        self.start_agent(time.time())

    def _crashed(self, now: float) -> None:
        agent, self.agent = self.agent, None
        assert agent is not None
        code = agent.returncode
        self._kill_group_leftovers(agent.pid)
        ran = now - self.agent_started
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._after_crash(now, code, f"agent died ({how}) after {ran:.1f}s", ran)

    def _after_crash(self, now: float, code: int | None, reason: str, ran: float) -> None:
        delay = self.backoff.crashed(ran)
        self.next_start = now + delay
        looping = self.backoff.consecutive >= self.limits.crash_loop_after
        self.state = "crash_looping" if looping else "backoff"
        rss = self.memory.samples[-1][1] if self.memory.samples else None
        self._record(now, "crash", f"{reason}; restarting in {delay:g}s", code, delay, rss, True, self.memory.curve())
        cause = "crash_loop" if looping else "agent_dead"
        episode = self.agent_started if not looping else now - ran
        finding = {"id": finding_id(self.config.host, cause, None, round(episode, 3)), "host": self.config.host,
                   "worker": self.config.worker, "cause": cause,
                   "summary": (f"agent crashed {self.backoff.consecutive} times in a row; still restarting "
                               f"(next in {delay:g}s)" if looping else f"{reason}; restarting in {delay:g}s"),
                   "suggested_action": "drain" if looping else "restart",
                   "evidence": {"exit_code": code, "ran_s": round(ran, 1), "log_tail": tail(self.log_file, 40),
                                "backoff_s": delay, "consecutive_crashes": self.backoff.consecutive}}
        self._dead_finding = finding
        self._report_finding(finding)

    # -- memory and stuck tasks ------------------------------------------------------------

    def _memory_actions(self, now: float, task_running: bool) -> None:
        verdict = self.memory.verdict()
        if verdict is None:
            self.pending = None  # back under the limits (a helper ended): no restart is due
            return
        kind, reason = verdict
        if kind == "hard_limit":
            self.restart(now, kind, reason, at_safe_point=not task_running)
            return
        if self.pending is None:
            self.pending = (kind, reason)
            print(f"supervisor: {reason}; restarting at the next safe point", file=sys.stderr, flush=True)
        if not task_running and not self._heartbeat_task():
            self.restart(now, kind, self.pending[1], at_safe_point=True)

    def _heartbeat_task(self) -> str | None:
        worker = self.reporter.last_worker if self.reporter else None
        if not worker or time.time() - float(worker.get("last_seen", 0)) > 30:
            return None
        return worker.get("task_id") or (worker.get("stats") or {}).get("task_id")

    def _stuck(self, now: float, task_cpu: float) -> None:
        worker = self.reporter.last_worker if self.reporter else None
        stats = (worker or {}).get("stats") or {}
        task_id = (worker or {}).get("task_id") or stats.get("task_id")
        gpu_util, gpu_mem = gpu_usage(self.agent.pid if self.agent else None)
        sample = Sample(ts=now, task_id=task_id, phase=stats.get("phase"), phase_started=_num(stats.get("phase_started")),
                        last_output_ts=_num(stats.get("last_output_ts")), task_cpu_percent=task_cpu,
                        gpu_util=gpu_util, gpu_mem_mib=gpu_mem)
        opened, resolved = self.detector.observe(sample)
        for finding in opened:
            # Evidence (py-spy, nvidia-smi) may take seconds; the loop must keep watching meanwhile.
            threading.Thread(target=self._capture_and_report, args=(finding, self.agent.pid if self.agent else None),
                             name="fleetdeck-evidence", daemon=True).start()
        for finding in resolved:
            self._report_finding({**self._finding_doc(finding), "state": "resolved",
                                  "resolution": "cleared: the condition ended"})

    def _capture_and_report(self, finding: Finding, agent_pid: int | None) -> None:
        finding.evidence = capture_evidence(agent_pid, self.log_file,
                                            [Path(self.config.venv) / "bin"] if self.config.venv else [])
        self._report_finding(self._finding_doc(finding))

    def _finding_doc(self, finding: Finding) -> dict[str, Any]:
        return {"id": finding.id, "host": self.config.host, "worker": self.config.worker, "cause": finding.cause,
                "summary": finding.summary, "task_id": finding.task_id, "phase": finding.phase,
                "suggested_action": finding.suggested_action, "evidence": finding.evidence}

    # -- records and reports ---------------------------------------------------------------

    def _record(self, now: float, kind: str, reason: str, code: int | None, backoff: float, rss: float | None,
                at_safe_point: bool, curve: list[list[float]]) -> None:
        self.restarts += 1
        record = {"id": uuid.uuid4().hex, "ts": now, "kind": kind, "reason": reason, "exit_code": code,
                  "backoff_s": backoff, "rss_mb": None if rss is None else round(rss, 1),
                  "at_safe_point": at_safe_point, "memory_curve": curve}
        with (self.root / "run" / "restarts.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(f"supervisor: {kind}: {reason}", file=sys.stderr, flush=True)
        if self.reporter:
            from urllib.parse import quote

            self.reporter.send("POST", f"/fleet/hosts/{quote(self.config.host, safe='')}/restarts", record)

    def _report_finding(self, doc: dict[str, Any]) -> None:
        line = json.dumps({k: v for k, v in doc.items() if k != "evidence"}) + "\n"
        with self._journal_lock, (self.root / "run" / "findings.jsonl").open("a") as fh:
            fh.write(line)
        if self.reporter:
            self.reporter.send("POST", "/fleet/findings", doc)

    def _publish(self, now: float, rss: float) -> None:
        status = {"state": self.state, "interval_s": self.limits.sample_interval_s, "worker": self.config.worker,
                  "agent_pid": self.agent.pid if self.agent else None, "rss_mb": round(rss, 1),
                  "restarts": self.restarts, "consecutive_crashes": self.backoff.consecutive,
                  "pending_restart": self.pending[1] if self.pending else None,
                  "stats": {"supervisor_pid": os.getpid(), "venv": self.config.venv,
                            "next_start": self.next_start if self.agent is None else None}}
        tmp = self.root / "run" / "status.json.tmp"
        tmp.write_text(json.dumps({**status, "ts": now}))
        os.replace(tmp, self.root / "run" / "status.json")
        if self.reporter:
            self.reporter.status(status)


def gpu_usage(agent_pid: int | None) -> tuple[float | None, float | None]:
    """(mean utilisation of GPUs used by the agent's tree, MiB those processes hold); (None, None)
    without NVML or a GPU."""
    if agent_pid is None:
        return None, None
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None, None
    try:
        pids = {agent_pid}
        try:
            pids |= {c.pid for c in psutil.Process(agent_pid).children(recursive=True)}
        except psutil.Error:
            pass
        utils, held = [], 0.0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            mine = [p for p in procs if p.pid in pids]
            if mine:
                held += sum((p.usedGpuMemory or 0) for p in mine) / 2**20
                utils.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        return (sum(utils) / len(utils) if utils else 0.0), held
    except pynvml.NVMLError:
        return None, None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fleetdeck.fleet.supervisor INSTALL_DIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    (root / "run").mkdir(parents=True, exist_ok=True)
    lock = open(root / "run" / "supervisor.lock", "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"supervisor: another supervisor already runs for {root}", file=sys.stderr)
        return 1
    try:
        config = Config.load(root)
        token = Path(config.token_file).read_text().strip()
    except (OSError, ValueError, TypeError) as exc:
        print(f"supervisor: cannot read {root / 'supervisor.json'} or the token: {exc}", file=sys.stderr)
        return 2
    pid_tmp = root / "run" / "supervisor.pid.tmp"
    pid_tmp.write_text(f"{os.getpid()}\n")
    os.replace(pid_tmp, root / "run" / "supervisor.pid")
    supervisor = Supervisor(root, config, token)
    supervisor.install_signals()
    print(f"supervisor: pid {os.getpid()} supervising {config.agent_command[0]} for host {config.host}",
          file=sys.stderr, flush=True)
    try:
        supervisor.run()
    finally:
        (root / "run" / "supervisor.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
