"""Task documents: creation, heavy-field split, status transitions, listing queries.

Large fields (the uncommitted diff, the script's own code, requirements and the package list)
live in the ``task_details`` collection so that listing 50 tasks never reads megabytes of diffs.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from fleetdeck.server_lite.events import RESOURCE_TITLE, SeriesSummary
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import Document, Query, Sort

TASKS = "tasks"
TASK_DETAILS = "task_details"
HEAVY_SCRIPT = ("diff", "code", "requirements")
HEAVY_ENV = ("packages",)
TERMINAL = {"completed", "failed", "aborted", "stopped"}

TRANSITIONS: dict[str, set[str]] = {
    "created": {"queued", "in_progress", "aborted", "failed"},
    "queued": {"created", "in_progress", "aborted", "failed"},
    "in_progress": {"completed", "failed", "aborted", "stopped", "queued"},
    "completed": {"created", "queued"},
    "failed": {"created", "queued"},
    "aborted": {"created", "queued"},
    "stopped": {"created", "queued", "in_progress"},
}
"""Allowed status changes (``force`` skips the check). A terminal task is reset or requeued first."""


class TransitionError(ValueError):
    pass


def new_id() -> str:
    return secrets.token_hex(16)


def metric_key(metric: str, variant: str) -> str:
    """A key for ``task.metrics`` safe in dotted paths and MongoDB field names."""
    def esc(text: str) -> str:
        return quote(text, safe="").replace(".", "%2E")
    return f"{esc(metric)}/{esc(variant)}"


PENDING = "events_pending"
"""Task field counting event batches whose metric summary is not yet written (see ``routes/events.py``)."""


def metric_summary_fields(series: Iterable[SeriesSummary]) -> dict[str, Any]:
    """``$set`` fields that put each series' last/min/max/count on the task (resource samples excluded)."""
    return {f"metrics.{metric_key(s.metric, s.variant)}": {
        "metric": s.metric, "variant": s.variant, "last": s.last, "min": s.min, "max": s.max,
        "iteration": s.last_iteration, "count": s.count} for s in series if s.metric != RESOURCE_TITLE}


def repair_metric_summaries(state: ServerState) -> int:
    """Rewrite the metric summary of every task a crash left between its events and its summary.

    Returns:
        How many tasks were repaired.
    """
    stale = state.store.find(TASKS, {PENDING: {"$gt": 0}}, fields=["id"])
    for task in stale:
        fields = metric_summary_fields(state.events.list_series(task["id"]))
        state.store.update(TASKS, task["id"], {"$set": fields, "$unset": {PENDING: ""}})
    return len(stale)


