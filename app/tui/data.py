"""What the TUI asks of the server, over the one :class:`fleetdeck.client.Client`.

Every method here blocks on HTTP, so the screens only call them from thread workers. Collections
that other features add to the server (fleet hosts, triage findings) may be missing on an older
server: a 404 for the collection itself becomes :class:`Unavailable`, which the views show as
"not available on this server" until the endpoint appears.

Actions (abort, requeue, enqueue, …) go through :meth:`DataSource.act`, which refuses them in
read-only mode and writes each one, with its outcome, to the :class:`CommandLog`.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError, NotFound

FLEET_HOSTS = "/fleet/hosts"
"""Inventory of SSH hosts, published by the fleet manager (issue 5)."""
TRIAGE_FINDINGS = "/fleet/findings"
"""The supervisor's findings, newest first (issue 5)."""
WASTE_FLAGS = "/costs/flags"
"""Waste happening now: running tasks holding idle GPUs, orphaned GPU memory (issue 8)."""

TASK_FILTER_KEYS = ("status", "project", "user", "tag")
"""``key:value`` words the experiments filter understands; any other word matches the name."""


class Unavailable(FleetdeckError):
    """The server has no such endpoint (an older server, or a feature not deployed)."""


class ReadOnly(FleetdeckError):
    """An action was asked for while the TUI runs with ``--readonly``."""


@dataclass(frozen=True)
class TaskQuery:
    """A listing of experiments, filtered and sorted by the server."""

    name: str = ""
    """Case-insensitive substring of the task name."""
    status: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    user: str = ""
    tag: tuple[str, ...] = ()
    order_by: str = "-created"
    """A sortable field, ``-`` for descending."""
    page_size: int = 50

    def params(self) -> dict[str, Any]:
        return {"name": self.name or None, "status": list(self.status) or None,
                "project": list(self.project) or None, "user": self.user or None, "tag": list(self.tag) or None,
                "order_by": self.order_by, "page_size": self.page_size}

    def with_filter(self, text: str) -> TaskQuery:
        """This query with the words of a ``/`` filter applied (``status:failed lr0.1``)."""
        parsed = parse_filter(text)
        return replace(self, name=parsed.get("name", ""), status=tuple(parsed.get("status", ())),
                       project=tuple(parsed.get("project", ())), user=(parsed.get("user") or [""])[-1],
                       tag=tuple(parsed.get("tag", ())))


def parse_filter(text: str) -> dict[str, Any]:
    """Split a filter line into ``key:value`` lists and a free-text name part.

    ``status:failed project:vision lr`` gives ``{"status": ["failed"], "project": ["vision"],
    "name": "lr"}``; ``status`` accepts ``running`` for ``in_progress``.
    """
    out: dict[str, Any] = {}
    words = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key in TASK_FILTER_KEYS and value:
            if key == "status" and value == "running":
                value = "in_progress"
            out.setdefault(key, []).append(value)
        else:
            words.append(word)
    if words:
        out["name"] = " ".join(words)
    return out


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_token: str | None
    fetched_s: float
    """Seconds the request took (shown in the status line; useful on a slow link)."""


@dataclass(frozen=True)
class LogEntry:
    """One action the user ran from the TUI."""

    at: float
    action: str
    target: str
    outcome: str
    ok: bool


@dataclass
class CommandLog:
    """Every action run in this session, newest last; safe to append from worker threads."""

    entries: list[LogEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: LogEntry) -> None:
        with self._lock:
            self.entries.append(entry)


