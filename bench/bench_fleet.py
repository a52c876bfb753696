"""Fleet numbers: parallel provisioning, no-change re-runs, and how fast dead or silent agents are flagged.

Runs real sshd hosts on 127.0.0.1 (one Unix user each; needs root, like the tests), a real server
and the real agent under the real supervisor, and prints a table.

    .venv/bin/python bench/bench_fleet.py            # 4 hosts, silent window 10 s
    .venv/bin/python bench/bench_fleet.py --quick    # 2 hosts, silent window 4 s

Peer: ClearML marks a worker dead after 600 s without a report and its task watchdog aborts silent
tasks after 2 h by default (``api.workers.timeout``, ``services.tasks.non_responsive_tasks_watchdog``);
those are configuration constants, shown for reference, not measured here (it needs a ClearML server).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fleet.sshd makes the hosts


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 hosts and a short silent window (smoke run)")
    parser.add_argument("--hosts", type=int, default=None)
    args = parser.parse_args()
    host_count = args.hosts or (2 if args.quick else 4)
    silent_window = 4.0 if args.quick else 10.0

    home = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
        os.environ[var] = str(home / sub)  # known_hosts and client config stay in the bench's own dirs
    from tests.fleet import sshd

    reason = sshd.skip_reason()
    if reason:
        print(f"bench: cannot make SSH hosts: {reason}", file=sys.stderr)
        return 2
    from fleetdeck.client import Client
    from fleetdeck.fleet import inventory, provision, wheelhouse
    from fleetdeck.server_lite.process import ServerProcess

    rows: list[tuple[str, str, str]] = []
    hosts = sshd.start_hosts(host_count)
    server = ServerProcess(home / "server")
    server.start()
    client = Client(url=server.url, token=server.admin_token)
    try:
        t0 = time.perf_counter()
        bundle = wheelhouse.build()
        rows.append(("wheelhouse build (cached after the first run)", f"{time.perf_counter() - t0:.2f} s", ""))
        for host in hosts:
            host.reset()
        sshd.trust(hosts)
        limits = {"silent_window_s": silent_window}
        inv = inventory.from_dict({"hosts": [h.inventory_entry(queues=["bench"], limits=limits) for h in hosts]})

        t0 = time.perf_counter()
        results = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
        elapsed = time.perf_counter() - t0
        failed = [f"{r.host}: {r.error}" for r in results if r.status != "changed"]
        if failed:
            raise SystemExit("bench: provisioning failed: " + "; ".join(failed))
        rows.append((f"provision {host_count} hosts in parallel from scratch", f"{elapsed:.1f} s",
                     "preflight, upload, offline venv install, token, start"))
        wait(lambda: len({w["id"] for w in client.list_workers()}) >= host_count, 60, "agents to register")

        t0 = time.perf_counter()
        again = provision.Provisioner(inv, bundle, client).provision(inv.hosts)
        elapsed = time.perf_counter() - t0
        assert all(r.status == "ok" for r in again), [(r.host, r.status, r.changes, r.error) for r in again]
        rows.append((f"no-change re-run, {host_count} hosts", f"{elapsed:.2f} s", "target <= 5 s"))

        # A dead agent (process killed; its supervisor lives): flagged by the supervisor.
        status_file = hosts[0].home / ".fleetdeck" / "run" / "status.json"
        agent_pid = json.loads(status_file.read_text())["agent_pid"]
        os.kill(agent_pid, signal.SIGKILL)
        died = time.time()
        wait(lambda: [f for f in client.get("/fleet/findings", status="all")["items"]
                      if f["cause"] == "agent_dead" and f["host"] == hosts[0].name], 60, "agent_dead finding")
        rows.append(("dead agent (killed) -> flagged", f"{time.time() - died:.2f} s",
                     "target <= 15 s; ClearML: 600 s worker timeout"))

        # A dead host (supervisor and agent killed): flagged by the server when reports stop.
        wait(lambda: json.loads(status_file.read_text()).get("agent_pid"), 30, "agent restarted")
        sup_pid = int((hosts[1].home / ".fleetdeck" / "run" / "supervisor.pid").read_text())
        host1_status = json.loads((hosts[1].home / ".fleetdeck" / "run" / "status.json").read_text())
        os.kill(sup_pid, signal.SIGKILL)
        if host1_status.get("agent_pid"):
            os.killpg(host1_status["agent_pid"], signal.SIGKILL)
        died = time.time()
        wait(lambda: [f for f in client.get("/fleet/findings")["items"]
                      if f["cause"] == "no_heartbeat" and f["host"] == hosts[1].name], 60, "no_heartbeat finding")
        rows.append(("dead host (supervisor + agent killed) -> flagged", f"{time.time() - died:.2f} s",
                     "target <= 15 s; ClearML: 600 s worker timeout"))

        # A silent task on a live agent.
        task = client.create_task(name="silent", project="bench",
                                  script={"entry_point": "s.py", "code": "import time\ntime.sleep(600)\n"})
        client.enqueue(task["id"], "bench")
        found = wait(lambda: [f for f in client.get("/fleet/findings")["items"]
                              if f["cause"] == "silent" and f["task_id"] == task["id"]], silent_window + 90,
                     "silent finding")
        # Silence starts when the job's process starts (the "running" phase); setup phases before
        # it (venv install) are judged by their own timeouts.
        phases = client.get_task(task["id"])["runtime"]["agent"]["phases"]
        flagged = found[0]["created"] - phases["running"]["started"]
        rows.append((f"silent task -> flagged (window {silent_window:.0f} s)", f"{flagged:.2f} s",
                     f"target <= {silent_window + 10:.0f} s; ClearML watchdog: 7200 s"))
        client.set_status(task["id"], "aborted", reason="bench over", force=True)
    finally:
        client.close()
        server.stop()
        sshd.stop_hosts(hosts)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>9}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>9}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
