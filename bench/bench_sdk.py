"""Benchmark the SDK against ClearML (offline), MLflow (sqlite) and W&B (offline), side by side.

    .venv/bin/python bench/bench_sdk.py            # full run (1M points, 7 start-ups each)
    .venv/bin/python bench/bench_sdk.py --quick    # smoke run (100k points, 3 start-ups)
    .venv/bin/python bench/bench_sdk.py --peers none

Every measurement runs a real script in a fresh interpreter. Peers live in their own venvs under
``.bench/<peer>`` (created and filled with ``pip install <peer>`` on first use; a peer that fails to
install is reported as skipped). fleetdeck reports to a real embedded server started on loopback.

Measured:

- start-up: wall time of ``import`` + start a run + end it on an otherwise empty script, minus the
  same interpreter running ``pass`` (median of repeated runs). fleetdeck's helper process keeps
  uploading after the script exits; the script's own run time is what a user waits for.
- ``report_scalar`` (or the peer's equivalent) calls per second on the calling thread.
- for fleetdeck, the time from the first of 1M ``report_scalar`` calls until the server lists all
  1M points (the peers run offline, so they have no such number).
- peak RSS growth of the process while logging those points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
PEERS = {"clearml": "clearml", "mlflow": "mlflow", "wandb": "wandb"}

RSS = """
import os, resource
def current_rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
"""

STARTUP = {
    "bare": "pass\n",
    "fleetdeck": "from fleetdeck import Task\ntask = Task.init(project_name='bench', task_name='startup')\ntask.close()\n",
    "clearml": "from clearml import Task\nTask.set_offline(True)\n"
               "task = Task.init(project_name='bench', task_name='startup')\ntask.close()\n",
    "mlflow": "import os, mlflow\nmlflow.set_tracking_uri('sqlite:///' + os.environ['BENCH_TMP'] + '/mlflow.db')\n"
              "with mlflow.start_run():\n    pass\n",
    "wandb": "import os, wandb\nrun = wandb.init(mode='offline', project='bench', dir=os.environ['BENCH_TMP'])\nrun.finish()\n",
}

SCALARS = {
    "fleetdeck": """
import json, os, time
from fleetdeck import Task
task = Task.init(project_name="bench", task_name="scalars")
report = task.get_logger().report_scalar
N = int(os.environ["N"])
before = current_rss(); t_start = time.time(); t0 = time.perf_counter(); c0 = time.thread_time()
for i in range(N):
    report("loss", "train", 0.5, i)
elapsed = time.perf_counter() - t0; cpu = time.thread_time() - c0
task.flush()
print(json.dumps({"rate": N / elapsed, "cpu_rate": N / cpu, "t_start": t_start, "rss_mb": (peak_rss() - before) / 2**20,
                  "task_id": task.id}))
""",
    "clearml": """
import json, os, time
from clearml import Task
Task.set_offline(True)
task = Task.init(project_name="bench", task_name="scalars")
report = task.get_logger().report_scalar
N = int(os.environ["N"])
before = current_rss(); t0 = time.perf_counter(); c0 = time.thread_time()
for i in range(N):
    report("loss", "train", 0.5, i)
elapsed = time.perf_counter() - t0; cpu = time.thread_time() - c0
print(json.dumps({"rate": N / elapsed, "cpu_rate": N / cpu, "rss_mb": (peak_rss() - before) / 2**20}))
task.close()
""",
    "mlflow": """
import json, os, time, mlflow
mlflow.set_tracking_uri("sqlite:///" + os.environ["BENCH_TMP"] + "/mlflow.db")
N = int(os.environ["N"])
with mlflow.start_run():
    before = current_rss(); t0 = time.perf_counter(); c0 = time.thread_time()
    for i in range(N):
        mlflow.log_metric("loss", 0.5, step=i)
    elapsed = time.perf_counter() - t0; cpu = time.thread_time() - c0
print(json.dumps({"rate": N / elapsed, "cpu_rate": N / cpu, "rss_mb": (peak_rss() - before) / 2**20}))
""",
    "wandb": """
import json, os, time, wandb
run = wandb.init(mode="offline", project="bench", dir=os.environ["BENCH_TMP"])
N = int(os.environ["N"])
before = current_rss(); t0 = time.perf_counter(); c0 = time.thread_time()
for i in range(N):
    run.log({"loss": 0.5}, step=i)
elapsed = time.perf_counter() - t0; cpu = time.thread_time() - c0
print(json.dumps({"rate": N / elapsed, "cpu_rate": N / cpu, "rss_mb": (peak_rss() - before) / 2**20}))
run.finish()
""",
}


def peer_python(name: str) -> tuple[str | None, str]:
    """The interpreter of a peer's venv, created on first use; (None, reason) when it cannot be had."""
    venv = BENCH_DIR / name
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", f"import {name}"], capture_output=True).returncode == 0:
        return str(python), _version(str(python), name)
    BENCH_DIR.mkdir(exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEERS[name]], check=True,
                       capture_output=True, text=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [type(exc).__name__]
        return None, f"install failed: {tail[0][:80]}"
    return str(python), _version(str(python), name)


