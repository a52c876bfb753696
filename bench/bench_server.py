"""Benchmark the tracking server against its targets and, side by side, MLflow's tracking server.

One command, prints a table::

    .venv/bin/python bench/bench_server.py            # full: 100,000 tasks, 1,000,000-point series
    .venv/bin/python bench/bench_server.py --quick    # smoke run: small scale, a minute or so
    .venv/bin/python bench/bench_server.py --no-mlflow

Both servers are real processes on loopback, driven over HTTP from this (single) client process.
MLflow (sqlite backend) is installed by this script into its own venv ``.bench/mlflow-venv``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VENV = ROOT / ".bench" / "mlflow-venv"
PROJECTS = [f"team-{i:02d}" for i in range(20)]
DIFF_BYTES = 2000
"""One task in ten carries an uncommitted diff of this size (kept apart from listings, but in memory)."""
TAGS = ["baseline", "sweep", "gpu", "ablation", "nightly"]


@dataclass
class Row:
    what: str
    target: str = ""
    fleetdeck: str = "-"
    mlflow: str = "-"
    ok: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Scale:
    tasks: int
    points: int
    batch_points: int
    mlflow_runs: int
    mlflow_points: int


FULL = Scale(tasks=100_000, points=1_000_000, batch_points=100_000, mlflow_runs=5_000, mlflow_points=100_000)
QUICK = Scale(tasks=10_000, points=200_000, batch_points=50_000, mlflow_runs=1_000, mlflow_points=20_000)


def p50_ms(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s"


# -- fleetdeck -------------------------------------------------------------------------------


def bench_fleetdeck(scale: Scale, work: Path, rows: dict[str, Row]) -> None:
    env = {"XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "share")}
    server = ServerProcess(work / "fd-data", env=env, log_path=work / "fd-server.log").start()
    try:
        with Client(url=server.url, token=server.admin_token) as client:
            # ingest: columnar scalar batches into one series (which the downsample step then reads)
            task = client.create_task(name="ingest", project="bench")
            batches = scale.points // scale.batch_points
            payloads = []
            for b in range(batches):
                its = list(range(b * scale.batch_points, (b + 1) * scale.batch_points))
                payloads.append({"batch_id": f"ingest-{b:06d}", "scalars": [
                    {"metric": "loss", "variant": "train", "iterations": its,
                     "values": [1.0 / (1 + i) + (5.0 if i % 99_991 == 0 else 0.0) for i in its]}]})
            start = time.perf_counter()
            for payload in payloads:
                client.post_events(task["id"], payload)
            rate = scale.points / (time.perf_counter() - start)
            row = rows["ingest"]
            row.fleetdeck, row.ok = fmt_rate(rate), rate >= 200_000
            row.notes.append(f"fleetdeck: {batches} batches of {scale.batch_points:,} points")

            ms = p50_ms(lambda: client.get_series(task["id"], "loss", "train", max_points=500), 20)
            row = rows["downsample"]
            row.what = f"{scale.points:,}-point series -> 500 points, p50"
            row.fleetdeck, row.ok = f"{ms:.1f} ms", ms <= 100

            # populate tasks through the bulk endpoint, 1000 per request
            rng = random.Random(1)
            start = time.perf_counter()
            for chunk in range(0, scale.tasks, 1000):
                client.post("/tasks/bulk", {"tasks": [
                    {"name": f"run-{i:06d}-{rng.choice(['resnet', 'vit', 'bert', 'gpt'])}",
                     "project": PROJECTS[i % len(PROJECTS)], "tags": rng.sample(TAGS, 2),
                     "hyperparams": {"Args": {"lr": {"value": rng.random(), "type": "float"},
                                              "batch": {"value": 64, "type": "int"}}},
                     "script": {"repository": "https://example.com/repo.git", "commit": "ab" * 20,
                                "entry_point": "train.py", "diff": "x" * DIFF_BYTES if i % 10 == 0 else ""}}
                    for i in range(chunk, min(chunk + 1000, scale.tasks))]})
            fill_s = time.perf_counter() - start
            rows["populate"].fleetdeck = f"{fill_s:.1f} s"
            rows["populate"].what = f"populate {scale.tasks:,} tasks"
            rows["populate"].notes.append(f"fleetdeck tasks: 2 tags, 2 hyperparameters, script fields; one in ten "
                                          f"with a {DIFF_BYTES:,}-byte diff; {len(PROJECTS)} projects")

            ms = p50_ms(lambda: client.create_task(name="probe", project="team-03", tags=["gpu"]), 300)
            rows["create"].fleetdeck, rows["create"].ok = f"{ms:.2f} ms", ms <= 5
            query = {"project": "team-07", "tag": "gpu", "page_size": 50}
            assert len(client.list_tasks(**query)["items"]) == 50
            ms = p50_ms(lambda: client.list_tasks(**query), 100)
            rows["list"].fleetdeck, rows["list"].ok = f"{ms:.2f} ms", ms <= 20
            rows["list"].notes.append("fleetdeck list filter: project=team-07 & tag=gpu, newest first")
            ms = p50_ms(lambda: client.list_tasks(name="resnet", page_size=50), 50)
            rows["list_name"].fleetdeck = f"{ms:.2f} ms"
            ms = p50_ms(lambda: client.list_tasks(project="team-07", order_by="name", page_size=50), 30)
            rows["list_sorted"].fleetdeck = f"{ms:.2f} ms"

        mb = rss_mb(server.proc.pid)  # type: ignore[union-attr]
        rows["rss"].fleetdeck, rows["rss"].ok = f"{mb:,.0f} MB", mb <= 1024
        rows["rss"].what = f"server RSS with {scale.tasks:,} tasks"

        server.kill()  # a crash: the restart replays the journal since the last snapshot
        journal = sum(p.stat().st_size for p in (server.data_dir / "docs" / "journal").glob("*.log"))
        start = time.perf_counter()
        server.start(timeout=120)
        replay_s = time.perf_counter() - start
        rows["restart"].fleetdeck, rows["restart"].ok = f"{replay_s:.2f} s", replay_s <= 10
        rows["restart"].notes.append(f"fleetdeck restart after kill -9 replayed a {journal / 1e6:.0f} MB journal")
        with Client(url=server.url, token=server.admin_token) as client:
            total = client.get("/tasks-summary")["total"]
            assert total >= scale.tasks, f"only {total} tasks after restart"
        server.stop()
        start = time.perf_counter()
        server.start(timeout=120)
        rows["restart_clean"].fleetdeck = f"{time.perf_counter() - start:.2f} s"
    finally:
        server.stop()


# -- MLflow ----------------------------------------------------------------------------------


def ensure_mlflow() -> Path:
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    if not mlflow.exists():
        print("installing mlflow into .bench/mlflow-venv (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(MLFLOW_VENV / "bin" / "pip"), "install", "-q", "mlflow"], check=True)
    return mlflow


class MlflowServer:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, mlflow: Path) -> MlflowServer:
        log = open(self.work / "mlflow.log", "ab")
        env = {**os.environ, "MLFLOW_TRACKING_DIR": str(self.work)}
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.work / 'mlflow.db'}",
             "--default-artifact-root", str(self.work / "mlartifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.work, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {self.work / 'mlflow.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("mlflow server did not become healthy in 180 s")

    def rss_mb(self) -> float:
        """RSS of the server and its worker processes together."""
        assert self.proc is not None
        group = subprocess.run(["pgrep", "-g", str(os.getpgid(self.proc.pid))], capture_output=True,
                               text=True).stdout.split()
        total = 0.0
        for pid in set(group) | {str(self.proc.pid)}:
            try:
                total += rss_mb(int(pid))
            except (FileNotFoundError, RuntimeError):
                pass  # a worker that exited meanwhile
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def bench_mlflow(scale: Scale, work: Path, rows: dict[str, Row]) -> None:
    mlflow = ensure_mlflow()
    server = MlflowServer(work).start(mlflow)
    api = f"{server.url}/api/2.0/mlflow"
    try:
        with httpx.Client(timeout=60) as http:
            def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
                response = http.post(f"{api}/{path}", json=body)
                response.raise_for_status()
                return response.json()

            experiment = call("experiments/create", {"name": "bench"})["experiment_id"]

            def create_run(i: int) -> str:
                run = call("runs/create", {"experiment_id": experiment, "run_name": f"run-{i:06d}",
                                           "start_time": int(time.time() * 1000), "tags": [
                                               {"key": "project", "value": PROJECTS[i % len(PROJECTS)]},
                                               {"key": "gpu", "value": "yes" if (i // len(PROJECTS)) % 5 < 2 else "no"}]})
                run_id = run["run"]["info"]["run_id"]
                call("runs/log-batch", {"run_id": run_id, "params": [
                    {"key": "lr", "value": str(random.random())}, {"key": "batch", "value": "64"}]})
                return run_id

            start = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(create_run, range(scale.mlflow_runs)))
            rows["populate"].mlflow = f"{time.perf_counter() - start:.1f} s"
            rows["populate"].notes.append(
                f"MLflow populated with {scale.mlflow_runs:,} runs (create + params, 4 threads); "
                f"MLflow has no bulk create, so {scale.tasks:,} would take too long on 2 cores")

            counter = iter(range(10**9))
            ms = p50_ms(lambda: call("runs/create", {"experiment_id": experiment, "run_name": f"p{next(counter)}",
                                                     "start_time": int(time.time() * 1000)}), 300)
            rows["create"].mlflow = f"{ms:.2f} ms"

            run_id = create_run(10**7)
            now = int(time.time() * 1000)
            per_batch = 1000  # MLflow's log-batch limit
            batches = [{"run_id": run_id, "metrics": [
                {"key": "loss", "value": 1.0 / (1 + i), "timestamp": now, "step": i}
                for i in range(b, b + per_batch)]} for b in range(0, scale.mlflow_points, per_batch)]
            start = time.perf_counter()
            for body in batches:
                call("runs/log-batch", body)
            rate = scale.mlflow_points / (time.perf_counter() - start)
            rows["ingest"].mlflow = fmt_rate(rate)
            rows["ingest"].notes.append(f"MLflow: log-batch, {per_batch} metrics per request (its limit), "
                                        f"{scale.mlflow_points:,} points")

            def history() -> None:
                response = http.get(f"{server.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                                    params={"run_ids": run_id, "metric_key": "loss", "max_results": 500})
                response.raise_for_status()

            ms = p50_ms(history, 10)
            rows["downsample"].mlflow = f"{ms:.1f} ms"
            rows["downsample"].notes.append(
                f"MLflow: get-history-bulk-interval (max_results=500) on its {scale.mlflow_points:,}-point series")

            # the same filter as fleetdeck's where the scale gives 50 matches, else the gpu tag alone
            wide = scale.mlflow_runs // len(PROJECTS) * 2 // 5 >= 50
            condition = "tags.project = 'team-07' and tags.gpu = 'yes'" if wide else "tags.gpu = 'yes'"
            search = {"experiment_ids": [experiment], "filter": condition, "max_results": 50,
                      "order_by": ["attributes.start_time DESC"]}
            found = len(call("runs/search", search).get("runs", []))
            ms = p50_ms(lambda: call("runs/search", search), 50)
            rows["list"].mlflow = f"{ms:.2f} ms"
            rows["list"].notes.append(f"MLflow search_runs: {condition} over {scale.mlflow_runs:,} runs "
                                      f"({found} rows returned)")
            ms = p50_ms(lambda: call("runs/search", {"experiment_ids": [experiment], "max_results": 50,
                                                     "filter": "attributes.run_name LIKE '%run-0001%'"}), 20)
            rows["list_name"].mlflow = f"{ms:.2f} ms"
            rows["rss"].mlflow = f"{server.rss_mb():,.0f} MB"
            rows["rss"].notes.append(f"MLflow RSS (server + workers) with {scale.mlflow_runs:,} runs")
        server.stop()
        start = time.perf_counter()
        server.start(mlflow)
        rows["restart_clean"].mlflow = f"{time.perf_counter() - start:.2f} s"
    finally:
        server.stop()


# -- report ----------------------------------------------------------------------------------


def make_rows() -> dict[str, Row]:
    return {
        "ingest": Row("ingest scalar points over HTTP (one client)", ">= 200,000/s"),
        "downsample": Row("1M-point series -> 500 points, p50", "<= 100 ms"),
        "populate": Row("populate tasks"),
        "create": Row("task create p50 (with N tasks stored)", "<= 5 ms"),
        "list": Row("filtered list, 50 rows, p50", "<= 20 ms"),
        "list_name": Row("name-substring list, 50 rows, p50"),
        "list_sorted": Row("project list sorted by name, 50 rows, p50"),
        "rss": Row("server RSS with N tasks", "<= 1 GB"),
        "restart": Row("restart after kill -9 (journal replay)", "<= 10 s"),
        "restart_clean": Row("restart after a clean stop"),
    }


def print_table(rows: dict[str, Row], scale: Scale, elapsed: float) -> None:
    headers = ("measure", "target", "fleetdeck", "MLflow", "met")
    body = [(r.what, r.target, r.fleetdeck, r.mlflow, "" if r.ok is None else ("yes" if r.ok else "NO"))
            for r in rows.values()]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print()
    print(line)
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)))
    print()
    print(f"scale: {scale.tasks:,} fleetdeck tasks, {scale.points:,}-point series; "
          f"{elapsed:.0f} s in all; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    for r in rows.values():
        for note in r.notes:
            print(f"  - {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale smoke run")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow comparison")
    parser.add_argument("--tasks", type=int, help="number of fleetdeck tasks to store")
    parser.add_argument("--mlflow-runs", type=int, help="number of MLflow runs to store (MLflow has no bulk create)")
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    if args.tasks or args.mlflow_runs:
        scale = Scale(args.tasks or scale.tasks, scale.points, scale.batch_points,
                      args.mlflow_runs or scale.mlflow_runs, scale.mlflow_points)
    rows = make_rows()
    work = Path(tempfile.mkdtemp(prefix="fleetdeck-bench-"))
    started = time.perf_counter()
    try:
        bench_fleetdeck(scale, work, rows)
        if not args.no_mlflow:
            try:
                bench_mlflow(scale, work, rows)
            except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
                rows["ingest"].notes.append(f"MLflow comparison failed: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, scale, time.perf_counter() - started)
    if any(r.ok is False for r in rows.values()):
        sys.exit(1)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
