"""The fleet: SSH hosts (from the fleet manager's inventory) and the agents heartbeating on them.

Agents come from ``GET /workers`` (volatile heartbeats); hosts, with their health and their
supervisor's view of the agent (memory, restarts), from ``GET /fleet/hosts``; on a server without
that endpoint the view says so and shows the agents alone. Row actions run the ``fleetdeck fleet``
commands (restart, provision, stop, logs), which own the SSH connections; ``s`` suspends the TUI
for an ``ssh`` session (host key checked strictly) and comes back to the same place. Draining a
host is a triage action on a finding.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections import deque
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from fleetdeck.app.tui.data import LogEntry, Unavailable
from fleetdeck.app.tui.fmt import age, bar, literal, size, sparkline
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.app.tui.screens.modals import ConfirmScreen, TextScreen
from fleetdeck.app.tui.widgets.table import cursor_key, sync_rows
from fleetdeck.errors import FleetdeckError

FAULTY = {"stuck", "crash-looping", "crash_looping", "dead", "unreachable", "error", "stale", "down", "degraded"}
"""Agent and host states the faults-only toggle keeps (host states come from ``GET /fleet/hosts``)."""
STATE_STYLE = {"idle": "green", "ok": "green", "running": "bold blue", "busy": "bold blue", "stuck": "bold red",
               "crash-looping": "bold red", "crash_looping": "bold red", "dead": "bold red", "down": "bold red",
               "unreachable": "bold red", "degraded": "yellow", "stale": "yellow", "draining": "yellow",
               "stopped": "dim", "unknown": "dim"}
RSS_HISTORY = 30


def worker_gpus(worker: dict[str, Any]) -> tuple[float | None, float | None]:
    """Mean GPU utilisation and memory fraction (0–1) from a heartbeat's stats, if it reports GPUs."""
    stats = worker.get("stats") or {}
    gpus = stats.get("gpus")
    utils: list[float] = []
    mems: list[float] = []
    if isinstance(gpus, list):
        for gpu in gpus:
            if not isinstance(gpu, dict):
                continue
            util = gpu.get("util", gpu.get("utilization", gpu.get("gpu_util")))
            if isinstance(util, (int, float)):
                utils.append(util / 100 if util > 1 else util)
            used, total = gpu.get("mem_used", gpu.get("memory_used")), gpu.get("mem_total", gpu.get("memory_total"))
            if isinstance(used, (int, float)) and isinstance(total, (int, float)) and total > 0:
                mems.append(used / total)
    util = stats.get("gpu_util")
    if not utils and isinstance(util, (int, float)):
        utils.append(util / 100 if util > 1 else util)
    return (sum(utils) / len(utils) if utils else None, sum(mems) / len(mems) if mems else None)


def worker_rss(worker: dict[str, Any]) -> float | None:
    stats = worker.get("stats") or {}
    for key, scale in (("rss_bytes", 1), ("agent_rss_bytes", 1), ("rss_mb", 2 ** 20), ("rss", 1)):
        value = stats.get(key)
        if isinstance(value, (int, float)):
            return float(value) * scale
    return None


def worker_state(worker: dict[str, Any], now: float) -> str:
    status = str(worker.get("status") or "idle")
    last = worker.get("last_seen")
    ttl = worker.get("ttl_s") or 60.0
    if isinstance(last, (int, float)) and now - last > ttl / 2 and status not in FAULTY:
        return "stale"
    return status