def _version(python: str, module: str) -> str:
    out = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({module!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def run_script(python: str, source: str, env: dict[str, str], timeout: float = 600) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        script = Path(tmp) / "script.py"
        script.write_text(source)
        started = time.perf_counter()
        out = subprocess.run([python, str(script)], env={**env, "BENCH_TMP": tmp}, cwd=tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=timeout)
        elapsed = time.perf_counter() - started
        if out.returncode != 0:
            raise RuntimeError(f"script failed with exit code {out.returncode}")
        return elapsed, out.stdout


def wait_helpers_done(spool: Path, timeout: float = 30.0) -> None:
    """Let the previous run's helper finish, so it does not steal CPU from the next measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and spool.exists() and any(spool.iterdir()):
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and repetitions (smoke run)")
    parser.add_argument("--peers", default="clearml,mlflow,wandb", help="comma-separated peers, or 'none'")
    parser.add_argument("--points", type=int, help="scalar points for fleetdeck (default 1,000,000)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    points = args.points or (100_000 if args.quick else 1_000_000)
    # peers log fewer points: ClearML offline runs ~900 calls/s, mlflow.log_metric ~100/s here
    peer_points = {"clearml": 5_000, "wandb": 20_000, "mlflow": 1_000}
    if args.quick:
        peer_points = {name: n // 10 for name, n in peer_points.items()}
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]

    from fleetdeck.client import Client
    from fleetdeck.server_lite.process import ServerProcess

    work = Path(tempfile.mkdtemp(prefix="bench-sdk-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETDECK_", "WANDB_", "CLEARML_"))}
    base_env.update({"HOME": str(work / "home"), "XDG_CONFIG_HOME": str(work / "config"),
                     "XDG_DATA_HOME": str(work / "data"), "XDG_CACHE_HOME": str(work / "cache"),
                     "WANDB_SILENT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                     "GIT_PYTHON_REFRESH": "quiet"})
    (work / "home").mkdir()
    server = ServerProcess(work / "server", env=base_env).start()
    spool = work / "spool"
    fd_env = {**base_env, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
              "FLEETDECK_SPOOL_DIR": str(spool)}
    columns: dict[str, dict[str, str]] = {}
    try:
        bare = [run_script(sys.executable, STARTUP["bare"], base_env)[0] for _ in range(repeats)]
        bare_median = statistics.median(bare)

        progress("fleetdeck: start-up")
        times = []
        for _ in range(repeats):
            times.append(run_script(sys.executable, STARTUP["fleetdeck"], fd_env)[0])
            wait_helpers_done(spool)
        progress(f"fleetdeck: {points:,} scalars")
        result = _json_line(run_script(sys.executable, RSS + SCALARS["fleetdeck"], {**fd_env, "N": str(points)})[1])
        with Client(url=server.url, token=server.admin_token) as client:
            visible = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                series = [s for s in client.list_series(result["task_id"]) if s["metric"] == "loss"]
                if series and series[0]["count"] >= points:
                    visible = time.time() - result["t_start"]
                    break
                time.sleep(0.05)
        from fleetdeck._version import __version__

        columns[f"fleetdeck {__version__}"] = _column(times, bare_median, result, points,
                                                      f"{visible:.2f}" if visible else "not within 120 s")

        for name in peers:
            progress(f"{name}: venv, start-up, scalars")
            python, version = peer_python(name)
            if python is None:
                columns[name] = {"skip": f"skipped ({version})"}
                continue
            times = [run_script(python, STARTUP[name], base_env)[0] for _ in range(repeats)]
            try:
                result = _json_line(run_script(python, RSS + SCALARS[name], {**base_env, "N": str(peer_points[name])})[1])
            except (RuntimeError, ValueError, IndexError) as exc:
                result = {"rate": float("nan"), "cpu_rate": float("nan"), "rss_mb": float("nan"), "error": str(exc)}
            columns[f"{name} {version}"] = _column(times, bare_median, result, peer_points[name], "n/a (offline)")
    finally:
        server.stop()

    rows = [("start-up: import + start + end a run (s, median)", "startup"),
            ("  overhead over a bare script (ms)", "overhead"),
            ("report_scalar on the calling thread (calls/s)", "rate"),
            ("  per CPU-second of that thread (load-independent)", "cpu_rate"),
            ("  points logged", "points"),
            ("points visible on the server (s)", "visible"),
            ("peak RSS growth while logging (MB)", "rss")]
    print(f"\nbare `python -c pass`: {bare_median * 1000:.0f} ms (median of {repeats}); machine: {os.cpu_count()} cores")
    names = list(columns)
    widths = [max(44, *(len(r[0]) for r in rows))] + [max(18, len(n)) for n in names]
    print("| " + " | ".join(["measure".ljust(widths[0]), *(n.ljust(w) for n, w in zip(names, widths[1:]))]) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for label, key in rows:
        cells = [columns[n].get("skip", "") if "skip" in columns[n] else columns[n].get(key, "") for n in names]
        print("| " + " | ".join([label.ljust(widths[0]), *(c.ljust(w) for c, w in zip(cells, widths[1:]))]) + " |")
    return 0


def _json_line(stdout: str) -> dict[str, Any]:
    """The result line among whatever else a peer prints on stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("the script printed no result line")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _column(times: list[float], bare: float, result: dict[str, Any], points: int, visible: str) -> dict[str, str]:
    median = statistics.median(times)
    return {"startup": f"{median:.3f}", "overhead": f"{(median - bare) * 1000:.0f}",
            "rate": f"{result['rate']:,.0f}", "cpu_rate": f"{result.get('cpu_rate', float('nan')):,.0f}",
            "points": f"{points:,}", "visible": visible,
            "rss": f"{result['rss_mb']:.1f}"}


if __name__ == "__main__":
    sys.exit(main())