class DataSource:
    """The TUI's read and write paths to one server.

    Args:
        client: the connection (the TUI owns it and closes it on exit).
        readonly: refuse every action.
        clock: time source for the command log (tests freeze it).
        label: how the header names the server (default: its URL).
    """

    def __init__(self, client: Client, readonly: bool = False, clock: Callable[[], float] = time.time,
                 label: str | None = None) -> None:
        self.client = client
        self.label = label or client.url
        self.readonly = readonly
        self.clock = clock
        self.log = CommandLog()

    @property
    def url(self) -> str:
        return self.client.url

    # -- reads -----------------------------------------------------------------------------

    def tasks(self, query: TaskQuery, page_token: str | None = None) -> Page:
        started = time.perf_counter()
        result = self.client.list_tasks(**query.params(), page_token=page_token)
        return Page(result["items"], result.get("next_page"), time.perf_counter() - started)

    def summary(self) -> dict[str, Any]:
        return self.client.get("/tasks-summary")

    def task(self, task_id: str) -> dict[str, Any]:
        return self.client.get_task(task_id)

    def series_list(self, task_id: str) -> list[dict[str, Any]]:
        return self.client.list_series(task_id)

    def series(self, task_id: str, metric: str, variant: str, max_points: int) -> dict[str, Any]:
        return self.client.get_series(task_id, metric, variant, max_points=max(4, min(max_points, 100_000)))

    def console(self, task_id: str, start: int, limit: int) -> dict[str, Any]:
        return self.client.get_console(task_id, start=start, limit=limit)

    def artifacts(self, task_id: str) -> list[dict[str, Any]]:
        return self.client.get(f"/tasks/{_seg(task_id)}/artifacts")["items"]

    def workers(self) -> list[dict[str, Any]]:
        return self.client.list_workers()

    def queues(self) -> list[dict[str, Any]]:
        return self.client.list_queues()

    def queue_entries(self, queue: str) -> list[dict[str, Any]]:
        return self.client.get(f"/queues/{_seg(queue)}/entries")["items"]

    def fleet_hosts(self) -> list[dict[str, Any]]:
        return self._optional_list(FLEET_HOSTS, "fleet hosts")

    def findings(self) -> list[dict[str, Any]]:
        return self._optional_list(TRIAGE_FINDINGS, "triage findings")

    def waste_flags(self) -> list[dict[str, Any]]:
        return self._optional_list(WASTE_FLAGS, "waste flags")

    def _optional_list(self, path: str, what: str) -> list[dict[str, Any]]:
        try:
            body = self.client.get(path)
        except NotFound:
            raise Unavailable(f"{what} are not available on this server ({path} missing)") from None
        return body["items"] if isinstance(body, dict) else list(body)

    # -- actions ---------------------------------------------------------------------------

    def act(self, action: str, target: str, call: Callable[[], Any]) -> Any:
        """Run one action, log it with its outcome, and return its result.

        Raises:
            ReadOnly: in read-only mode (logged as refused).
            FleetdeckError: the server refused the action (logged with the reason).
        """
        if self.readonly:
            self.log.add(LogEntry(self.clock(), action, target, "refused: read-only session", False))
            raise ReadOnly(f"{action} refused: this session is read-only")
        try:
            result = call()
        except FleetdeckError as exc:
            self.log.add(LogEntry(self.clock(), action, target, str(exc), False))
            raise
        self.log.add(LogEntry(self.clock(), action, target, "ok", True))
        return result

    def abort(self, task: dict[str, Any]) -> None:
        self.act("abort", _label(task), lambda: self.client.set_status(
            task["id"], "aborted", reason="aborted from the control centre"))

    def requeue(self, task: dict[str, Any], queue: str | None = None) -> None:
        target_queue = queue or task.get("queue") or "default"
        self.act(f"requeue on {target_queue}", _label(task), lambda: self.client.enqueue(task["id"], target_queue))

    def remove_entry(self, queue: str, entry: dict[str, Any]) -> None:
        self.act(f"remove from {queue}", _label(entry), lambda: self.client.remove_from_queue(queue, entry["id"]))

    def move_entry(self, source: str, target: str, entry: dict[str, Any]) -> None:
        def move() -> None:
            self.client.remove_from_queue(source, entry["id"])
            self.client.enqueue(entry["id"], target, priority=int(entry.get("priority", 0)))
        self.act(f"move {source} → {target}", _label(entry), move)

    def run_cli(self, action: str, target: str, argv: list[str], timeout: float = 120.0) -> str:
        """Run a ``fleetdeck`` sub-command (fleet and triage actions live in the CLI) and log it.

        The command runs with this session's server and token in its environment, never on its
        command line, so the token stays out of process listings and the log.
        """
        command = [sys.executable, "-m", "fleetdeck.app", *argv]

        def call() -> str:
            env = _child_env(self.client)
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            except subprocess.TimeoutExpired:
                raise FleetdeckError(f"`fleetdeck {shlex.join(argv)}` did not finish in {timeout:.0f} s") from None
            output = (done.stdout + done.stderr).strip()
            if done.returncode != 0:
                last = output.splitlines()[-1] if output else f"exit code {done.returncode}"
                raise FleetdeckError(f"`fleetdeck {shlex.join(argv)}` failed: {last}")
            return output

        return self.act(action, target, call)


def _child_env(client: Client) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["FLEETDECK_SERVER_URL"] = client.url
    if client.settings.token:
        env["FLEETDECK_API_TOKEN"] = client.settings.token
    return env


def _label(doc: dict[str, Any]) -> str:
    name = doc.get("name") or doc.get("task_name") or ""
    return f"{name} ({str(doc.get('id', ''))[:8]})" if name else str(doc.get("id", ""))[:8]


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")
