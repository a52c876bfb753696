"""MongoDB backend: bytes per task (measured BSON), and timings where a real MongoDB is reachable.

Part 1 runs everywhere: a typical training task (50 hyperparameters, a 20 KB diff, 300 packages,
10 scalar series reported every 10 iterations in batches, console lines, plots) is written through
the real API (in-process server over mongomock) and every document the MongoDB backend stored is
encoded with ``bson.encode`` to count its bytes. BSON sizes do not depend on the server, so these
are the bytes a real MongoDB receives (before WiredTiger's compression, without index entries).
The same task is written to an embedded server for comparison.

Part 2 needs a real server (``--uri`` or ``FLEETDECK_TEST_MONGO_URI``); none can be installed on
the machines this was written on, so there it prints "not measured". With a server it times task
inserts, a filtered listing page, dequeue, event ingest and a 1M-point series read, and prints the
query plan of the listing (IXSCAN expected, no in-memory SORT).

    .venv/bin/python bench/bench_mongo.py            # 1 task x 100,000 points per series
    .venv/bin/python bench/bench_mongo.py --quick    # smaller task
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bson

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess, free_port
from fleetdeck.server_lite.runner import bind_socket, shared_state
from fleetdeck.server_lite.store.mongo import MongoStore


@contextmanager
def api(state: Any) -> Iterator[str]:
    import uvicorn

    from fleetdeck.server_lite.app import create_app

    port = free_port()
    sock = bind_socket("127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def typical_task(client: Client, points: int, console_lines: int) -> str:
    """One training run as the SDK reports it; returns the task id."""
    task = client.create_task(
        name="resnet50-lr0.1", project="vision/imagenet", tags=["baseline", "bs256"],
        hyperparams={"Args": {f"param_{i}": {"value": str(0.001 * i), "type": "float"} for i in range(50)}},
        script={"repository": "https://github.com/example/vision.git", "branch": "main",
                "commit": "0" * 40, "entry_point": "train.py", "diff": "+ changed line of code\n" * 900},
        environment={"python": "3.11.7", "os": "Linux", "packages": {f"package-{i}": "1.2.3" for i in range(300)}})
    series = [("loss", "train"), ("loss", "val"), ("acc", "train"), ("acc", "val"), ("lr", "lr")] + \
        [(":monitor:", name) for name in ("cpu", "mem", "gpu0_util", "gpu0_mem", "gpu0_power")]
    step = 10
    per_batch = 200  # the SDK sends a batch every couple of seconds: ~200 iterations' worth
    for n, start in enumerate(range(0, points * step, per_batch * step)):
        its = list(range(start, min(start + per_batch * step, points * step), step))
        client.post_events(task["id"], {
            "batch_id": f"bench-{n:08d}",
            "scalars": [{"metric": m, "variant": v, "iterations": its, "values": [1.0 / (i + 1) for i in its],
                         "timestamps": [1.7e9 + i for i in its]} for m, v in series],
            "console": [{"line": f"epoch {i // 1000} iter {i} loss {1.0 / (i + 1):.5f} lr 0.1"}
                        for i in its[: max(1, console_lines * len(its) // points)]],
            "events": [{"kind": "plot", "metric": "confusion", "iteration": its[-1],
                        "data": {"z": [[1, 2, 3]] * 10}}] if n % 50 == 0 else []})
    return str(task["id"])


def bson_sizes(store: MongoStore) -> dict[str, tuple[int, int]]:
    out = {}
    for name in sorted(store.db.list_collection_names()):
        docs = list(store.db[name].find())
        out[name] = (len(docs), sum(len(bson.encode(d)) for d in docs))
    return out


def part1(points: int, console_lines: int) -> None:
    import mongomock

    store = MongoStore("mongodb://mongomock.invalid/bench", client=mongomock.MongoClient())
    with tempfile.TemporaryDirectory() as tmp:
        state = shared_state(store, Path(tmp))
        _doc, token = state.tokens.create("bench", "admin")
        with api(state) as url, Client(url=url, token=token) as client:
            typical_task(client, points, console_lines)
        sizes = bson_sizes(store)
        with ServerProcess(Path(tmp) / "embedded", env={"XDG_CONFIG_HOME": str(Path(tmp) / "config")}) as proc:
            with Client(url=proc.url, token=proc.admin_token) as client:
                task_id = typical_task(client, points, console_lines)
        events_bytes = sum(f.stat().st_size for f in (proc.data_dir / "events" / task_id).iterdir())
    total = sum(b for _, b in sizes.values())
    print(f"\nOne task: 10 series x {points:,} points, {console_lines:,} console lines (BSON bytes, "
          "before compression and indexes)\n")
    print(f"{'collection':22} {'documents':>10} {'bytes':>12} {'bytes/doc':>10}")
    for name, (count, size) in sizes.items():
        if count:
            print(f"{name:22} {count:>10,} {size:>12,} {size // count:>10,}")
    print(f"{'total':22} {sum(c for c, _ in sizes.values()):>10,} {total:>12,}")
    scalars = sizes.get("events.scalars", (0, 0))[1]
    print(f"\nscalar bytes per point: {scalars / (10 * points):.1f} (24 of them the packed point)")
    console = sizes.get("events.console", (0, 0))[1]
    print(f"console bytes per line: {console / console_lines:.0f} (lines of ~45 characters)")
    print(f"embedded server, same task: {events_bytes:,} bytes of event files")


def part2(uri: str | None, quick: bool) -> None:
    print("\nReal MongoDB timings")
    if not uri:
        print("  not measured: no MongoDB server here (pass --uri or set FLEETDECK_TEST_MONGO_URI)")
        return
    from fleetdeck.server_lite.store.mongo_events import MongoEventStore

    name = f"fleetdeck_bench_{uuid.uuid4().hex[:8]}"
    store = MongoStore(uri, database=name)
    events = MongoEventStore(store)
    try:
        n = 2_000 if quick else 20_000
        started = time.perf_counter()
        for i in range(n):
            store.insert("tasks", {"id": uuid.uuid4().hex, "project": f"p{i % 20}", "status": "completed",
                                   "user": "bench", "tags": ["a"], "created": time.time(), "name": f"run {i}"})
        insert_s = time.perf_counter() - started
        query = {"project": "p3", "status": "completed"}
        started = time.perf_counter()
        page = store.find("tasks", query, sort=[("created", -1)], limit=50)
        list_s = time.perf_counter() - started
        from fleetdeck.server_lite.store.mongo import translate_query

        plan = store.db["tasks"].find(translate_query(query)).sort([("created", -1)]).limit(50).explain()
        winning = plan.get("queryPlanner", {}).get("winningPlan", {})
        for i in range(500):
            store.insert("queue_entries", {"id": uuid.uuid4().hex, "queue": "q", "priority": 0, "seq": i})
        started = time.perf_counter()
        while store.find_one_and_delete("queue_entries", {"queue": "q"}, sort=[("priority", -1), ("seq", 1)]):
            pass
        dequeue_s = (time.perf_counter() - started) / 500
        task = "a" * 32
        total_points = 100_000 if quick else 1_000_000
        started = time.perf_counter()
        for b, start in enumerate(range(0, total_points, 10_000)):
            its = list(range(start, start + 10_000))
            events.append(task, {"batch_id": f"b{b:06d}", "scalars": [
                {"metric": "loss", "variant": "train", "iterations": its, "values": [float(i) for i in its]}]})
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        series = events.read_series(task, "loss", "train", max_points=400)
        read_s = time.perf_counter() - started
        print(f"  insert task:              {insert_s / n * 1000:.2f} ms each ({n:,})")
        print(f"  list 50 of a project:     {list_s * 1000:.1f} ms ({len(page)} rows)  plan: {winning}")
        print(f"  dequeue:                  {dequeue_s * 1000:.2f} ms")
        print(f"  ingest {total_points:,} points:    {ingest_s:.2f} s ({total_points / ingest_s:,.0f} points/s)")
        print(f"  read + downsample series: {read_s * 1000:.0f} ms ({series['total']:,} -> {len(series['values'])})")
    finally:
        store.client.drop_database(name)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small task and few samples")
    parser.add_argument("--uri", default=os.environ.get("FLEETDECK_TEST_MONGO_URI"),
                        help="a MongoDB to time against (its own database is created and dropped)")
    args = parser.parse_args()
    part1(points=5_000 if args.quick else 100_000, console_lines=1_000 if args.quick else 20_000)
    part2(args.uri, args.quick)


if __name__ == "__main__":
    main()
