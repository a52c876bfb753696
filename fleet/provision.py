"""Install and start the agent on hosts over SSH, in parallel, idempotently.

On each host, under its ``install_dir`` (default ``~/.fleetdeck``)::

    wheelhouse/*.whl                  dependency wheels (uploaded once, reused by every install)
    wheelhouse/fleetdeck-<src>/...whl the fleetdeck wheel of one source tree
    venvs/<bundle-hash>/              one venv per bundle, complete when .fleetdeck-complete exists
    current -> venvs/<bundle-hash>    switched with one atomic rename
    agent-token                       the agent's API token, mode 600
    supervisor.json                   what the supervisor runs and its limits (no secrets)
    run/supervisor.pid, run/status.json, logs/

Every step first checks whether the host already has what it should, so a second run on an
unchanged host uploads nothing, installs nothing, restarts nothing and reports "ok".
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet import preflight
from fleetdeck.fleet.inventory import Host, Inventory, gpu_prices, price_per_gpu_hour
from fleetdeck.fleet.ssh import Connection, ConnectionPool, SSHError
from fleetdeck.fleet.wheelhouse import Bundle

MARKER = ".fleetdeck-complete"
KEEP_VENVS = 2
"""The current venv and the one before it stay on the host (a quick way back); older ones go."""

Step = Callable[[str], None]
"""Told the name of each step as it starts (drives the progress bar)."""

_STATUS_SCRIPT = r"""
import json, os, sys
root = sys.argv[1]
out = {"running": False}
try:
    pid = int(open(os.path.join(root, "run", "supervisor.pid")).read().split()[0])
    cmdline = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
    if any(b"fleetdeck.fleet.supervisor" in part for part in cmdline):
        out = {"running": True, "pid": pid, "python": os.path.realpath("/proc/%d/exe" % pid),
               "argv0": cmdline[0].decode(errors="replace")}
except (OSError, ValueError, IndexError):
    pass
try:
    out["status"] = json.load(open(os.path.join(root, "run", "status.json")))
except (OSError, ValueError):
    out["status"] = None
print(json.dumps(out))
"""

_START_SCRIPT = 'exec "$1/bin/python" -m fleetdeck.fleet.supervisor "$2" >>"$2/logs/supervisor.log" 2>&1 </dev/null'


class ProvisionError(FleetdeckError):
    """One host could not be provisioned; the message says which step and why."""


@dataclass
class HostResult:
    """What provisioning did on one host (the recap's row)."""

    host: str
    status: str = "ok"
    """ok (nothing to do), changed, or failed."""
    changes: list[str] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)

    def changed(self, what: str) -> None:
        self.changes.append(what)
        if self.status == "ok":
            self.status = "changed"


def remote_root(conn: Connection) -> str:
    """The host's install dir as an absolute path (relative ones are under the home)."""
    install_dir = conn.host.install_dir
    if install_dir.startswith("~/"):
        install_dir = install_dir[2:]
    return install_dir if posixpath.isabs(install_dir) else posixpath.join(conn.home(), install_dir)


def supervisor_config(host: Host, server_url: str, venv: str, root: str) -> dict[str, Any]:
    """What the supervisor on the host runs; the token is read from its own file, never put here."""
    argv = list(host.agent_command) or ["{venv}/bin/python", "-m", "fleetdeck.app", "agent", "--name", host.name,
                                        *[arg for q in host.queues for arg in ("--queue", q)]]
    return {"host": host.name, "worker": host.name, "queues": list(host.queues), "server_url": server_url,
            "token_file": posixpath.join(root, "agent-token"), "venv": venv,
            "agent_command": [a.replace("{venv}", venv) for a in argv], "limits": asdict(host.limits)}


