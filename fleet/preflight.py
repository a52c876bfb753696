"""Check a host before installing on it: every probe has a timeout and every failure a fix hint.

The probes run in parallel over the host's one SSH connection (channels multiplex), so a healthy
host is checked in about one round trip, and a hanging ``nvidia-smi`` (a wedged driver) costs
its own timeout and nothing else.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetdeck.fleet.inventory import Host
from fleetdeck.fleet.ssh import Connection, RemoteTimeout, SSHError

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 10)
MIN_FREE_DISK_MB = 1024
MIN_AVAILABLE_MEMORY_MB = 512
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    """One probe's verdict."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    """How to fix it, when it failed."""
    required: bool = True
    """A failed required check stops provisioning; an optional one is a warning."""


@dataclass
class PreflightReport:
    host: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What was learned: os, arch, python version, GPU count and model, docker version."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.required]

    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.required]

    def summary(self) -> str:
        """One line: the first failure and its hint, or what the host is."""
        failed = self.failures()
        if failed:
            first = failed[0]
            return f"{first.name}: {first.detail}" + (f" ({first.hint})" if first.hint else "")
        f = self.facts
        gpus = f"{f.get('gpus', 0)}x {f['gpu_model']}" if f.get("gpus") else "no GPU"
        return f"{f.get('os', '?')} {f.get('arch', '?')}, Python {f.get('python', '?')}, {gpus}"


Probe = Callable[[Connection, Host, float], tuple[Check, dict[str, Any]]]


