"""Cost and waste: ``GET /costs/report``, ``GET /costs/flags`` (wasteful running tasks, orphaned GPUs),
``GET /costs/pricing`` (the effective price book)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from fleetdeck.errors import ConfigError
from fleetdeck.server_lite.costs import BadReportQuery, cost_report, orphan_flags, running_flags
from fleetdeck.server_lite.deps import State
from fleetdeck.server_lite.pricing import DEFAULT_LOADER, PriceBook
from fleetdeck.server_lite.routes.fleet import SUPERVISORS
from fleetdeck.server_lite.routes.queues import WORKERS
from fleetdeck.server_lite.state import ServerState

router = APIRouter(tags=["costs"])


def _book() -> PriceBook:
    try:
        return DEFAULT_LOADER.load()
    except ConfigError as exc:
        raise HTTPException(500, f"server pricing configuration is invalid: {exc}") from None


@router.get("/costs/report")
async def report(
    state: State,
    by: Literal["project", "user", "host", "queue", "task"] = "project",
    since: Annotated[float | None, Query(description="period start (unix seconds); default 7 days ago",
                                        allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(description="period end (unix seconds); default now",
                                        allow_inf_nan=False)] = None,
    top: Annotated[int, Query(ge=0, le=100)] = 10,
) -> dict[str, Any]:
    """Cost, GPU-hours and waste per group, per UTC day, and the top wasters, for one period."""
    book = _book()
    now = time.time()
    start = now - 7 * 86400 if since is None else since

    def build() -> dict[str, Any]:
        _observe_hosts(state, book)  # record or extend orphan episodes the host reports show now
        return cost_report(state, book, by=by, since=start, until=until, now=now, top=top)

    try:
        return await run_in_threadpool(build)
    except BadReportQuery as exc:
        raise HTTPException(400, str(exc)) from None


def _observe_hosts(state: ServerState, book: PriceBook) -> list[dict[str, Any]]:
    """Orphaned GPUs in the live worker heartbeats and host supervisor reports (recorded as episodes)."""
    reports = [*state.store.list_volatile(WORKERS).values(), *state.store.list_volatile(SUPERVISORS).values()]
    return orphan_flags(state, book, reports)


@router.get("/costs/flags")
async def flags(state: State) -> dict[str, Any]:
    """Waste happening now: running tasks holding idle GPUs, and GPUs with orphaned memory.

    The experiments and fleet views mark these rows with ``reason``.
    """
    book = _book()

    def collect() -> list[dict[str, Any]]:
        return running_flags(state, book) + _observe_hosts(state, book)

    return {"items": await run_in_threadpool(collect)}


@router.get("/costs/pricing")
def pricing() -> dict[str, Any]:
    """The merged price book the server uses, with the files it came from."""
    return _book().as_dict()