class Provisioner:
    """Provisions hosts from one workstation: one SSH connection per host, one bundle for all.

    Args:
        inventory: the fleet.
        bundle: the wheels to install (:func:`fleetdeck.fleet.wheelhouse.build`).
        client: a server client (admin or user with token rights) used to register hosts and
            create each agent's token the first time.
        server_url: the URL the agents use; defaults to the inventory's, else the client's.
    """

    def __init__(self, inventory: Inventory, bundle: Bundle, client: Any, server_url: str | None = None,
                 pool: ConnectionPool | None = None, start: bool = True) -> None:
        self.inventory = inventory
        self.bundle = bundle
        self.client = client
        self.server_url = server_url or inventory.server_url or client.url
        self.pool = pool or ConnectionPool(inventory)
        self.start = start
        self._prices = gpu_prices()

    def provision(self, hosts: Sequence[Host], on_step: Callable[[str, str], None] | None = None,
                  parallel: int = 8) -> list[HostResult]:
        """Provision hosts in parallel; one host's failure never stops the others."""
        def one(host: Host) -> HostResult:
            return self.provision_host(host, lambda step: on_step(host.name, step) if on_step else None)

        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
            return list(pool.map(one, hosts))

    def provision_host(self, host: Host, step: Step | None = None) -> HostResult:
        step = step or (lambda _: None)
        result = HostResult(host.name)
        started = time.monotonic()
        try:
            self._provision(host, result, step)
        except (SSHError, ProvisionError, FleetdeckError) as exc:
            result.status, result.error = "failed", str(exc)
        except OSError as exc:  # SFTP errors (permission denied, disk full) surface as OSError
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.seconds = time.monotonic() - started
        return result

    # -- steps -----------------------------------------------------------------------------

    def _provision(self, host: Host, result: HostResult, step: Step) -> None:
        step("preflight")
        conn = self.pool.get(host.name)
        report = preflight.run(conn)
        result.facts = report.facts
        result.warnings = [f"{c.name}: {c.detail}" for c in report.warnings()]
        if not report.ok:
            raise ProvisionError(f"preflight: {report.summary()}")
        tag = report.facts.get("python", "")
        if not _compatible(self.bundle.python_tag, tag, report.facts.get("arch", "")):
            raise ProvisionError(f"preflight: the wheelhouse is built for {self.bundle.python_tag}; the host "
                                 f"has Python {tag} on {report.facts.get('arch')}; run provisioning from a "
                                 "workstation with the same Python version and architecture")
        root = remote_root(conn)
        step("upload")
        self._dirs(conn, root)
        self._upload(conn, root, result)
        step("install")
        venv = self._install(conn, root, host, result)
        step("configure")
        self._token(conn, root, host, result)
        config = json.dumps(supervisor_config(host, self.server_url, venv, root), indent=2, sort_keys=True)
        if conn.read_file(posixpath.join(root, "supervisor.json")) != config.encode():
            conn.write_file(posixpath.join(root, "supervisor.json"), config.encode(), mode=0o644)
            result.changed("supervisor config")
        self._switch(conn, root, venv, result)
        if self.start:
            step("start")
            self._ensure_supervisor(conn, root, venv, result)
        step("register")
        record = host.to_record(price_per_gpu_hour(host, self._prices))
        del record["name"]  # it is in the URL
        record["install"] = {"bundle": self.bundle.content_hash[:16], "venv": venv, **report.facts}
        self.client.request("PUT", f"/fleet/hosts/{_seg(host.name)}", json=record)
        self._prune(conn, root, venv)

    def _dirs(self, conn: Connection, root: str) -> None:
        if conn.stat(posixpath.join(root, "logs")) is None:
            conn.run(["mkdir", "-p", "--", *(posixpath.join(root, d) for d in
                                           ("wheelhouse", "venvs", "run", "logs"))]).check("creating " + root)

    def _upload(self, conn: Connection, root: str, result: HostResult) -> None:
        wheelhouse = posixpath.join(root, "wheelhouse")
        fleetdeck_dir = posixpath.join(wheelhouse, self.bundle.fleetdeck_wheel.parent.name)
        present = conn.listdir(wheelhouse)
        uploaded = 0
        for wheel in self.bundle.dependency_wheels:
            if present.get(wheel.name) != wheel.stat().st_size:
                conn.put_file(wheel, posixpath.join(wheelhouse, wheel.name))
                uploaded += 1
        if conn.listdir(fleetdeck_dir).get(self.bundle.fleetdeck_wheel.name) != self.bundle.fleetdeck_wheel.stat().st_size:
            conn.run(["mkdir", "-p", "--", fleetdeck_dir]).check("creating the wheel dir")
            conn.put_file(self.bundle.fleetdeck_wheel, posixpath.join(fleetdeck_dir, self.bundle.fleetdeck_wheel.name))
            uploaded += 1
        if uploaded:
            result.changed(f"uploaded {uploaded} wheel(s)")

    def _install(self, conn: Connection, root: str, host: Host, result: HostResult) -> str:
        venv = posixpath.join(root, "venvs", self.bundle.content_hash[:16])
        if conn.stat(posixpath.join(venv, MARKER)) is not None:
            return venv
        wheelhouse = posixpath.join(root, "wheelhouse")
        conn.run(["rm", "-rf", "--", venv], timeout=120).check("removing a half-made venv")
        conn.run([host.python, "-m", "venv", venv], timeout=300).check("creating the venv")
        conn.run([posixpath.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--no-index",
                  "--disable-pip-version-check", "--find-links", wheelhouse, "--find-links",
                  posixpath.join(wheelhouse, self.bundle.fleetdeck_wheel.parent.name),
                  *self.bundle.requirements], timeout=600).check("installing the agent (pip, offline)")
        conn.write_file(posixpath.join(venv, MARKER), json.dumps(self.bundle.manifest()).encode())
        result.changed(f"installed venv {posixpath.basename(venv)}")
        return venv

    def _token(self, conn: Connection, root: str, host: Host, result: HostResult) -> None:
        """Give the host an agent token, once; replace it only when the server refuses it."""
        path = posixpath.join(root, "agent-token")
        attrs = conn.stat(path)
        if attrs is not None and attrs.st_size:
            if attrs.st_mode is not None and attrs.st_mode & 0o077:
                conn.sftp().chmod(path, 0o600)
                result.changed("agent token made private (600)")
            if self._token_works((conn.read_file(path) or b"").decode().strip()):
                return
            what = "agent token replaced (the server refused the old one)"
        else:
            what = "agent token"
        doc = self.client.post("/tokens", {"name": f"agent-{host.name}", "role": "agent"})
        conn.write_file(path, doc["token"].encode(), mode=0o600)
        result.changed(what)

    def _token_works(self, token: str) -> bool:
        from fleetdeck.client import Client
        from fleetdeck.config import ClientSettings
        from fleetdeck.errors import AuthError

        settings = ClientSettings(url=self.client.url, token=token, timeout_s=10.0, retries=1)
        with Client(settings=settings) as probe:
            try:
                probe.list_workers()
            except AuthError:
                return False
        return True

    def _switch(self, conn: Connection, root: str, venv: str, result: HostResult) -> None:
        current = posixpath.join(root, "current")
        target = posixpath.relpath(venv, root)
        if conn.readlink(current) == target:
            return
        tmp = current + ".new"
        conn.run(["rm", "-f", "--", tmp]).check("clearing the old switch")
        conn.run(["ln", "-s", "--", target, tmp]).check("linking the new venv")
        conn.run(["mv", "-T", "--", tmp, current]).check("switching to the new venv")
        result.changed(f"current -> {target}")

    def _ensure_supervisor(self, conn: Connection, root: str, venv: str, result: HostResult) -> None:
        state = supervisor_state(conn, root)
        if state.get("running"):
            if state.get("argv0", "").startswith(venv + "/") or state.get("python", "").startswith(venv + "/"):
                if "supervisor config" not in result.changes:
                    return
            stop_supervisor(conn, root)
            result.changed("supervisor restarted on the new install")
        else:
            result.changed("supervisor started")
        start_supervisor(conn, root, venv)

    def _prune(self, conn: Connection, root: str, venv: str) -> None:
        venvs_dir = posixpath.join(root, "venvs")
        try:
            entries = sorted(conn.sftp().listdir_attr(venvs_dir), key=lambda a: a.st_mtime or 0, reverse=True)
        except FileNotFoundError:
            return
        keep = {posixpath.basename(venv)} | {a.filename for a in entries[:KEEP_VENVS]}
        old = [posixpath.join(venvs_dir, a.filename) for a in entries if a.filename not in keep]
        if old:
            conn.run(["rm", "-rf", "--", *old], timeout=120).check("removing old venvs")


