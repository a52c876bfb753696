"""Cost and waste reports: what each task, project, user, host and queue cost, and what was wasted.

Cost of a task = GPU-hours held x price per GPU-hour, where GPU-hours = the task's run time
(``started`` to ``ended``, or to now while it runs, clipped to the report period) x the number of
GPUs assigned to it (``runtime.gpus``, else ``environment.gpus``). A task on a CPU-only host costs
its run time x the host's hourly price. Prices come from :mod:`fleetdeck.server_lite.pricing`.

Waste (see :mod:`fleetdeck.server_lite.waste`) is computed from the tasks' own resource samples
(held but idle), from recorded orphan episodes, and from the fleet inventory (idle capacity).
A finished task's waste never changes, so it is computed once from its samples and stored in
``task_waste`` (and kept in memory); a running task is re-read when its ``last_update`` moves.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fleetdeck.server_lite.events import RESOURCE_TITLE, EventStore
from fleetdeck.server_lite.pricing import Price, PriceBook, WastePolicy
from fleetdeck.server_lite.routes.fleet import HOSTS as FLEET_HOSTS
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.tasks import TASKS, new_id
from fleetdeck.server_lite.waste import (
    HELD_IDLE, IDLE_CAPACITY, KINDS, ORPHANED, GpuObservation, Span, classify_observation, held_idle_spans,
    uncovered_hours,
)

log = logging.getLogger("fleetdeck.server")

GROUPINGS = ("project", "user", "host", "queue", "task")
GPU_WASTE = "gpu_waste"
"""Collection of recorded host-side waste episodes (orphaned GPU memory)."""
TASK_WASTE = "task_waste"
"""Collection of finished tasks' held-idle spans, computed once from their samples."""
TASK_FIELDS = ("id", "name", "project_name", "user", "status", "queue", "started", "ended", "last_update",
               "runtime", "environment")
UTIL_VARIANT = re.compile(r"^gpu\.(\d+)\.util$")
TOP_WASTERS = 10
IDLE_KEY = "(idle capacity)"
"""Row key for idle fleet capacity when the report is not grouped by host."""


class BadReportQuery(ValueError):
    """A report parameter the server cannot use; the message names it."""


# -- the per-task view -----------------------------------------------------------------------

@dataclass
class TaskCost:
    """One task's share of the report."""

    task: dict[str, Any]
    start: float
    end: float
    host: str
    gpu_indices: list[int]
    price_per_gpu_hour: float
    price_source: str
    gpu_hours: float
    cost: float
    waste: list[Span] = field(default_factory=list)


def _gpu_indices(task: Mapping[str, Any]) -> list[int]:
    runtime = task.get("runtime") or {}
    assigned = runtime.get("gpus")
    if isinstance(assigned, list):
        if all(type(i) is int for i in assigned):
            return assigned
        return [int(i) for i in assigned if isinstance(i, (int, float)) or str(i).isdigit()]
    env_gpus = (task.get("environment") or {}).get("gpus") or []
    return [int(g.get("index", n)) if isinstance(g, dict) else n for n, g in enumerate(env_gpus)]


def _gpu_model(task: Mapping[str, Any]) -> tuple[str | None, float | None]:
    env_gpus = (task.get("environment") or {}).get("gpus") or []
    for gpu in env_gpus:
        if isinstance(gpu, dict) and gpu.get("name"):
            memory = gpu.get("memory_total_mib")
            return str(gpu["name"]), float(memory) if isinstance(memory, (int, float)) else None
    return None, None


