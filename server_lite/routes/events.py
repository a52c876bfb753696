"""Events of a task: batched ingest, scalar series (downsampled on request), console, other events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from fleetdeck.server_lite.deps import Principal, State
from fleetdeck.server_lite.events import RESOURCE_TITLE
from fleetdeck.server_lite.routes.tasks import load_task
from fleetdeck.server_lite.schemas import EventBatch
from fleetdeck.server_lite.tasks import TASKS, metric_key

router = APIRouter(tags=["events"])


@router.post("/tasks/{task_id}/events")
def post_events(task_id: str, batch: EventBatch, state: State, principal: Principal) -> dict[str, Any]:
    load_task(state, task_id)
    for group in batch.scalars:
        if len(group.values) != len(group.iterations) or (
                group.timestamps is not None and len(group.timestamps) != len(group.iterations)):
            raise HTTPException(422, f"scalars {group.metric}/{group.variant}: iterations, values and "
                                     "timestamps must have the same length")
    result = state.events.append(task_id, batch.model_dump(exclude_none=True))
    if result.duplicate:
        return {"duplicate": True, "scalars": 0, "console": 0, "events": 0}
    summary_update: dict[str, Any] = {"last_update": state.clock.now()}
    for series in result.touched:
        if series.metric == RESOURCE_TITLE:
            continue
        summary_update[f"metrics.{metric_key(series.metric, series.variant)}"] = {
            "metric": series.metric, "variant": series.variant, "last": series.last,
            "min": series.min, "max": series.max, "iteration": series.last_iteration, "count": series.count}
    state.store.update(TASKS, task_id, {"$set": summary_update})
    return {"duplicate": False, "scalars": result.scalars, "console": result.console, "events": result.events}


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
