"""Task leases: one task, one worker, for as long as the worker keeps proving it is alive.

A dequeue takes a queue entry and gives the task a lease ``{id, worker, expires, ...}``, plus a
token scoped to that task and lease (role ``task``) that the job itself uses, so a job never sees
the agent's credentials. The worker's heartbeat renews the lease. When a lease expires (the agent
died, hung or lost its network) the reaper gives the task back to its queue at its old position
(``attempt`` + 1) or, past ``max_attempts``, marks it failed with the reason. Every write that
names a lease (the task token carries one; the agent sends ``X-Fleetdeck-Lease``) is refused with
409 once that lease is gone, so a dead agent's late writes cannot clobber the task's next run.

The lease lives in the task document (journaled), so leases and queue entries survive a server
restart; expiry times are wall-clock.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import DuplicateId, Document
from fleetdeck.server_lite.tasks import TASKS

log = logging.getLogger("fleetdeck.server.leases")

QUEUES = "queues"
ENTRIES = "queue_entries"
LEASE_HEADER = "x-fleetdeck-lease"
TASK_ROLE = "task"


def max_attempts() -> int:
    """How many times a task is started before an expired lease fails it (``FLEETDECK_MAX_ATTEMPTS``)."""
    return max(1, int(os.environ.get("FLEETDECK_MAX_ATTEMPTS", "3")))


class LeaseLost(Exception):
    """The lease named by a request is no longer the task's lease."""


def take(state: ServerState, queue_ids: list[tuple[str, str]], worker: str, lease_s: float) -> dict[str, Any] | None:
    """Take the next task from the first non-empty queue and lease it to ``worker``.

    Args:
        queue_ids: ``(queue id, queue name)`` pairs in the worker's priority order.
        worker: the worker's name.
        lease_s: how long the lease lasts without a renewal.

    Returns:
        ``{"task", "lease", "token"}`` or None when every queue is empty. The token secret is
        returned only here, once.
    """
    for queue_id, queue_name in queue_ids:
        while True:
            entry = state.store.find_one_and_delete(ENTRIES, {"queue": queue_id}, sort=[("priority", -1), ("seq", 1)])
            if entry is None:
                break
            taken = _lease_entry(state, entry, queue_name, worker, lease_s)
            if taken is not None:
                return taken
    return None


def _lease_entry(state: ServerState, entry: Document, queue_name: str, worker: str,
                 lease_s: float) -> dict[str, Any] | None:
    task = state.store.get(TASKS, entry["id"])
    if task is None or task["status"] != "queued":
        return None  # deleted, aborted or reset while queued: the entry was stale
    lease_id = secrets.token_hex(16)
    token_doc, secret = state.tokens.create(f"task:{task['id']}", TASK_ROLE,
                                            extra={"task_id": task["id"], "lease_id": lease_id})
    now = state.clock.now()
    lease = {"id": lease_id, "worker": worker, "expires": now + lease_s, "lease_s": lease_s,
             "queue": queue_name, "queue_id": entry["queue"], "priority": entry["priority"],
             "seq": entry["seq"], "token_id": token_doc["id"], "taken": now}
    updated = state.store.update(TASKS, task["id"], {
        "$set": {"status": "in_progress", "status_reason": f"taken by {worker}", "started": now, "ended": None,
                 "last_update": now, "runtime.worker": worker, "queue": queue_name, "lease": lease},
        "$inc": {"attempt": 1}}, where={"status": "queued"})
    if updated is None:
        state.tokens.revoke(token_doc["id"])
        return None
    stale = task.get("lease")
    if stale:  # the previous run was aborted and its agent never released the lease
        state.tokens.revoke(stale["token_id"])
    return {"task": updated, "lease": public_lease(lease), "token": secret}


def public_lease(lease: Document) -> Document:
    return {k: lease[k] for k in ("id", "worker", "expires", "lease_s", "queue")}


def renew(state: ServerState, task_id: str, worker: str) -> dict[str, Any]:
    """Extend ``worker``'s lease on a task; says whether it is still held and the task's status."""
    task = state.store.get(TASKS, task_id)
    if task is None:
        return {"id": task_id, "status": None, "lease": "lost"}
    lease = task.get("lease") or {}
    if lease.get("worker") != worker:
        return {"id": task_id, "status": task["status"], "lease": "lost"}
    expires = state.clock.now() + float(lease["lease_s"])
    updated = state.store.update(TASKS, task_id, {"$set": {"lease.expires": expires}},
                                 where={"lease.id": lease["id"]})
    held = updated is not None
    return {"id": task_id, "status": (updated or task)["status"], "lease": "held" if held else "lost",
            "expires": expires if held else None}


def release(state: ServerState, task_id: str, lease_id: str) -> bool:
    """End a lease once the worker is done with the task; False if it was no longer held."""
    task = state.store.get(TASKS, task_id)
    lease = (task or {}).get("lease") or {}
    if lease.get("id") != lease_id:
        return False
    if state.store.update(TASKS, task_id, {"$set": {"lease": None}}, where={"lease.id": lease_id}) is None:
        return False
    state.tokens.revoke(lease["token_id"])
    return True


def check(state: ServerState, task_id: str, lease_id: str) -> None:
    """Raise LeaseLost unless ``lease_id`` is the task's current lease."""
    task = state.store.get(TASKS, task_id)
    if task is None:
        return  # the route answers 404 itself
    if ((task.get("lease") or {}).get("id")) != lease_id:
        raise LeaseLost(f"lease {lease_id[:8]} on task {task_id} is no longer held (the task was requeued, "
                        "reassigned or finished); this write is refused")


def reap(state: ServerState) -> int:
    """Requeue or fail every task whose lease expired; returns how many leases were ended."""
    now = state.clock.now()
    ended = 0
    for task in state.store.find(TASKS, {"lease.expires": {"$lt": now}}):
        lease = task["lease"]
        if _end_expired(state, task, lease, now):
            ended += 1
            state.tokens.revoke(lease["token_id"])
    if ended:
        state.notifier.notify()
    return ended


def _end_expired(state: ServerState, task: Document, lease: Document, now: float) -> bool:
    where = {"lease.id": lease["id"]}
    if task["status"] != "in_progress":  # finished, aborted or reset: only the lease is left to end
        return state.store.update(TASKS, task["id"], {"$set": {"lease": None}}, where=where) is not None
    limit = max_attempts()
    attempt = int(task.get("attempt") or 0)
    if attempt >= limit:
        reason = (f"worker {lease['worker']} stopped renewing its lease (attempt {attempt} of {limit}); "
                  "not retried")
        update = {"status": "failed", "status_reason": reason, "ended": now, "last_update": now, "lease": None}
        done = state.store.update(TASKS, task["id"], {"$set": update}, where=where) is not None
        if done:
            log.warning("task %s failed: %s", task["id"], reason)
        return done
    reason = f"requeued: worker {lease['worker']} stopped renewing its lease (attempt {attempt} of {limit})"
    update = {"status": "queued", "status_reason": reason, "last_update": now, "lease": None, "started": None}
    if state.store.update(TASKS, task["id"], {"$set": update}, where=where) is None:
        return False
    entry = {"id": task["id"], "queue": lease["queue_id"], "queue_name": lease["queue"],
             "priority": lease["priority"], "seq": lease["seq"], "created": now, "task_name": task["name"]}
    try:
        state.store.insert(ENTRIES, entry)
    except DuplicateId:
        log.error("task %s was already in queue %s while its lease expired", task["id"], lease["queue"])
    log.warning("task %s %s", task["id"], reason)
    return True
