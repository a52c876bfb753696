"""Health checks of fleet hosts from the workstation, over one reused SSH connection per host.

A check reads the supervisor's pidfile and status file on the host (one small command on the
host's existing connection). A failure is only acted on after ``failures_to_act`` consecutive
failures: one lost packet must not page anyone, and a fresh SSH connection every few seconds is
itself a load on the host (it killed jobs in dstack#2346).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet.inventory import Host, Inventory
from fleetdeck.fleet.provision import remote_root, supervisor_state
from fleetdeck.fleet.ssh import ConnectionPool
from fleetdeck.fleet.triage import finding_id

FAILURES_TO_ACT = 3


@dataclass
class HostHealth:
    """The latest check of one host."""

    host: str
    reachable: bool = False
    supervisor: dict[str, Any] = field(default_factory=dict)
    """``running``, ``pid`` and the supervisor's last ``status`` file."""
    error: str = ""
    consecutive_failures: int = 0
    flagged: bool = False
    """True once the failures were reported as a finding."""
    checked: float = 0.0


class HealthChecker:
    """Checks hosts, counts consecutive failures, reports ``host_unreachable`` once per episode.

    Args:
        inventory: the fleet.
        pool: the connections to reuse (one per host).
        client: where findings go; None only checks.
        failures_to_act: consecutive failures before a finding is reported.
    """

    def __init__(self, inventory: Inventory, pool: ConnectionPool, client: Any = None,
                 failures_to_act: int = FAILURES_TO_ACT) -> None:
        self.inventory = inventory
        self.pool = pool
        self.client = client
        self.failures_to_act = failures_to_act
        self.state: dict[str, HostHealth] = {}
        self._roots: dict[str, str] = {}
        self._episode: dict[str, float] = {}

    def check(self, host: Host) -> HostHealth:
        previous = self.state.get(host.name) or HostHealth(host.name)
        health = HostHealth(host.name, checked=time.time())
        try:
            conn = self.pool.get(host.name)
            root = self._roots.get(host.name) or remote_root(conn)
            self._roots[host.name] = root
            health.supervisor = supervisor_state(conn, root)
            health.reachable = True
        except FleetdeckError as exc:
            health.error = str(exc)
            health.consecutive_failures = previous.consecutive_failures + 1
            health.flagged = previous.flagged
            self._episode.setdefault(host.name, health.checked)
            if health.consecutive_failures >= self.failures_to_act and not health.flagged:
                health.flagged = self._report(host, health)
        else:
            if previous.flagged:
                self._resolve(host)
            self._episode.pop(host.name, None)
        self.state[host.name] = health
        return health

    def check_all(self, hosts: list[Host] | None = None) -> list[HostHealth]:
        hosts = hosts if hosts is not None else list(self.inventory.hosts)
        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            return list(pool.map(self.check, hosts))

    def _finding(self, host: Host, health: HostHealth) -> dict[str, Any]:
        return {"id": finding_id(host.name, "host_unreachable", None, self._episode[host.name]), "host": host.name,
                "cause": "host_unreachable", "suggested_action": "inspect",
                "summary": f"{health.consecutive_failures} health checks in a row failed: {health.error}",
                "evidence": {"error": health.error, "consecutive_failures": health.consecutive_failures,
                             "address": f"{host.address}:{host.port}"}}

    def _report(self, host: Host, health: HostHealth) -> bool:
        if self.client is None:
            return False
        try:
            self.client.post("/fleet/findings", self._finding(host, health), idempotent=True)
        except FleetdeckError:
            return False  # retried on the next failed check
        return True

    def _resolve(self, host: Host) -> None:
        if self.client is None or host.name not in self._episode:
            return
        fid = finding_id(host.name, "host_unreachable", None, self._episode[host.name])
        try:
            self.client.post(f"/fleet/findings/{fid}/resolve", {"note": "host answers again"})
        except FleetdeckError:
            pass  # the finding stays open until a person dismisses it; nothing is lost
