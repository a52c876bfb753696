"""``fleetdeck fleet``: the SSH fleet from the workstation.

``add`` and ``list`` edit and show the inventory; ``trust`` pins a host key; ``provision``
installs and starts agents in parallel with a progress bar per host and an Ansible-like recap;
``start|stop|restart|status|logs`` act on the supervisor over SSH; ``images sync`` keeps Docker
images ready on the hosts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table

RECAP_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "refused": "red"}


def _inventory() -> Any:
    from fleetdeck.fleet import inventory

    return inventory.load()


def _hosts(names: tuple[str, ...], all_hosts: bool) -> tuple[Any, list[Any]]:
    inv = _inventory()
    return inv, inv.select(list(names), all_hosts)


@click.group()
def fleet() -> None:
    """Provision, supervise and inspect agents on SSH hosts."""


# -- inventory -------------------------------------------------------------------------------------


@fleet.command("add")
@click.argument("name")
@click.option("--host", "target", required=True, metavar="USER@ADDR[:PORT]", help="How to reach the host.")
@click.option("--identity", "identity_file", metavar="FILE", help="SSH private key (default: agent and ~/.ssh).")
@click.option("--jump", metavar="HOST", help="Inventory host to tunnel through (like ssh -J).")
@click.option("--label", "labels", multiple=True, help="Label (repeatable).")
@click.option("--queue", "queues", multiple=True, help="Queue the agent serves (repeatable; default: default).")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True, help="GPU count.")
@click.option("--gpu-model", help="GPU model, priced from configs/pricing.toml when no --price-per-hour.")
@click.option("--price-per-hour", type=click.FloatRange(0), help="What the whole host costs per hour.")
@click.option("--install-dir", default=".fleetdeck", show_default=True, help="Where fleetdeck lives on the host.")
@click.option("--replace", is_flag=True, help="Replace a host of the same name.")
def add(name: str, target: str, identity_file: str | None, jump: str | None, labels: tuple[str, ...],
        queues: tuple[str, ...], gpus: int, gpu_model: str | None, price_per_hour: float | None,
        install_dir: str, replace: bool) -> None:
    """Add host NAME to the inventory."""
    from fleetdeck.fleet import inventory

    user, address, port = inventory.parse_target(target)
    inv = inventory.load()
    entry = {"name": name, "address": address, "port": port, "user": user, "identity_file": identity_file,
             "jump": jump, "labels": list(labels), "queues": list(queues or ("default",)), "gpus": gpus,
             "gpu_model": gpu_model, "price_per_hour": price_per_hour, "install_dir": install_dir}
    host = inventory.from_dict({"hosts": [{k: v for k, v in entry.items() if v is not None}]}).hosts[0]
    updated = inv.with_host(host, replace_existing=replace)
    if host.jump:
        updated.jump_host(host)  # the jump host must exist (and not be the host itself)
    path = inventory.save(updated)
    click.echo(f"added {name} ({user}@{address}:{port}) to {path}; next: fleetdeck fleet trust {name}")


@fleet.command("list")
@click.pass_context
def list_hosts(ctx: click.Context) -> None:
    """Show the inventory with each host's last known state from the server."""
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.fleet.inventory import gpu_prices, price_per_gpu_hour

    inv = _inventory()
    known: dict[str, Any] = {}
    note = ""
    try:
        with make_client(ctx) as client:
            known = {h["name"]: h for h in client.get("/fleet/hosts")["items"]}
    except FleetdeckError as exc:
        note = f"(state unknown: {exc})"
    prices = gpu_prices()
    rows = []
    for host in inv.hosts:
        doc = known.get(host.name, {})
        status = doc.get("supervisor") or {}
        price = price_per_gpu_hour(host, prices)
        rows.append((host.name, f"{host.user}@{host.address}:{host.port}", ",".join(host.labels),
                     ",".join(host.queues), f"{host.gpus}x {host.gpu_model or '?'}" if host.gpus else "-",
                     "-" if price is None else f"{price:.2f}", _state(doc.get("state", "never provisioned")),
                     status.get("restarts", ""), ago(status.get("last_seen"))))
    console.print(table(["HOST", "SSH", "LABELS", "QUEUES", "GPUS", "$/GPU-H", "STATE", "RESTARTS", "SEEN"], rows))
    if note:
        click.echo(note, err=True)