class FleetScreen(ViewScreen):
    """Hosts and agents: state, current task, GPU bars, agent memory and its trend, heartbeat age."""

    BINDINGS = [
        Binding("enter", "open_task", "Open task", id="fleet.open-task", show=False),
        Binding("slash", "filter", "Filter", id="fleet.filter"),
        Binding("f", "faults", "Faults only", id="fleet.faults"),
        Binding("l", "logs", "Logs", id="fleet.logs"),
        Binding("s", "ssh", "SSH", id="fleet.ssh"),
        Binding("R", "fleet_command('restart')", "Restart agent", id="fleet.restart"),
        Binding("P", "fleet_command('provision')", "Provision", id="fleet.provision"),
        Binding("S", "fleet_command('stop')", "Stop agent", id="fleet.stop"),
        Binding("D", "fleet_command('drain')", "Drain", id="fleet.drain"),
        Binding("y", "raw", "Raw", id="fleet.raw", show=False),
        Binding("escape", "clear", "Clear", id="fleet.clear", show=False),
    ]
    MUTATING = frozenset({"fleet_command", "ssh"})

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.filter_text = ""
        self.faults_only = False
        self.hosts_note = ""
        self.rss_history: dict[str, deque[float]] = {}
        self.poller: Poller[tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str]] = Poller(
            self, self._fetch, self._apply, self._failed, 2.0, "fleet")

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter hosts and agents by name", id="fleet-filter")
        yield Static(id="fleet-info")
        yield DataTable(id="fleet-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.poller.interval = self.fd_app.poll_s
        table = self.query_one("#fleet-table", DataTable)
        for key, label in (("name", "name"), ("kind", "kind"), ("state", "state"), ("task", "task"),
                           ("gpu", "GPU util"), ("gpumem", "GPU mem"), ("rss", "agent mem"),
                           ("trend", "trend"), ("beat", "heartbeat")):
            table.add_column(label, key=key)
        table.focus()
        self.poller.poll_now()

    def _fetch(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str]:
        workers = self.source.workers()
        try:
            hosts: list[dict[str, Any]] | None = self.source.fleet_hosts()
            note = ""
        except Unavailable as exc:
            hosts, note = None, str(exc)
        return workers, hosts, note

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#fleet-info", Static).update(Text(str(error), style="red"))

    def _apply(self, data: tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str]) -> None:
        self.poll_succeeded()
        workers, hosts, self.hosts_note = data
        now = self.fd_app.clock()
        rows: dict[str, dict[str, Any]] = {}
        for host in hosts or []:
            name = str(host.get("name", ""))
            supervisor = host.get("supervisor") or {}
            if isinstance(supervisor.get("rss_mb"), (int, float)):
                self.rss_history.setdefault(f"host:{name}", deque(maxlen=RSS_HISTORY)).append(supervisor["rss_mb"] * 2**20)
            rows[f"host:{name}"] = {"kind": "host", "name": name, "record": host,
                                    "state": str(host.get("state") or "unknown")}
        for worker in workers:
            name = str(worker.get("id", ""))
            rss = worker_rss(worker)
            if rss is not None:
                self.rss_history.setdefault(name, deque(maxlen=RSS_HISTORY)).append(rss)
            rows[f"agent:{name}"] = {"kind": "agent", "name": name, "record": worker,
                                     "state": worker_state(worker, now), "host": worker.get("host", "")}
        self.rows = rows
        self._paint(now)

    def visible_rows(self) -> list[tuple[str, dict[str, Any]]]:
        needle = self.filter_text.lower().replace("*", "")
        out = []
        for key, row in self.rows.items():
            if needle and needle not in row["name"].lower() and needle not in str(row.get("host", "")).lower():
                continue
            if self.faults_only and row["state"] not in FAULTY:
                continue
            out.append((key, row))
        return out

    def _paint(self, now: float) -> None:
        table = self.query_one("#fleet-table", DataTable)
        rows = []
        for key, row in self.visible_rows():
            record = row["record"]
            if row["kind"] == "agent":
                util, mem = worker_gpus(record)
                rss = worker_rss(record)
                history = list(self.rss_history.get(row["name"], ()))
                cells = [literal(row["name"], limit=40), Text("agent"),
                         _state_cell(row["state"], self.fd_app.waste.get(str(record.get("task_id") or ""))),
                         literal((record.get("task_id") or "-")[:8]), bar(util), bar(mem), Text(size(rss)),
                         Text(sparkline(history, 10), style="cyan"),
                         Text(f"{age(now - record['last_seen'])} ago" if record.get("last_seen") else "-")]
            else:
                gpus = record.get("gpus")
                gpu_text = (f"{gpus.get('count', 0)}× {gpus.get('model') or 'GPU'}" if isinstance(gpus, dict)
                            else str(gpus or "-"))
                supervisor = record.get("supervisor") or {}
                rss_mb = supervisor.get("rss_mb")
                seen = supervisor.get("last_seen")
                cells = [literal(row["name"], limit=40), Text("host"),
                         _state_cell(row["state"], self.fd_app.waste.get(key)),
                         literal(supervisor.get("state") or record.get("address") or "-", limit=40),
                         literal(gpu_text, limit=30), Text(""),
                         Text(size(rss_mb * 2**20) if isinstance(rss_mb, (int, float)) else "-"),
                         Text(sparkline(list(self.rss_history.get(key, ())), 10), style="cyan"),
                         Text(f"{age(now - seen)} ago" if isinstance(seen, (int, float)) else "-")]
            rows.append((key, cells))
        with self.app.batch_update():
            sync_rows(table, rows)
        agents = sum(1 for r in self.rows.values() if r["kind"] == "agent")
        faulty = sum(1 for r in self.rows.values() if r["state"] in FAULTY)
        info = Text(f"{agents} agents · ", style="dim")
        info.append(f"{faulty} faulty", style="bold red" if faulty else "dim")
        if self.faults_only:
            info.append(" · faults only", style="dim")
        if self.filter_text:
            info.append(f" · filter: {self.filter_text}", style="dim")
        if self.hosts_note:
            info.append(f" · {self.hosts_note}", style="yellow")
        if not self.rows:
            info.append(" · no agents are heartbeating: start one with `fleetdeck agent` or provision a host",
                        style="yellow")
        self.query_one("#fleet-info", Static).update(info)
        self.refresh_bindings()

    def selected(self) -> dict[str, Any] | None:
        key = cursor_key(self.query_one("#fleet-table", DataTable))
        return self.rows.get(key) if key else None

    def host_of(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The inventory record of the host a row is on (the row itself for a host row)."""
        if row["kind"] == "host":
            return row["record"]
        host_name = row.get("host")
        match = self.rows.get(f"host:{host_name}")
        return match["record"] if match else None

    def allows(self, action: str) -> bool:
        row = self.selected()
        if action in ("fleet_command", "logs", "ssh"):
            return row is not None and self.host_of(row) is not None
        if action == "open_task":
            return bool(row and row["record"].get("task_id"))
        return True

    @on(DataTable.RowHighlighted, "#fleet-table")
    def _highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#fleet-table")
    def _selected(self) -> None:
        self.action_open_task()

    def action_open_task(self) -> None:
        row = self.selected()
        if row and row["record"].get("task_id"):
            self.post_message(OpenTask(row["record"]["task_id"]))

    def action_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.display = True
        box.focus()

    def set_filter(self, text: str) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.display = bool(text)
        box.value = text
        self.filter_text = text
        self._paint(self.fd_app.clock())

    @on(Input.Changed, "#fleet-filter")
    def _filter(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._paint(self.fd_app.clock())

    def action_faults(self) -> None:
        self.faults_only = not self.faults_only
        self._paint(self.fd_app.clock())

    def action_clear(self) -> None:
        if self.filter_text or self.query_one("#fleet-filter").display:
            self.set_filter("")
            self.query_one("#fleet-table").focus()
        elif self.faults_only:
            self.action_faults()

    def action_raw(self) -> None:
        row = self.selected()
        if row:
            self.app.push_screen(TextScreen(f"{row['kind']} {row['name']}",
                                            json.dumps(row["record"], indent=2, ensure_ascii=False)))

    def action_fleet_command(self, verb: str) -> None:
        row = self.selected()
        host = self.host_of(row) if row else None
        if not host:
            return
        name = str(host.get("name"))

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_action(f"{verb} {name}", lambda: self.source.run_cli(
                    f"fleet {verb}", name, ["fleet", verb, name]))

        self.app.push_screen(ConfirmScreen(f"{verb.capitalize()} the agent on", [name]), confirmed)

    def action_logs(self) -> None:
        row = self.selected()
        host = self.host_of(row) if row else None
        if not host:
            return
        name = str(host.get("name"))

        def fetch() -> None:
            try:
                output = self.source.run_cli("fleet logs", name, ["fleet", "logs", name])
            except FleetdeckError as exc:
                self.app.call_from_thread(self.notify, str(exc), severity="error")
                return
            self.app.call_from_thread(self.app.push_screen, TextScreen(f"agent log on {name}", output))

        self.run_worker(fetch, thread=True, group="fleet-logs", exclusive=True, exit_on_error=False)

    def action_ssh(self) -> None:
        row = self.selected()
        host = self.host_of(row) if row else None
        if not host:
            return
        command = ssh_command(host)
        if command is None or shutil.which(command[0]) is None:
            self.notify("ssh is not installed here", severity="error")
            return
        self.source.log.add(LogEntry(self.fd_app.clock(), "ssh", str(host.get("name")), shlex.join(command), True))
        with self.app.suspend():
            import subprocess

            subprocess.run(command, check=False)
        self.refresh_data()


def _state_cell(state: str, waste: str | None) -> Text:
    """The state, with ``⚠ reason`` when the cost feature flags GPU waste on this row right now."""
    cell = Text(state, style=STATE_STYLE.get(state, ""))
    if waste:
        cell.append(f" ⚠ {waste}"[:60], style="bold yellow")
    return cell


def ssh_command(host: dict[str, Any]) -> list[str] | None:
    """``ssh`` argv for an inventory host (never a shell string; the host key must already be known)."""
    address = host.get("address") or host.get("hostname")
    if not address:
        return None
    command = ["ssh", "-o", "StrictHostKeyChecking=yes"]
    if host.get("port"):
        command += ["-p", str(int(host["port"]))]
    user = host.get("user")
    command.append(f"{user}@{address}" if user else str(address))
    return command

