"""Write tasks straight into an embedded store's data dir, before a real server opens it.

Used where the data must be large (100,000 tasks for the benchmark) or byte-for-byte the same on
every run (SVG snapshots: fixed ids and timestamps). The server that then serves the data dir is
a real ``fleetdeck server`` process; only the writing skips HTTP. Tasks are written in journal
batches of a few thousand records (one fsync each) through the store's own commit path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetdeck.server_lite.events import FileEventStore
from fleetdeck.server_lite.routes.projects import project_id_for
from fleetdeck.server_lite.store.embedded import EmbeddedStore
from fleetdeck.server_lite.tasks import metric_key

FIXED_NOW = 1_790_000_000.0
"""The frozen "now" of seeded data (2026-09-21); snapshot apps use it as their clock."""
STATUSES = ("completed", "completed", "completed", "failed", "in_progress", "aborted", "queued", "created")


def task_id(i: int) -> str:
    return f"{i:032x}"


def make_task(i: int, project: str, now: float = FIXED_NOW, name: str | None = None) -> dict[str, Any]:
    status = STATUSES[i % len(STATUSES)]
    created = now - 60.0 * (i + 1)
    started = created + 5 if status not in ("created", "queued") else None
    ended = started + 600 + 37 * (i % 11) if started and status != "in_progress" else None
    loss = 2.0 * math.exp(-(i % 17) / 6) + 0.05
    return {
        "id": task_id(i), "name": name or f"resnet-{i:06d}-lr{[0.1, 0.03, 0.01, 0.003][i % 4]}",
        "project": project_id_for(project), "project_name": project, "type": "training",
        "status": status, "status_reason": "CUDA out of memory" if status == "failed" else "",
        "tags": ["sweep"] if i % 3 == 0 else [], "user": ["ana", "bo", "chen"][i % 3], "comment": "",
        "parent": None, "hyperparams": {"Args": {"lr": {"value": [0.1, 0.03, 0.01, 0.003][i % 4], "type": "float"},
                                                 "epochs": {"value": 20, "type": "int"}}},
        "configuration": {}, "runtime": {}, "attempt": 0, "created": created, "started": started, "ended": ended,
        "last_update": ended or started or created, "queue": "default" if status != "created" else None,
        "metrics": {metric_key("loss", "train"): {"metric": "loss", "variant": "train", "last": loss,
                                                  "min": loss, "max": 2.3, "iteration": 99, "count": 100}},
    }


def seed_tasks(data_dir: Path, count: int, project: str = "vision", batch: int = 5000,
               now: float = FIXED_NOW, names: dict[int, str] | None = None) -> list[str]:
    """Write ``count`` tasks (ids ``task_id(0..count-1)``, newest first) into ``data_dir``.

    Returns:
        the ids written.
    """
    store = EmbeddedStore(Path(data_dir) / "docs", compact_bytes=1 << 40)
    try:
        store.upsert("projects", {"id": project_id_for(project), "name": project, "description": "",
                                  "created": now - 86400})
        ids = []
        for chunk in _chunks(range(count), batch):
            records = []
            for i in chunk:
                task = make_task(i, project, now, (names or {}).get(i))
                ids.append(task["id"])
                records.append({"o": "p", "c": "tasks", "d": task})
            store._commit(records)  # one journal append + fsync per batch, the store's own write path
    finally:
        store.close()
    return ids


def seed_events(data_dir: Path, task: str, batch: dict[str, Any]) -> None:
    """Append one event batch to a task's event files (before the server opens the data dir)."""
    events = FileEventStore(Path(data_dir) / "events")
    try:
        events.append(task, batch)
    finally:
        events.close()


def _chunks(values: range, size: int) -> Iterator[range]:
    for start in range(0, len(values), size):
        yield values[start:start + size]