def _state(state: str) -> Text:
    styles = {"ok": "green", "degraded": "yellow", "down": "red", "stopped": "dim", "unknown": "dim"}
    return Text(state, style=styles.get(state, ""))


# -- host keys -------------------------------------------------------------------------------------


@fleet.command("trust")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Pin without asking (for scripts that checked the fingerprint).")
@click.option("--replace", is_flag=True, help="Replace a different key already pinned (after a reinstall).")
def trust(name: str, yes: bool, replace: bool) -> None:
    """Show host NAME's key fingerprint and pin it in fleetdeck's known_hosts."""
    from fleetdeck.fleet.ssh import Connection, fingerprint, pin_host_key, pinned_key, scan_host_key

    inv = _inventory()
    host = inv.host(name)
    jump = Connection(inv.jump_host(host)) if host.jump else None
    try:
        key = scan_host_key(host, jump=jump)
    finally:
        if jump is not None:
            jump.close()
    pinned = pinned_key(host)
    if pinned is not None and pinned.asbytes() == key.asbytes():
        click.echo(f"{name} is already trusted ({key.get_name()} {fingerprint(key)})")
        return
    if pinned is not None and not replace:
        from fleetdeck.fleet.ssh import HostKeyChanged

        raise HostKeyChanged(f"host {name} now presents {key.get_name()} {fingerprint(key)} but "
                             f"{fingerprint(pinned)} is pinned; if you know why it changed, run "
                             f"`fleetdeck fleet trust {name} --replace`")
    click.echo(f"{name} ({host.address}:{host.port}) presents {key.get_name()} key {fingerprint(key)}")
    if not yes and not click.confirm("Does this fingerprint match the host's (ssh-keygen -lf on the host)? "
                                     "Trust it", default=False):
        raise click.ClickException("not trusted; nothing changed")
    pin_host_key(host, key, replace=replace)
    click.echo(f"trusted {name}")


# -- provisioning ----------------------------------------------------------------------------------


