"""Events of a task: batched ingest, scalar series (downsampled on request), console, other events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from fleetdeck.server_lite.deps import FastRoute, Principal, State
from fleetdeck.server_lite.routes.tasks import load_task
from fleetdeck.server_lite.schemas import EventBatch
from fleetdeck.server_lite.tasks import PENDING, TASKS, metric_summary_fields

router = APIRouter(tags=["events"], route_class=FastRoute)


@router.post("/tasks/{task_id}/events")
def post_events(task_id: str, batch: EventBatch, state: State, principal: Principal) -> dict[str, Any]:
    load_task(state, task_id)
    for group in batch.scalars:
        if len(group.values) != len(group.iterations) or (
                group.timestamps is not None and len(group.timestamps) != len(group.iterations)):
            raise HTTPException(422, f"scalars {group.metric}/{group.variant}: iterations, values and "
                                     "timestamps must have the same length")
    # Events and the task's metric summary live in two stores: a pending counter on the task
    # brackets the pair, so a crash between them is repaired at the next start
    # (``tasks.repair_metric_summaries``) instead of leaving the summary behind the series.
    state.store.update(TASKS, task_id, {"$inc": {PENDING: 1}})
    summary: dict[str, Any] = {}
    try:
        result = state.events.append(task_id, batch.model_dump(exclude_none=True))
        touched = result.touched
        if result.duplicate:
            # A resent batch: its events are stored, but the first attempt may have failed before
            # the summary was written (e.g. on a full disk), so the summary is written again.
            keys = {(g.metric, g.variant) for g in batch.scalars}
            touched = [s for s in state.events.list_series(task_id) if (s.metric, s.variant) in keys]
        summary = metric_summary_fields(touched)
    finally:
        state.store.update(TASKS, task_id, {"$set": {**summary, "last_update": state.clock.now()},
                                             "$inc": {PENDING: -1}})
    return {"duplicate": result.duplicate, "scalars": result.scalars, "console": result.console,
            "events": result.events}


@router.get("/tasks/{task_id}/scalars")
def list_series(task_id: str, state: State) -> dict[str, Any]:
    load_task(state, task_id)
    return {"items": [s.as_dict() for s in state.events.list_series(task_id)]}


@router.get("/tasks/{task_id}/scalars/series")
def get_series(task_id: str, metric: str, variant: str, state: State,
               max_points: Annotated[int | None, Query(ge=4, le=100_000)] = None) -> dict[str, Any]:
    load_task(state, task_id)
    try:
        return state.events.read_series(task_id, metric, variant, max_points)
    except KeyError:
        raise HTTPException(404, f"task {task_id} has no series {metric}/{variant}") from None


@router.get("/tasks/{task_id}/console")
def get_console(task_id: str, state: State, start: Annotated[int, Query(ge=-10_000_000)] = 0,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
    load_task(state, task_id)
    lines, total = state.events.read_console(task_id, start, limit)
    return {"items": lines, "total": total}


@router.get("/tasks/{task_id}/events")
def get_events(task_id: str, state: State, kind: str | None = None) -> dict[str, Any]:
    load_task(state, task_id)
    return {"items": state.events.read_events(task_id, kind)}