def _day(ts: float) -> str:
    return _day_name(int(ts // 86400))


@functools.lru_cache(maxsize=4096)
def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime("%Y-%m-%d")


def split_by_day(start: float, end: float) -> Iterable[tuple[str, float]]:
    """``(UTC day, fraction of the interval)`` pieces of ``[start, end]``."""
    if end <= start:
        return
    total = end - start
    cursor = start
    while cursor < end:
        next_midnight = (int(cursor // 86400) + 1) * 86400.0
        piece_end = min(end, next_midnight)
        yield _day(cursor), (piece_end - cursor) / total
        cursor = piece_end


# -- held-but-idle spans from the monitor's samples ------------------------------------------
#
# A finished task's spans never change (unless late samples arrive, which moves its last_update),
# so they are computed once from its samples and stored in TASK_WASTE; a report then reads one
# small document per task instead of every task's sample files. Running tasks are recomputed
# whenever their last_update moved, and kept in memory only.

class _SpanCache:
    """Held-idle spans per task in memory, valid while the task's summary key stays the same."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[list[Any], list[Span]]] = {}
        self.lock = threading.Lock()

    def get(self, task_id: str, key: list[Any]) -> list[Span] | None:
        with self.lock:
            hit = self.spans.get(task_id)
        return hit[1] if hit is not None and hit[0] == key else None

    def put(self, task_id: str, key: list[Any], spans: list[Span]) -> None:
        with self.lock:
            self.spans[task_id] = (key, spans)


_CACHES: weakref.WeakKeyDictionary[EventStore, _SpanCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _span_cache(events: EventStore) -> _SpanCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(events)
        if cache is None:
            cache = _CACHES[events] = _SpanCache()
        return cache


def _series(events: EventStore, task_id: str, variant: str) -> tuple[np.ndarray, np.ndarray] | None:
    points = events.read_points(task_id, RESOURCE_TITLE, variant)
    if not len(points):
        return None
    return points["time"], points["value"]


def _summary_key(task: Mapping[str, Any], policy: WastePolicy) -> list[Any]:
    """What a stored summary depends on (JSON-safe, so it compares equal after a round trip)."""
    return [task.get("last_update"), task.get("ended"), policy.util_threshold_percent, policy.window_s]


def compute_held_idle(events: EventStore, task: Mapping[str, Any], policy: WastePolicy) -> list[Span]:
    """Held-but-idle spans of one task from its ``:monitor:/gpu.{i}.util`` samples (all its GPUs)."""
    task_id = task["id"]
    spans: list[Span] = []
    cpu: tuple[np.ndarray, np.ndarray] | None = None
    cpu_read = False
    for summary in events.list_series(task_id):
        match = UTIL_VARIANT.match(summary.variant) if summary.metric == RESOURCE_TITLE else None
        if match is None:
            continue
        gpu = int(match.group(1))
        util = _series(events, task_id, summary.variant)
        if util is None or not (np.nan_to_num(util[1], nan=np.inf) < policy.util_threshold_percent).any():
            continue
        if not cpu_read:
            cpu, cpu_read = _series(events, task_id, "cpu.percent"), True
        mem = _series(events, task_id, f"gpu.{gpu}.mem_used_mib")
        found = held_idle_spans(util[0], util[1], policy, gpu=gpu, cpu=cpu, mem_used_mib=mem)
        spans.extend(Span(s.kind, s.start, s.end, s.gpu_hours, gpu=s.gpu, mean_util=s.mean_util,
                          reason=s.reason, task_id=task_id) for s in found)
    return spans


def held_idle_by_task(state: ServerState, tasks: list[Mapping[str, Any]], policy: WastePolicy) -> dict[str, list[Span]]:
    """Held-idle spans of each task: from memory, else a finished task's stored summary, else its samples."""
    cache = _span_cache(state.events)
    out: dict[str, list[Span]] = {}
    for task in tasks:
        task_id = task["id"]
        key = _summary_key(task, policy)
        spans = cache.get(task_id, key)
        if spans is None and task.get("ended") is not None:
            doc = state.store.get(TASK_WASTE, task_id)
            if doc is not None and doc.get("key") == key:
                spans = [Span(**span) for span in doc["spans"]]
            else:
                spans = compute_held_idle(state.events, task, policy)
                state.store.upsert(TASK_WASTE, {"id": task_id, "key": key, "spans": [s.as_dict() for s in spans]})
        elif spans is None:
            spans = compute_held_idle(state.events, task, policy)
        cache.put(task_id, key, spans)
        out[task_id] = spans
    return out


def summarise_finished_task(state: ServerState, task_id: str, policy: WastePolicy) -> None:
    """Store a task's held-idle summary when it finishes, so no report has to read its samples.

    Runs after the status change is acknowledged (a background task of the status route); a
    failure is logged and costs nothing but speed: the next report computes the summary instead.
    """
    task = state.store.get(TASKS, task_id)
    if task is None or task.get("ended") is None:
        return
    try:
        held_idle_by_task(state, [task], policy)
    except Exception:  # noqa: BLE001 - never fail a status change over a cache
        log.exception("could not summarise the GPU waste of finished task %s", task_id)


# -- inventory and recorded episodes ---------------------------------------------------------

@dataclass(frozen=True)
class FleetHost:
    """What the report needs of one fleet host."""

    name: str
    gpu_count: int
    gpu_model: str | None
    price_per_gpu_hour: float | None
    price_per_hour: float | None
    """For CPU-only hosts: what an hour of the host costs."""
    added: float | None


def fleet_hosts(state: ServerState) -> list[FleetHost]:
    """The fleet inventory as the report needs it; tolerant of the ways a host may list its GPUs."""
    hosts = []
    for doc in state.store.find(FLEET_HOSTS):
        gpus = doc.get("gpus")
        model = doc.get("gpu_model")
        if isinstance(gpus, dict):
            count, model = int(gpus.get("count") or 0), gpus.get("model") or model
        elif isinstance(gpus, list):
            count = len(gpus)
            model = model or next((g.get("name") for g in gpus if isinstance(g, dict) and g.get("name")), None)
        else:
            count = int(gpus or 0)
        gpu_price, host_price = doc.get("price_per_gpu_hour"), doc.get("price_per_hour")
        hosts.append(FleetHost(name=str(doc.get("name") or doc["id"]), gpu_count=count, gpu_model=model,
                               price_per_gpu_hour=float(gpu_price) if isinstance(gpu_price, (int, float)) else None,
                               price_per_hour=float(host_price) if isinstance(host_price, (int, float)) else None,
                               added=doc.get("created") or doc.get("added")))
    return hosts


def recorded_spans(state: ServerState, since: float, until: float) -> list[Span]:
    """Orphan episodes recorded from host observations that overlap the period."""
    docs = state.store.find(GPU_WASTE, {"end": {"$gte": since}, "start": {"$lt": until}})
    return [Span(d["kind"], d["start"], d["end"], d["gpu_hours"], gpu=d.get("gpu"), reason=d.get("reason", ""),
                 task_id=d.get("task_id"), host=d.get("host")) for d in docs]


# -- the report ------------------------------------------------------------------------------

def _clip(span: Span, since: float, until: float) -> tuple[float, float, float] | None:
    """``(start, end, gpu_hours)`` of the span's part inside the period, hours prorated."""
    start, end = max(span.start, since), min(span.end, until)
    if end <= start:
        return None
    length = span.end - span.start
    return start, end, span.gpu_hours * ((end - start) / length if length > 0 else 1.0)


class _Totals:
    __slots__ = ("tasks", "gpu_hours", "cost", "waste_hours", "waste_cost")

    def __init__(self) -> None:
        self.tasks = 0
        self.gpu_hours = 0.0
        self.cost = 0.0
        self.waste_hours = dict.fromkeys(KINDS, 0.0)
        self.waste_cost = dict.fromkeys(KINDS, 0.0)

    def add_waste(self, kind: str, hours: float, price: float) -> None:
        self.waste_hours[kind] += hours
        self.waste_cost[kind] += hours * price

    def as_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "gpu_hours": self.gpu_hours, "cost": self.cost,
                "waste_gpu_hours": sum(self.waste_hours.values()), "waste_cost": sum(self.waste_cost.values()),
                "waste": {k: {"gpu_hours": self.waste_hours[k], "cost": self.waste_cost[k]} for k in KINDS}}


def _row_key(cost: TaskCost, by: str) -> str:
    task = cost.task
    if by == "project":
        return str(task.get("project_name") or "")
    if by == "user":
        return str(task.get("user") or "")
    if by == "host":
        return cost.host
    if by == "queue":
        return str(task.get("queue") or "")
    return str(task["id"])


def task_costs(state: ServerState, book: PriceBook, since: float, until: float,
               hosts: Mapping[str, FleetHost] | None = None, now: float | None = None) -> list[TaskCost]:
    """Every task that ran inside ``[since, until)``, priced, with its held-idle waste clipped to the period."""
    now = time.time() if now is None else now
    hosts = hosts or {}
    query = {"started": {"$lt": until}, "$or": [{"ended": None}, {"ended": {"$gt": since}}]}
    out = []
    prices: dict[tuple[Any, ...], Price] = {}
    for task in state.store.find(TASKS, query, fields=TASK_FIELDS):
        start = max(float(task["started"]), since)
        end = min(float(task.get("ended") or now), until)
        if end <= start:
            continue
        indices = _gpu_indices(task)
        gpu_name, memory = _gpu_model(task)
        runtime = task.get("runtime") or {}
        host_name = str(runtime.get("host") or (task.get("environment") or {}).get("host") or "")
        inventory = hosts.get(host_name)
        price_key = (host_name, task.get("queue"), gpu_name, memory)
        price = prices.get(price_key)
        if price is None:
            price = prices[price_key] = book.price(
                host=host_name or None, queue=task.get("queue"),
                gpu_name=gpu_name or (inventory.gpu_model if inventory else None), memory_total_mib=memory,
                inventory_price=inventory.price_per_gpu_hour if inventory else None,
                inventory_host_hour=inventory.price_per_hour if inventory else None)
        hours = (end - start) / 3600.0
        gpu_hours = len(indices) * hours
        cost = gpu_hours * price.per_gpu_hour if indices else hours * price.per_host_hour
        out.append(TaskCost(task, start, end, host_name, indices, price.per_gpu_hour, price.source, gpu_hours, cost))
    spans = held_idle_by_task(state, [entry.task for entry in out if entry.gpu_indices], book.waste)
    for entry in out:
        entry.waste = spans.get(entry.task["id"], [])
    return out


def cost_report(state: ServerState, book: PriceBook, *, by: str = "project", since: float, until: float | None = None,
                now: float | None = None, top: int = TOP_WASTERS) -> dict[str, Any]:
    """The cost and waste report for ``[since, until)`` grouped by ``by``.

    Raises:
        BadReportQuery: ``by`` is not a known grouping or the period is empty.
    """
    if by not in GROUPINGS:
        raise BadReportQuery(f"by must be one of {', '.join(GROUPINGS)}")
    if not all(math.isfinite(v) for v in (since, until or 0.0)):
        raise BadReportQuery("since and until must be finite unix times")
    started_at = time.perf_counter()
    now = time.time() if now is None else now
    until = now if until is None else min(until, now)
    since = max(since, 0.0)  # nothing ran before 1970; keeps per-day splits of open windows finite
    if until <= since:
        raise BadReportQuery("the report period is empty: since must be before until (and before now)")
    hosts = {h.name: h for h in fleet_hosts(state)}
    costs = task_costs(state, book, since, until, hosts, now)
    rows: dict[str, _Totals] = defaultdict(_Totals)
    labels: dict[str, dict[str, Any]] = {}
    totals = _Totals()
    days: dict[str, dict[str, float]] = defaultdict(lambda: {"gpu_hours": 0.0, "cost": 0.0, "waste_cost": 0.0})
    by_task: dict[str, TaskCost] = {}
    wasters: list[dict[str, Any]] = []
    for entry in costs:
        key = _row_key(entry, by)
        by_task[entry.task["id"]] = entry
        for bucket in (rows[key], totals):
            bucket.tasks += 1
            bucket.gpu_hours += entry.gpu_hours
            bucket.cost += entry.cost
        if by == "task":
            labels[key] = {"name": entry.task.get("name"), "project": entry.task.get("project_name"),
                           "status": entry.task.get("status")}
        for day, share in split_by_day(entry.start, entry.end):
            days[day]["gpu_hours"] += entry.gpu_hours * share
            days[day]["cost"] += entry.cost * share
        task_waste = 0.0
        worst: tuple[float, str] = (0.0, "")
        for span in entry.waste:
            clipped = _clip(span, entry.start, entry.end)
            if clipped is None:
                continue
            hours = min(clipped[2], entry.gpu_hours - task_waste)
            if hours <= 0:
                continue
            task_waste += hours
            worst = max(worst, (hours, span.reason))
            for bucket in (rows[key], totals):
                bucket.add_waste(HELD_IDLE, hours, entry.price_per_gpu_hour)
            _add_day_waste(days, clipped[0], clipped[1], hours * entry.price_per_gpu_hour)
        if task_waste > 0:
            wasters.append({"task_id": entry.task["id"], "name": entry.task.get("name"),
                            "project": entry.task.get("project_name"), "user": entry.task.get("user"),
                            "status": entry.task.get("status"), "host": entry.host, "kind": HELD_IDLE,
                            "waste_gpu_hours": task_waste, "waste_cost": task_waste * entry.price_per_gpu_hour,
                            "reason": worst[1]})
    orphans = recorded_spans(state, since, until)
    for span in orphans:
        clipped = _clip(span, since, until)
        if clipped is None:
            continue
        owner = by_task.get(span.task_id or "")
        host = hosts.get(span.host or "")
        price = (owner.price_per_gpu_hour if owner else
                 book.price(host=span.host, gpu_name=host.gpu_model if host else None,
                            inventory_price=host.price_per_gpu_hour if host else None).per_gpu_hour)
        key = _row_key(owner, by) if owner else (span.host or "" if by == "host" else IDLE_KEY)
        for bucket in (rows[key], totals):
            bucket.add_waste(ORPHANED, clipped[2], price)
        _add_day_waste(days, clipped[0], clipped[1], clipped[2] * price)
        wasters.append({"task_id": span.task_id, "name": owner.task.get("name") if owner else None,
                        "project": owner.task.get("project_name") if owner else None,
                        "user": owner.task.get("user") if owner else None,
                        "status": owner.task.get("status") if owner else None, "host": span.host,
                        "kind": ORPHANED, "waste_gpu_hours": clipped[2], "waste_cost": clipped[2] * price,
                        "reason": span.reason})
    _idle_capacity(book, hosts, costs, orphans, since, until, by, rows, totals, days)
    wasters.sort(key=lambda w: w["waste_cost"], reverse=True)
    items = [{"key": key, **labels.get(key, {}), **bucket.as_dict()} for key, bucket in rows.items()]
    items.sort(key=lambda r: (r["cost"] + r["waste_cost"]), reverse=True)
    return {"by": by, "since": since, "until": until, "currency": book.currency, "pricing_as_of": book.as_of,
            "rows": items, "totals": totals.as_dict(),
            "days": [{"day": d, **days[d]} for d in sorted(days)],
            "top_wasters": wasters[:top],
            "stats": {"tasks": len(costs), "seconds": time.perf_counter() - started_at}}


def _add_day_waste(days: dict[str, dict[str, float]], start: float, end: float, cost: float) -> None:
    for day, share in split_by_day(start, end):
        days[day]["waste_cost"] += cost * share


def _idle_capacity(book: PriceBook, hosts: Mapping[str, FleetHost], costs: list[TaskCost], orphans: list[Span],
                   since: float, until: float, by: str, rows: dict[str, _Totals], totals: _Totals,
                   days: dict[str, dict[str, float]]) -> None:
    """Fleet GPU-hours no task held and no orphan blocked, per host GPU."""
    held: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for entry in costs:
        for index in entry.gpu_indices:
            held[(entry.host, index)].append((entry.start, entry.end))
    for span in orphans:
        if span.host is not None and span.gpu is not None:
            held[(span.host, span.gpu)].append((span.start, span.end))
    for host in hosts.values():
        if host.gpu_count <= 0:
            continue
        window = (max(since, float(host.added)) if host.added else since, until)
        price = book.price(host=host.name, gpu_name=host.gpu_model,
                           inventory_price=host.price_per_gpu_hour).per_gpu_hour
        idle = sum(uncovered_hours(window, held.get((host.name, i), ())) for i in range(host.gpu_count))
        if idle <= 0:
            continue
        key = host.name if by == "host" else IDLE_KEY
        for bucket in (rows[key], totals):
            bucket.add_waste(IDLE_CAPACITY, idle, price)
        _add_day_waste(days, window[0], window[1], idle * price)


def running_flags(state: ServerState, book: PriceBook) -> list[dict[str, Any]]:
    """Running tasks whose GPU is held but idle right now: their newest sample ends a held-idle span."""
    flags = []
    running = state.store.find(TASKS, {"status": "in_progress"}, fields=TASK_FIELDS)
    by_task = held_idle_by_task(state, running, book.waste)
    for task in running:
        spans = by_task.get(task["id"])
        if not spans:
            continue
        latest = max(spans, key=lambda s: s.end)
        util = _series(state.events, task["id"], f"gpu.{latest.gpu}.util")
        if util is None or latest.end < float(util[0][-1]):
            continue  # the GPU got busy again after the span
        flags.append({"task_id": task["id"], "name": task.get("name"), "project": task.get("project_name"),
                      "host": (task.get("runtime") or {}).get("host"), "gpu": latest.gpu, "kind": HELD_IDLE,
                      "since": latest.start, "mean_util": latest.mean_util, "reason": latest.reason})
    return flags


def orphan_flags(state: ServerState, book: PriceBook, reports: Iterable[Mapping[str, Any]],
                 now: float | None = None) -> list[dict[str, Any]]:
    """GPUs whose memory is held by processes while no running task owns them, from worker heartbeats.

    A worker heartbeat or a host supervisor's status reports the host's GPUs in ``stats.gpus`` as
    ``[{index, util, mem_used_mib, procs: [{pid, used_mib}]}]``; a report older than its
    ``ttl_s`` (or three ``interval_s``) is stale and ignored. Each finding is also recorded as an
    orphan episode (extended while it lasts), so the cost report can charge the orphaned GPU-hours.
    """
    now = time.time() if now is None else now
    running = state.store.find(TASKS, {"status": "in_progress"}, fields=("id", "runtime", "environment"))
    owned = {(str((t.get("runtime") or {}).get("host") or ""), i) for t in running for i in _gpu_indices(t)}
    flags = []
    seen: set[tuple[str, int]] = set()
    for worker in reports:
        host = str(worker.get("host") or "")
        gpus = (worker.get("stats") or {}).get("gpus")
        fresh_s = float(worker.get("ttl_s") or 3 * float(worker.get("interval_s") or 20.0))
        if not host or not isinstance(gpus, list) or float(worker.get("last_seen") or now) < now - fresh_s:
            continue
        for gpu in gpus:
            if not isinstance(gpu, dict) or not isinstance(gpu.get("index"), int):
                continue
            index = gpu["index"]
            if (host, index) in seen:
                continue  # a worker and the host's supervisor may both report the same GPU
            seen.add((host, index))
            procs = gpu.get("procs")
            obs = GpuObservation(now, float(gpu.get("util") or 0.0), float(gpu.get("mem_used_mib") or 0.0),
                                 None if not isinstance(procs, list) else tuple(
                                     (int(p.get("pid", 0)), float(p.get("used_mib") or 0.0))
                                     for p in procs if isinstance(p, dict)))
            if classify_observation(obs, (host, index) in owned, book.waste) != ORPHANED:
                continue
            last = _last_task_on(state, host, index)
            episode = _record_orphan(state, host, index, last, obs, now, fresh_s)
            flags.append({"task_id": last, "host": host, "gpu": index, "kind": ORPHANED,
                          "since": episode["start"], "mem_mib": obs.process_mib, "reason": episode["reason"]})
    return flags


def _last_task_on(state: ServerState, host: str, index: int) -> str | None:
    """The task that most recently ended on a host's GPU (blamed for memory left behind)."""
    finished = state.store.find(TASKS, {"runtime.host": host, "ended": {"$gt": 0}}, sort=[("ended", -1)],
                                fields=("id", "runtime", "environment"), limit=50)
    return next((t["id"] for t in finished if index in _gpu_indices(t)), None)


def _record_orphan(state: ServerState, host: str, gpu: int, task_id: str | None, obs: GpuObservation,
                   now: float, ttl_s: float) -> dict[str, Any]:
    """Start or extend the orphan episode of one GPU; an episode unseen for ``ttl_s`` is over."""
    open_episode = state.store.find(GPU_WASTE, {"host": host, "gpu": gpu, "kind": ORPHANED,
                                                "end": {"$gte": now - ttl_s}}, sort=[("end", -1)], limit=1)
    who = f" of finished task {task_id[:8]}" if task_id else " of no running task"
    if open_episode:
        episode = open_episode[0]
        reason = (f"GPU {gpu} on {host}: {obs.process_mib / 1024:.1f} GiB held by processes{who} "
                  f"for {(now - episode['start']) / 60:.0f} min")
        updated = state.store.update(GPU_WASTE, episode["id"], {"$set": {
            "end": now, "gpu_hours": (now - episode["start"]) / 3600.0, "reason": reason}})
        return updated or episode
    reason = f"GPU {gpu} on {host}: {obs.process_mib / 1024:.1f} GiB held by processes{who}"
    return state.store.insert(GPU_WASTE, {"id": new_id(), "kind": ORPHANED, "host": host, "gpu": gpu,
                                          "task_id": task_id, "start": now, "end": now, "gpu_hours": 0.0,
                                          "reason": reason})