@fleet.command("provision")
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True, help="Every host in the inventory.")
@click.option("--no-start", is_flag=True, help="Install only; do not start or restart the supervisor.")
@click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="fleetdeck source tree to build the agent's wheel from (default: this installation's).")
@click.pass_context
def provision_cmd(ctx: click.Context, names: tuple[str, ...], all_hosts: bool, no_start: bool, parallel: int,
                  source: Path | None) -> None:
    """Check, install and start the agent on hosts, in parallel; ends with a recap."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from fleetdeck.fleet import wheelhouse
    from fleetdeck.fleet.provision import Provisioner

    inv, hosts = _hosts(names, all_hosts)
    started = time.monotonic()
    with console.status("building the wheelhouse (cached after the first run)"):
        bundle = wheelhouse.build(source) if source else wheelhouse.build()
    steps = ["preflight", "upload", "install", "configure", "start", "register"]
    with make_client(ctx) as client, Progress(
            SpinnerColumn(), TextColumn("{task.fields[host]:<16}"), BarColumn(bar_width=24),
            TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
            disable=not console.is_terminal) as progress:
        bars = {h.name: progress.add_task("waiting", total=len(steps), host=h.name[:16]) for h in hosts}

        def on_step(host: str, step: str) -> None:
            progress.update(bars[host], description=step, completed=steps.index(step))

        results = Provisioner(inv, bundle, client, start=not no_start).provision(hosts, on_step, parallel)
        for result in results:
            progress.update(bars[result.host], completed=len(steps), description=result.status)
    _recap(results, time.monotonic() - started)
    if any(r.status == "failed" for r in results):
        sys.exit(1)


def _recap(results: list[Any], seconds: float) -> None:
    rows = []
    for r in results:
        what = r.error if r.status == "failed" else ("; ".join(r.changes) or "ok, nothing changed")
        if r.warnings:
            what += f"  [warn: {'; '.join(r.warnings)}]"
        rows.append((r.host, Text(r.status, style=RECAP_STYLE[r.status]), f"{r.seconds:.1f}s", what))
    console.print(table(["HOST", "RESULT", "TIME", "WHAT"], rows, title="recap"))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "changed", "failed")}
    console.print(f"ok={counts['ok']} changed={counts['changed']} failed={counts['failed']} in {seconds:.1f}s")


# -- supervisor control ----------------------------------------------------------------------------


def _each(names: tuple[str, ...], all_hosts: bool, action: Any) -> None:
    """Run ``action(conn, root)`` on hosts in parallel; print one line per host; exit 1 on failures."""
    from concurrent.futures import ThreadPoolExecutor

    from fleetdeck.errors import FleetdeckError
    from fleetdeck.fleet.provision import remote_root
    from fleetdeck.fleet.ssh import ConnectionPool

    inv, hosts = _hosts(names, all_hosts)
    with ConnectionPool(inv) as pool:
        def one(host: Any) -> tuple[str, bool, str]:
            try:
                conn = pool.get(host.name)
                return host.name, True, action(conn, remote_root(conn))
            except FleetdeckError as exc:
                return host.name, False, str(exc)

        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as executor:
            outcomes = list(executor.map(one, hosts))
    for name, ok, message in outcomes:
        click.echo(f"{name}: {message}", err=not ok)
    if not all(ok for _, ok, _ in outcomes):
        sys.exit(1)


@fleet.command("start")
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True)
def start(names: tuple[str, ...], all_hosts: bool) -> None:
    """Start the supervisor (and so the agent) on hosts."""
    from fleetdeck.fleet.provision import start_supervisor, supervisor_state

    def action(conn: Any, root: str) -> str:
        state = supervisor_state(conn, root)
        if state.get("running"):
            return f"already running (pid {state['pid']})"
        return f"started (pid {start_supervisor(conn, root)})"

    _each(names, all_hosts, action)


@fleet.command("stop")
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True)
def stop(names: tuple[str, ...], all_hosts: bool) -> None:
    """Stop the agent and its supervisor on hosts (a running task is stopped)."""
    from fleetdeck.fleet.provision import stop_supervisor

    _each(names, all_hosts, lambda conn, root: "stopped" if stop_supervisor(conn, root) else "was not running")


@fleet.command("restart")
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True)
def restart(names: tuple[str, ...], all_hosts: bool) -> None:
    """Restart the agent now (the supervisor records why); starts the supervisor if it is down."""
    _each(names, all_hosts, restart_agent)


def restart_agent(conn: Any, root: str) -> str:
    from fleetdeck.fleet.provision import signal_supervisor, start_supervisor

    pid = signal_supervisor(conn, root, "HUP")
    if pid is None:
        return f"supervisor was down; started it (pid {start_supervisor(conn, root)})"
    return f"agent restart requested (supervisor pid {pid})"


@fleet.command("drain")
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True)
def drain(names: tuple[str, ...], all_hosts: bool) -> None:
    """Stop the agent after its current task and keep it stopped (``fleet restart`` puts it back to work)."""
    _each(names, all_hosts, drain_agent)


def drain_agent(conn: Any, root: str) -> str:
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.fleet.provision import signal_supervisor

    if signal_supervisor(conn, root, "USR1") is None:
        raise FleetdeckError(f"the supervisor on {conn.host.name} is not running; nothing to drain")
    return f"draining {conn.host.name}: the agent stops after its current task and is not restarted"


@fleet.command("status")
@click.argument("names", nargs=-1)
@click.option("--watch", type=click.FloatRange(1), default=None, metavar="SECONDS",
              help="Check again every SECONDS over the same connections; report hosts failing 3 checks in a row.")
@click.pass_context
def status(ctx: click.Context, names: tuple[str, ...], watch: float | None) -> None:
    """Check hosts over SSH: reachable, supervisor and agent state, memory and restarts."""
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.fleet.health import HealthChecker
    from fleetdeck.fleet.ssh import ConnectionPool

    inv = _inventory()
    hosts = inv.select(list(names), all_hosts=not names)
    client = None
    if watch:
        try:
            client = make_client(ctx)
        except FleetdeckError as exc:
            click.echo(f"note: findings will not be reported: {exc}", err=True)
    with ConnectionPool(inv) as pool:
        checker = HealthChecker(inv, pool, client)
        while True:
            results = checker.check_all(hosts)
            rows = []
            for h in results:
                sup = h.supervisor.get("status") or {}
                state = (sup.get("state", "?") if h.supervisor.get("running") else "supervisor down") \
                    if h.reachable else f"unreachable x{h.consecutive_failures}"
                rows.append((h.host, Text(state, style="green" if state == "running" else "red"),
                             sup.get("agent_pid") or "-", sup.get("rss_mb", "-"), sup.get("restarts", "-"),
                             sup.get("pending_restart") or ""))
            console.print(table(["HOST", "STATE", "AGENT PID", "RSS MB", "RESTARTS", "NOTE"], rows))
            for h in results:
                if h.error:
                    click.echo(f"{h.host}: {h.error}", err=True)
            if not watch:
                break
            time.sleep(watch)
    if client is not None:
        client.close()
    if any(not h.reachable for h in results):
        sys.exit(1)


@fleet.command("logs")
@click.argument("name")
@click.option("--follow/--no-follow", "-f", default=False, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--lines", "-n", type=click.IntRange(0), default=100, show_default=True)
@click.option("--supervisor", "which", flag_value="supervisor", help="The supervisor's log instead of the agent's.")
def logs(name: str, follow: bool, lines: int, which: str | None) -> None:
    """Tail the agent's log on host NAME over SSH."""
    import posixpath

    from fleetdeck.fleet.provision import remote_root
    from fleetdeck.fleet.ssh import Connection

    inv = _inventory()
    host = inv.host(name)
    jump = Connection(inv.jump_host(host)) if host.jump else None
    with Connection(host, jump=jump) as conn:
        path = posixpath.join(remote_root(conn), "logs", f"{which or 'agent'}.log")
        argv = ["tail", "-n", str(lines), *(["-F"] if follow else []), path]
        out = sys.stdout.buffer
        try:
            code = conn.stream(argv, lambda data: (out.write(data), out.flush()))
        except KeyboardInterrupt:
            code = 0
    if jump is not None:
        jump.close()
    if code not in (0, None):
        raise click.ClickException(f"tail {path} on {name} exited {code} (is the host provisioned?)")