def split_heavy(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the listing-light task fields from the heavy ones."""
    light = dict(fields)
    heavy: dict[str, Any] = {}
    script = light.get("script")
    if isinstance(script, dict):
        script = dict(script)
        for key in HEAVY_SCRIPT:
            value = script.pop(key, "")
            if value:
                heavy[f"script.{key}"] = value
        script["has_diff"] = bool(heavy.get("script.diff"))
        light["script"] = script
    env = light.get("environment")
    if isinstance(env, dict):
        env = dict(env)
        for key in HEAVY_ENV:
            value = env.pop(key, None)
            if value:
                heavy[f"environment.{key}"] = value
        env["package_count"] = len(heavy.get("environment.packages", {}))
        light["environment"] = env
    return light, heavy


def merge_details(task: Document, details: Document | None) -> Document:
    if not details:
        return task
    merged = dict(task)
    for section in ("script", "environment"):
        extra = details.get(section)
        if extra:
            merged[section] = {**merged.get(section, {}), **extra}
    return merged


def detail_fields(heavy: dict[str, Any]) -> dict[str, Any]:
    """Heavy fields (``{"script.diff": ...}``) as the nested sections of a ``task_details`` document."""
    out: dict[str, Any] = {}
    for path, value in heavy.items():
        section, key = path.split(".", 1)
        out.setdefault(section, {})[key] = value
    return out


def store_details(state: ServerState, task_id: str, heavy: dict[str, Any]) -> None:
    if not heavy:
        return
    if state.store.get(TASK_DETAILS, task_id) is None:
        state.store.insert(TASK_DETAILS, {"id": task_id})
    state.store.update(TASK_DETAILS, task_id, {"$set": heavy})


def status_update(current: str, target: str, now: float, reason: str, force: bool) -> dict[str, Any]:
    if not force and target != current and target not in TRANSITIONS[current]:
        raise TransitionError(f"cannot change status from {current} to {target}")
    update: dict[str, Any] = {"status": target, "status_reason": reason, "last_update": now}
    if target == "in_progress" and current != "in_progress":
        update["started"] = now
        update["ended"] = None
    if target in TERMINAL:
        update["ended"] = now
    if target == "created":
        update.update({"started": None, "ended": None})
    return update


# -- listing ---------------------------------------------------------------------------------

LIST_FIELDS = ("id", "name", "project", "project_name", "type", "status", "status_reason", "tags", "user",
               "comment", "parent", "created", "started", "ended", "last_update", "metrics", "runtime",
               "queue", "attempt")
SORTABLE = {"created", "started", "ended", "last_update", "name", "status", "user", "type"}
METRIC_OPS = {"lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}


class BadListQuery(ValueError):
    pass


def build_query(*, project_ids: list[str] | None, status: list[str] | None, tags: list[str] | None,
                user: str | None, name: str | None, created_after: float | None, created_before: float | None,
                metric: str | None, metric_op: str | None, metric_value: float | None,
                ids: list[str] | None = None) -> Query:
    query: dict[str, Any] = {}
    if project_ids is not None:
        query["project"] = project_ids[0] if len(project_ids) == 1 else {"$in": project_ids}
    if status:
        query["status"] = status[0] if len(status) == 1 else {"$in": status}
    if tags:
        query["tags"] = {"$all": tags}
    if user:
        query["user"] = user
    if name:
        query["name"] = {"$contains": name}
    if ids:
        query["id"] = {"$in": ids}
    created: dict[str, float] = {}
    if created_after is not None:
        created["$gte"] = created_after
    if created_before is not None:
        created["$lt"] = created_before
    if created:
        query["created"] = created
    if metric is not None or metric_op is not None or metric_value is not None:
        if metric is None or metric_op is None or metric_value is None:
            raise BadListQuery("a metric filter needs metric (TITLE/SERIES), metric_op and metric_value")
        if metric_op not in METRIC_OPS:
            raise BadListQuery(f"metric_op must be one of {', '.join(METRIC_OPS)}")
        query[f"metrics.{parse_metric(metric)}.last"] = {METRIC_OPS[metric_op]: metric_value}
    return query


def parse_metric(text: str) -> str:
    title, sep, series = text.partition("/")
    if not sep or not title or not series:
        raise BadListQuery(f"metric {text!r} must be TITLE/SERIES")
    return metric_key(title, series)


def build_sort(order_by: str) -> Sort:
    descending = order_by.startswith("-")
    field = order_by.lstrip("-")
    direction = -1 if descending else 1
    if field.startswith("metric:"):
        return [(f"metrics.{parse_metric(field[len('metric:'):])}.last", direction), ("created", -1)]
    if field not in SORTABLE:
        raise BadListQuery(f"order_by must be one of {', '.join(sorted(SORTABLE))} or metric:TITLE/SERIES "
                           "(prefix - for descending)")
    if field == "created":
        return [("created", direction)]
    return [(field, direction), ("created", -1)]


@dataclass(frozen=True)
class PagePosition:
    """Where the next page starts: after a ``created`` value (keyset) or at an offset."""

    offset: int = 0
    """Rows to skip (listings sorted by anything but ``created`` alone)."""
    after_created: float | None = None
    """For ``created``-sorted listings: the last row's ``created``. Creation times are unique and
    increasing, so a page continues exactly after the last row even while tasks are added."""


def next_position(sort: Sort, current: PagePosition, page: list[Document], page_size: int) -> PagePosition:
    if is_created_sort(sort):
        return PagePosition(after_created=page[-1]["created"])
    return PagePosition(offset=current.offset + page_size)


def is_created_sort(sort: Sort) -> bool:
    return len(sort) == 1 and sort[0][0] == "created"


def after_created_query(query: Query, sort: Sort, position: PagePosition) -> Query:
    """``query`` narrowed to the rows after a keyset position."""
    if position.after_created is None:
        return query
    op = "$lt" if sort[0][1] < 0 else "$gt"
    bound = {op: position.after_created}
    if "created" in query:  # a created range filter: both must hold
        return {"$and": [dict(query), {"created": bound}]}
    return {**query, "created": bound}


def encode_page(position: PagePosition, fingerprint: str) -> str:
    data: dict[str, Any] = {"f": fingerprint}
    if position.after_created is not None:
        data["c"] = position.after_created
    else:
        data["o"] = position.offset
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_page(token: str, fingerprint: str) -> PagePosition:
    """The position a page token names; refused if it belongs to another query or was not issued here."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        same = data["f"] == fingerprint
        if "c" in data:
            position = PagePosition(after_created=float(data["c"]))
        else:
            position = PagePosition(offset=int(data["o"]))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise BadListQuery("page_token is not a token this server issued") from None
    if not same:
        raise BadListQuery("page_token belongs to a different query")
    if position.offset < 0:
        raise BadListQuery("page_token is not a token this server issued")
    return position


def fingerprint(query: Query, sort: Sort) -> str:
    return hashlib.sha256(orjson.dumps([query, sort], option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
