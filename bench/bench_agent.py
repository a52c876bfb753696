"""Agent latency: enqueue → job process started (warm and cold venv cache), dead agent → task requeued.

Runs a real server and real ``fleetdeck agent`` processes on loopback and prints a table.

    .venv/bin/python bench/bench_agent.py            # 30 warm samples, 3 dead-agent samples
    .venv/bin/python bench/bench_agent.py --quick    # a smoke run

Peer: clearml-agent sleeps 5 s between empty queue polls by default, so its enqueue → start is
about 2.5 s on average before any install; not measured here (it needs a ClearML server).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess

STARTED = textwrap.dedent("""\
    import os, time
    t = time.time()
    with open({path!r}, "a") as fh:
        fh.write(f"{{os.environ['FLEETDECK_TASK_ID']}} {{t}}\\n")
    {tail}
""")


def start_agent(server: ServerProcess, token: str, root: Path, name: str, cache: Path, lease: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": token}
    log = open(root / f"agent-{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "fleetdeck.app", "agent", "--queue", "bench", "--name", name,
                             "--work-dir", str(root / f"work-{name}"), "--venv-cache", str(cache),
                             "--lease", str(lease), "--heartbeat", "1", "--min-free", "100m",
                             "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def started_at(marks: Path, task_id: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marks.exists():
            for line in marks.read_text().splitlines():
                tid, _, ts = line.partition(" ")
                if tid == task_id:
                    return float(ts)
        time.sleep(0.005)
    raise SystemExit(f"task {task_id} did not start within {timeout}s")


def wait_status(client: Client, task_id: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get_task(task_id)
        if task["status"] in statuses and not task.get("lease"):
            return task
        time.sleep(0.02)
    raise SystemExit(f"task {task_id} not {statuses} within {timeout}s")


def one_start(client: Client, marks: Path, timeout: float, tail: str = "") -> tuple[str, float]:
    task = client.create_task(name="bench", project="bench",
                              script={"entry_point": "job.py", "code": STARTED.format(path=str(marks), tail=tail)})
    sent = time.time()
    client.enqueue(task["id"], "bench")
    return task["id"], started_at(marks, task["id"], timeout) - sent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples, for a smoke run")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--lease", type=float, default=15.0, help="agent lease seconds for the dead-agent test")
    args = parser.parse_args()
    warm_n = 5 if args.quick else args.samples
    dead_n = 1 if args.quick else 3
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="fleetdeck-bench-agent-") as tmp:
        root = Path(tmp)
        with ServerProcess(root / "server") as server, Client(url=server.url, token=server.admin_token) as client:
            token = client.post("/tokens", {"name": "bench-agent", "role": "agent"})["token"]
            marks = root / "started.log"
            agent = start_agent(server, token, root, "bench-1", root / "venvs", args.lease)
            try:
                client.create_queue("bench")
                _, cold = one_start(client, marks, timeout=600)
                rows.append(("enqueue → job started, cold venv cache", f"{cold:.2f} s", "1 sample",
                             "venv built: SDK deps from the pip cache"))
                warm = []
                for _ in range(warm_n):
                    task_id, latency = one_start(client, marks, timeout=60)
                    wait_status(client, task_id, {"completed"}, 60)
                    warm.append(latency)
                rows.append(("enqueue → job started, warm venv cache (p50)", f"{statistics.median(warm):.3f} s",
                             f"{warm_n} samples", f"p90 {pct(warm, 0.9):.3f} s, max {max(warm):.3f} s; target ≤ 0.5 s"))
            finally:
                stop(agent)
            requeue = []
            for i in range(dead_n):
                doomed = start_agent(server, token, root, f"doomed-{i}", root / "venvs", args.lease)
                task_id, _ = one_start(client, marks, timeout=60, tail="time.sleep(600)")
                os.killpg(doomed.pid, signal.SIGKILL)  # the agent and its job, as a host crash would
                killed = time.time()
                deadline = time.monotonic() + 120
                while client.get_task(task_id)["status"] != "queued":
                    if time.monotonic() > deadline:
                        raise SystemExit("task was not requeued within 120 s")
                    time.sleep(0.02)
                requeue.append(time.time() - killed)
                client.request("DELETE", f"/queues/bench/entries/{task_id}")
                doomed.wait()
            rows.append((f"dead agent → task back in queue (lease {args.lease:.0f} s)",
                         f"{statistics.median(requeue):.1f} s", f"{dead_n} samples",
                         f"max {max(requeue):.1f} s; target ≤ 30 s"))
    rows.append(("clearml-agent enqueue → start (peer, documented)", "≈2.5 s avg", "-",
                 "5 s queue polling interval; not measured (needs a ClearML server)"))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "value", "n", "notes")
    width = [max(w, len(h)) for w, h in zip(width, header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, width)))
    print("  ".join("-" * w for w in width))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, width)))


if __name__ == "__main__":
    main()
