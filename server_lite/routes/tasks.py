"""Tasks (experiments): create, read, update, status changes, filtered and paged listing."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query

from fleetdeck.errors import ConfigError
from fleetdeck.server_lite.deps import FastRoute, Principal, State, UserOrAdmin
from fleetdeck.server_lite.routes.projects import PROJECTS, ensure_project, project_id_for
from fleetdeck.server_lite.schemas import StatusChange, TaskBulkCreate, TaskCreate, TaskFields
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import Document
from fleetdeck.server_lite.tasks import (
    LIST_FIELDS, TASK_DETAILS, TASKS, BadListQuery, PagePosition, TransitionError, after_created_query, build_query,
    build_sort, decode_page, detail_fields, encode_page, fingerprint, merge_details, new_id, next_position,
    TERMINAL, split_heavy, status_update, store_details,
)

router = APIRouter(tags=["tasks"], route_class=FastRoute)
log = logging.getLogger("fleetdeck.server")


def load_task(state: ServerState, task_id: str) -> Document:
    task = state.store.get(TASKS, task_id)
    if task is None:
        raise HTTPException(404, f"no task {task_id!r}")
    return task


def _fields_to_doc(state: ServerState, fields: TaskFields) -> dict[str, Any]:
    data = fields.model_dump(exclude_unset=True, exclude_none=True)
    if "project" in data:
        project = ensure_project(state, data["project"])
        data["project"] = project["id"]
        data["project_name"] = project["name"]
    if "parent" in data:
        load_task(state, data["parent"])
    return data


def _new_task(state: ServerState, body: TaskCreate, principal: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
    """A new task document and its heavy fields (stored apart in ``task_details``)."""
    light, heavy = split_heavy(_fields_to_doc(state, body))
    now = state.clock.now()
    task = {"type": "training", "tags": [], "user": principal["name"], "comment": "", "parent": None,
            "hyperparams": {}, "configuration": {}, "runtime": {}, "metrics": {}, "attempt": 0,
            **light, "id": new_id(), "status": "created", "status_reason": "", "created": now,
            "started": None, "ended": None, "last_update": now}
    return task, heavy


@router.post("/tasks", status_code=201)
def create_task(body: TaskCreate, state: State, principal: Principal) -> Document:
    task, heavy = _new_task(state, body, principal)
    if heavy:
        state.store.insert(TASK_DETAILS, {"id": task["id"], **detail_fields(heavy)})
    state.store.insert(TASKS, task)
    return merge_details(task, state.store.get(TASK_DETAILS, task["id"]))


@router.post("/tasks/bulk", status_code=201)
def create_tasks(body: TaskBulkCreate, state: State, principal: Principal) -> dict[str, Any]:
    """Create up to 1000 tasks in one durable write; returns their ids in request order."""
    made = [_new_task(state, one, principal) for one in body.tasks]
    details = [{"id": task["id"], **detail_fields(heavy)} for task, heavy in made if heavy]
    if details:
        state.store.insert_many(TASK_DETAILS, details)
    state.store.insert_many(TASKS, [task for task, _ in made])
    return {"ids": [task["id"] for task, _ in made]}


@router.get("/tasks/{task_id}")
def get_task(task_id: str, state: State, details: bool = True) -> Document:
    task = load_task(state, task_id)
    return merge_details(task, state.store.get(TASK_DETAILS, task_id)) if details else task


@router.patch("/tasks/{task_id}")
def update_task(task_id: str, body: TaskFields, state: State, principal: Principal) -> Document:
    task = load_task(state, task_id)
    data = _fields_to_doc(state, body)
    if not data:
        return task
    light, heavy = split_heavy(data)
    store_details(state, task_id, heavy)
    light["last_update"] = state.clock.now()
    updated = state.store.update(TASKS, task["id"], {"$set": light})
    if updated is None:
        raise HTTPException(404, f"no task {task_id!r}")
    return merge_details(updated, state.store.get(TASK_DETAILS, task_id))


@router.post("/tasks/{task_id}/status")
def change_status(task_id: str, body: StatusChange, state: State, principal: Principal,
                  background: BackgroundTasks) -> Document:
    task = load_task(state, task_id)
    if body.force and principal["role"] != "admin":
        raise HTTPException(403, "force needs the admin role")
    try:
        update = status_update(task["status"], body.status, state.clock.now(), body.reason, body.force)
    except TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    updated = state.store.update(TASKS, task_id, {"$set": update}, where={"status": task["status"]})
    if updated is None:
        raise HTTPException(409, f"task {task_id} changed status concurrently; retry")
    if updated["status"] in TERMINAL:
        background.add_task(_summarise_costs, state, task_id)
    return updated


def _summarise_costs(state: ServerState, task_id: str) -> None:
    """After a task ends: its GPU-waste summary, so cost reports never read its samples again."""
    from fleetdeck.server_lite.costs import summarise_finished_task
    from fleetdeck.server_lite.pricing import DEFAULT_LOADER

    try:
        policy = DEFAULT_LOADER.load().waste
    except ConfigError as exc:  # a broken pricing file is reported by the costs routes
        log.warning("no waste summary for task %s: %s", task_id, exc)
        return
    summarise_finished_task(state, task_id, policy)


@router.delete("/tasks/{task_id}", status_code=204, dependencies=[UserOrAdmin])
def delete_task(task_id: str, state: State) -> None:
    task = load_task(state, task_id)
    if task["status"] == "in_progress":
        raise HTTPException(409, "a running task cannot be deleted; abort it first")
    state.store.delete(TASK_DETAILS, task_id)
    state.store.delete(TASKS, task_id)
    state.events.delete_task(task_id)


@router.get("/tasks")
def list_tasks(
    state: State,
    project: Annotated[list[str] | None, Query(description="project name (repeatable)")] = None,
    status: Annotated[list[str] | None, Query(description="status (repeatable)")] = None,
    tag: Annotated[list[str] | None, Query(description="tasks having all these tags")] = None,
    user: str | None = None,
    name: Annotated[str | None, Query(description="case-insensitive substring of the name")] = None,
    id: Annotated[list[str] | None, Query(description="task ids (repeatable)")] = None,
    created_after: float | None = None,
    created_before: float | None = None,
    metric: Annotated[str | None, Query(description="TITLE/SERIES for a threshold on its last value")] = None,
    metric_op: Annotated[str | None, Query(description="lt, le, gt or ge")] = None,
    metric_value: float | None = None,
    order_by: str = "-created",
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> dict[str, Any]:
    try:
        project_ids = None if project is None else [project_id_for(p) for p in project]
        query = build_query(project_ids=project_ids, status=status, tags=tag, user=user, name=name,
                            created_after=created_after, created_before=created_before, metric=metric,
                            metric_op=metric_op, metric_value=metric_value, ids=id)
        sort = build_sort(order_by)
        key = fingerprint(query, sort)
        position = decode_page(page_token, key) if page_token else PagePosition()
    except BadListQuery as exc:
        raise HTTPException(400, str(exc)) from None
    items = state.store.find(TASKS, after_created_query(query, sort, position), sort=sort, skip=position.offset,
                             limit=page_size + 1, fields=LIST_FIELDS)
    more = len(items) > page_size
    items = items[:page_size]
    next_page = encode_page(next_position(sort, position, items, page_size), key) if more else None
    return {"items": items, "next_page": next_page}


@router.get("/tasks-summary")
def task_counts(state: State, project: str | None = None) -> dict[str, Any]:
    """Counts by status (for headers and dashboards), cheap at any scale."""
    from typing import get_args

    from fleetdeck.server_lite.schemas import TaskStatus

    base: dict[str, Any] = {"project": project_id_for(project)} if project else {}
    counts = {s: state.store.count(TASKS, {**base, "status": s}) for s in get_args(TaskStatus)}
    return {"counts": counts, "total": sum(counts.values()), "projects": state.store.count(PROJECTS)}