def _os(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    result = conn.run(["uname", "-sm"], timeout=timeout)
    parts = result.stdout.split()
    if not result.ok or len(parts) != 2:
        return Check("os", False, "uname failed", "is this a Unix host?"), {}
    system, arch = parts
    ok = system == "Linux"
    return (Check("os", ok, f"{system} {arch}", "" if ok else "the agent runs on Linux hosts only"),
            {"os": system, "arch": arch})


def _python(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    code = "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])"
    result = conn.run([host.python, "-c", code], timeout=timeout)
    if result.exit_code == 127:
        return Check("python", False, f"{host.python} not found",
                     "install Python >= 3.10, or set python = \"/path/to/python3\" for this host"), {}
    if not result.ok:
        return Check("python", False, f"{host.python} has no venv/ensurepip module",
                     "install the venv package (Debian/Ubuntu: apt-get install python3-venv)"), {}
    version = result.stdout.strip()
    ok = tuple(int(x) for x in version.split(".")[:2]) >= MIN_PYTHON
    return (Check("python", ok, f"Python {version}", "" if ok else "install Python >= 3.10 and point "
                  "the host's python setting at it"), {"python": version})


def _disk(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    result = conn.run(["df", "-Pk", "."], timeout=timeout)
    lines = result.stdout.strip().splitlines()
    try:
        free_mb = int(lines[-1].split()[3]) // 1024
    except (IndexError, ValueError):
        return Check("disk", False, "df failed", "check the home directory's filesystem"), {}
    ok = free_mb >= MIN_FREE_DISK_MB
    return (Check("disk", ok, f"{free_mb} MiB free in the home directory",
                  "" if ok else f"free at least {MIN_FREE_DISK_MB} MiB (venvs and the wheelhouse live there)"),
            {"disk_free_mb": free_mb})


def _memory(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    result = conn.run(["cat", "/proc/meminfo"], timeout=timeout)
    match = re.search(r"^MemAvailable:\s+(\d+) kB", result.stdout, re.M)
    if not match:
        return Check("memory", False, "cannot read /proc/meminfo", required=False), {}
    avail = int(match.group(1)) // 1024
    ok = avail >= MIN_AVAILABLE_MEMORY_MB
    return (Check("memory", ok, f"{avail} MiB available",
                  "" if ok else "the host is nearly out of memory; tasks will be killed", required=False),
            {"memory_available_mb": avail})


def _docker(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    try:
        result = conn.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except RemoteTimeout:
        return Check("docker", False, f"docker info hung for {timeout:.0f}s",
                     "the Docker daemon is wedged; restart it", required=False), {}
    if result.exit_code == 127:
        return Check("docker", False, "docker not installed", "only needed for tasks that run in images",
                     required=False), {"docker": None}
    if not result.ok:
        line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("docker", False, f"daemon not usable: {line}",
                     "start dockerd and add the user to the docker group", required=False), {"docker": None}
    return Check("docker", True, f"Docker {result.stdout.strip()}", required=False), {"docker": result.stdout.strip()}


def _gpu(conn: Connection, host: Host, timeout: float) -> tuple[Check, dict[str, Any]]:
    expected = host.gpus > 0
    argv = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        result = conn.run(argv, timeout=timeout)
    except RemoteTimeout:
        return Check("gpu", False, f"nvidia-smi hung for {timeout:.0f}s",
                     "the NVIDIA driver is wedged; reboot the host or reload the driver", required=expected), {}
    if result.exit_code == 127:
        return Check("gpu", not expected, "no NVIDIA driver (nvidia-smi not found)",
                     "install the NVIDIA driver" if expected else "", required=expected), {"gpus": 0}
    if not result.ok:
        line = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        return Check("gpu", False, f"nvidia-smi failed: {line}", "check the NVIDIA driver (dmesg, nvidia-smi)",
                     required=expected), {"gpus": 0}
    rows = [[c.strip() for c in line.split(",")] for line in result.stdout.strip().splitlines() if line.strip()]
    model = rows[0][0] if rows else None
    facts = {"gpus": len(rows), "gpu_model": model, "driver": rows[0][2] if rows and len(rows[0]) > 2 else None}
    ok = not expected or len(rows) >= host.gpus
    return (Check("gpu", ok, f"{len(rows)}x {model}" if rows else "no GPU",
                  "" if ok else f"the inventory says {host.gpus} GPUs; nvidia-smi sees {len(rows)}", required=expected),
            facts)


PROBES: tuple[Probe, ...] = (_os, _python, _disk, _memory, _docker, _gpu)
"""Each probe is named after the check it reports, so a probe that errors reports under the same name."""


def run(conn: Connection, timeout: float = PROBE_TIMEOUT_S) -> PreflightReport:
    """Run every probe on the host; connection errors are a failed ``reachable`` check."""
    report = PreflightReport(conn.host.name)
    try:
        conn.transport()
    except SSHError as exc:
        report.checks.append(Check("reachable", False, str(exc), _reach_hint(exc)))
        return report
    report.checks.append(Check("reachable", True, f"{conn.host.user}@{conn.host.address}:{conn.host.port}"))

    def attempt(probe: Probe) -> tuple[Check, dict[str, Any]]:
        try:
            return probe(conn, conn.host, timeout)
        except RemoteTimeout:
            raise
        except SSHError as exc:  # a probe only reads: one retry rides out a dropped channel
            log.warning("preflight probe %s on %s failed (%s); retrying once", probe.__name__, conn.host.name, exc)
            return probe(conn, conn.host, timeout)

    def one(probe: Probe) -> tuple[Check, dict[str, Any]]:
        name = probe.__name__.strip("_")
        try:
            return attempt(probe)
        except RemoteTimeout:
            return Check(name, False, f"probe hung for {timeout:.0f}s", "check the host's load"), {}
        except SSHError as exc:
            return Check(name, False, str(exc), "check the connection"), {}

    with ThreadPoolExecutor(max_workers=len(PROBES)) as pool:
        for check, facts in pool.map(one, PROBES):
            report.checks.append(check)
            report.facts.update(facts)
    return report


def _reach_hint(exc: SSHError) -> str:
    from fleetdeck.fleet.ssh import AuthFailed, HostKeyChanged, UnknownHostKey

    if isinstance(exc, UnknownHostKey):
        return "pin the key with `fleetdeck fleet trust NAME`"
    if isinstance(exc, HostKeyChanged):
        return "find out why the key changed before trusting it again"
    if isinstance(exc, AuthFailed):
        return "check user and identity_file, and the key in the host's authorized_keys"
    return "check address, port and that sshd runs"
