"""Queues with atomic, leased dequeue (long-poll), lease renewal and release, and workers' heartbeats.

A background reaper (started with the app) ends expired leases once a second; see ``leases.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from fleetdeck.server_lite import leases
from fleetdeck.server_lite.deps import Principal, State, UserOrAdmin
from fleetdeck.server_lite.names import BadName, check_name
from fleetdeck.server_lite.routes.projects import project_id_for
from fleetdeck.server_lite.routes.tasks import load_task
from fleetdeck.server_lite.schemas import DequeueRequest, EnqueueRequest, Heartbeat, QueueCreate
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import DuplicateId, Document
from fleetdeck.server_lite.tasks import TASKS, TransitionError, status_update

log = logging.getLogger("fleetdeck.server.queues")
QUEUES = leases.QUEUES
ENTRIES = leases.ENTRIES
WORKERS = "workers"
REAP_INTERVAL_S = 1.0


@contextlib.asynccontextmanager
async def _reaper(app: FastAPI) -> AsyncIterator[None]:
    """Run ``leases.reap`` every second for the life of the server."""
    state: ServerState = app.state.fleetdeck

    async def loop() -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                await run_in_threadpool(leases.reap, state)
            except Exception:  # keep reaping: one bad document must not stop every requeue
                log.exception("lease reaper failed; retrying in %.0fs", REAP_INTERVAL_S)

    task = asyncio.create_task(loop(), name="fleetdeck-lease-reaper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


router = APIRouter(tags=["queues"], lifespan=_reaper)


def _queue_name(name: str) -> str:
    try:
        return check_name(name, "queue name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None


def ensure_queue(state: ServerState, name: str) -> Document:
    qid = project_id_for("queue:" + name)
    found = state.store.get(QUEUES, qid)
    if found is not None:
        return found
    try:
        return state.store.insert(QUEUES, {"id": qid, "name": name, "created": state.clock.now()})
    except DuplicateId:
        return state.store.get(QUEUES, qid)  # type: ignore[return-value]


def find_queue(state: ServerState, name: str) -> Document:
    found = state.store.get(QUEUES, project_id_for("queue:" + _queue_name(name)))
    if found is None:
        raise HTTPException(404, f"no queue {name!r}")
    return found


@router.post("/queues", status_code=201, dependencies=[UserOrAdmin])
def create_queue(body: QueueCreate, state: State) -> Document:
    return ensure_queue(state, _queue_name(body.name))


@router.get("/queues")
def list_queues(state: State) -> dict[str, Any]:
    queues = state.store.find(QUEUES, sort=[("name", 1)])
    workers = state.store.list_volatile(WORKERS)
    items = []
    for queue in queues:
        serving = sorted(w for w, hb in workers.items() if queue["name"] in hb.get("queues", ()))
        items.append({**queue, "length": state.store.count(ENTRIES, {"queue": queue["id"]}), "workers": serving})
    return {"items": items}


@router.get("/queues/{name}/entries")
def list_entries(name: str, state: State) -> dict[str, Any]:
    queue = find_queue(state, name)
    entries = state.store.find(ENTRIES, {"queue": queue["id"]}, sort=[("priority", -1), ("seq", 1)])
    return {"items": entries}


@router.post("/queues/{name}/entries", status_code=201)
def enqueue(name: str, body: EnqueueRequest, state: State, principal: Principal) -> Document:
    queue = ensure_queue(state, _queue_name(name))
    task = load_task(state, body.task_id)
    if task["status"] == "in_progress":
        raise HTTPException(409, f"task {task['id']} is running; abort it before enqueuing it again")
    try:
        update = status_update(task["status"], "queued", state.clock.now(), f"queued on {name}", False)
    except TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    update["queue"] = queue["name"]
    update["attempt"] = 0  # a user's enqueue starts a fresh run; lease expiries count attempts from here
    if state.store.update(TASKS, task["id"], {"$set": update}, where={"status": task["status"]}) is None:
        raise HTTPException(409, f"task {task['id']} changed status concurrently; retry")
    entry = {"id": task["id"], "queue": queue["id"], "queue_name": queue["name"], "priority": body.priority,
             "seq": next(state.seq), "created": state.clock.now(), "task_name": task["name"]}
    try:
        state.store.insert(ENTRIES, entry)
    except DuplicateId:
        raise HTTPException(409, f"task {task['id']} is already queued") from None
    state.notifier.notify()
    return entry


@router.delete("/queues/{name}/entries/{task_id}", status_code=204)
def remove_entry(name: str, task_id: str, state: State, principal: Principal) -> None:
    queue = find_queue(state, name)
    removed = state.store.find_one_and_delete(ENTRIES, {"id": task_id, "queue": queue["id"]})
    if removed is None:
        raise HTTPException(404, f"task {task_id} is not in queue {name!r}")
    # ``queue`` stays: it names the queue the task last used, where ``tasks requeue`` puts it back.
    state.store.update(TASKS, task_id, {"$set": {"status": "created", "status_reason": f"removed from queue {name}"}},
                       where={"status": "queued"})


@router.post("/queues/dequeue")
async def dequeue(body: DequeueRequest, state: State, principal: Principal) -> dict[str, Any]:
    """Lease the next task of the first non-empty queue (priority, then FIFO); waits up to ``wait_s``.

    Returns ``{"task", "lease", "token"}``: ``token`` is scoped to this task and lease, for the job.
    """
    names = [_queue_name(n) for n in body.queues]
    try:
        check_name(body.worker, "worker name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None
    deadline = time.monotonic() + body.wait_s
    while True:
        waiter = state.notifier.waiter()
        try:
            ids = [(project_id_for("queue:" + n), n) for n in names]
            taken = await run_in_threadpool(leases.take, state, ids, body.worker, body.lease_s)
            if taken is not None:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"task": None}
            if state.peer_poll_s is not None:
                remaining = min(remaining, state.peer_poll_s)
            try:
                await asyncio.wait_for(waiter.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                continue  # the next pass takes the task if a peer enqueued one, or returns at the deadline
        finally:
            state.notifier.forget(waiter)


@router.delete("/tasks/{task_id}/lease", status_code=204)
def release_lease(task_id: str, request: Request, state: State, principal: Principal) -> None:
    """End the caller's lease (header ``X-Fleetdeck-Lease``) once it is done with the task."""
    lease_id = request.headers.get(leases.LEASE_HEADER)
    if not lease_id:
        raise HTTPException(400, f"releasing a lease needs the {leases.LEASE_HEADER} header")
    load_task(state, task_id)
    if not leases.release(state, task_id, lease_id):
        raise HTTPException(409, f"lease {lease_id[:8]} on task {task_id} is no longer held")


@router.put("/workers/{worker}")
def heartbeat(worker: str, body: Heartbeat, state: State, principal: Principal) -> dict[str, Any]:
    try:
        check_name(worker, "worker name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None
    record = {**body.model_dump(), "id": worker, "last_seen": time.time()}
    state.store.put_volatile(WORKERS, worker, record, body.ttl_s)
    if body.task_id:
        # The reply tells the agent whether the task was aborted or its lease lost, so it can stop the job.
        return {**record, "task": leases.renew(state, body.task_id, worker)}
    return record


@router.get("/workers")
def list_workers(state: State) -> dict[str, Any]:
    workers = state.store.list_volatile(WORKERS)
    return {"items": [workers[k] for k in sorted(workers)]}


@router.delete("/workers/{worker}", status_code=204)
def unregister(worker: str, state: State, principal: Principal) -> None:
    state.store.delete_volatile(WORKERS, worker)