# -- images ----------------------------------------------------------------------------------------


@fleet.group("images")
def images() -> None:
    """Docker images on the hosts."""


@images.command("sync")
@click.argument("names", nargs=-1)
@click.option("--image", "only", multiple=True, help="Only these images (default: the inventory's lists).")
@click.option("--force", is_flag=True, help="Upload even when the host has the same image id.")
def images_sync(names: tuple[str, ...], only: tuple[str, ...], force: bool) -> None:
    """Make the configured images present on hosts (docker save | ssh docker load when missing)."""
    from concurrent.futures import ThreadPoolExecutor

    from fleetdeck.fleet.images import sync_image
    from fleetdeck.fleet.ssh import ConnectionPool

    inv = _inventory()
    hosts = inv.select(list(names), all_hosts=not names)
    max_bytes = int(inv.max_image_gb * 1e9)
    work = [(h, img) for h in hosts for img in (list(only) or inv.images_for(h))]
    if not work:
        raise click.ClickException("no images configured: add [images] keep = [...] to the inventory or pass --image")
    with ConnectionPool(inv) as pool:
        def one(item: tuple[Any, str]) -> Any:
            host, image = item
            try:
                return sync_image(pool.get(host.name), image, max_bytes, force=force)
            except Exception as exc:  # noqa: BLE001 - one host's SSH failure must not hide the others' results
                from fleetdeck.fleet.images import ImageResult

                return ImageResult(host.name, image, "failed", detail=str(exc))

        with ThreadPoolExecutor(max_workers=min(8, len(work))) as executor:
            results = list(executor.map(one, work))
    console.print(table(["HOST", "IMAGE", "RESULT", "SIZE", "TIME", "DETAIL"],
                        [(r.host, r.image, Text(r.status, style=RECAP_STYLE.get(r.status, "")),
                          f"{r.size_bytes / 1e6:.1f} MB", f"{r.seconds:.1f}s", r.detail) for r in results]))
    if any(r.status in ("failed", "refused") for r in results):
        sys.exit(1)