def _compatible(bundle_tag: str, python_version: str, arch: str) -> bool:
    want_py, _, want_arch = bundle_tag.partition("-")
    have_py = "cp" + "".join(python_version.split(".")[:2])
    return want_py == have_py and want_arch == arch


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# -- the supervisor process on a host --------------------------------------------------------------


def supervisor_state(conn: Connection, root: str) -> dict[str, Any]:
    """Whether the supervisor runs (pidfile + /proc), and its last status file."""
    result = conn.run([conn.host.python, "-c", _STATUS_SCRIPT, root], timeout=20).check("reading supervisor state")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def start_supervisor(conn: Connection, root: str, venv: str | None = None, wait_s: float = 20.0) -> int:
    """Start the supervisor detached (``setsid``), then wait until its pidfile names a live process.

    Returns:
        The supervisor's pid.
    """
    venv = venv or posixpath.join(root, "current")
    conn.run(["setsid", "-f", "sh", "-c", _START_SCRIPT, "sh", venv, root]).check("starting the supervisor")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = supervisor_state(conn, root)
        if state.get("running"):
            return int(state["pid"])
        time.sleep(0.2)
    log = conn.run(["tail", "-n", "5", posixpath.join(root, "logs", "supervisor.log")]).stdout.strip()
    raise ProvisionError(f"the supervisor did not start within {wait_s:.0f}s: {log.splitlines()[-1] if log else 'no log'}")


def signal_supervisor(conn: Connection, root: str, signal_name: str) -> int | None:
    """Send a signal to the running supervisor; None if it is not running."""
    state = supervisor_state(conn, root)
    if not state.get("running"):
        return None
    conn.run(["kill", f"-{signal_name}", str(state["pid"])]).check(f"signalling the supervisor ({signal_name})")
    return int(state["pid"])


def stop_supervisor(conn: Connection, root: str, wait_s: float = 30.0) -> bool:
    """Stop the supervisor (it stops its agent first); False if it was not running."""
    pid = signal_supervisor(conn, root, "TERM")
    if pid is None:
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not supervisor_state(conn, root).get("running"):
            return True
        time.sleep(0.2)
    conn.run(["kill", "-KILL", str(pid)])
    return True
