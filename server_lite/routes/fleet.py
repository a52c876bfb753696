"""Fleet state: the host inventory, supervisors' live status, restarts and triage findings.

- Hosts (``PUT /fleet/hosts/{name}``) are written when a host is provisioned, so the server knows
  each host's labels, queues, GPUs and price (the cost reports read them).
- Supervisors on the hosts report their live status (``PUT /fleet/supervisors/{host}``, volatile
  like worker heartbeats), every agent restart with its reason and memory curve, and the findings
  they detect (a silent task, a phase over its timeout, an idle GPU, a dead agent).
- A host whose supervisor stopped reporting is flagged ``no_heartbeat`` here, on read: when the
  host itself is down nobody on it can say so.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from fleetdeck.server_lite.deps import State, UserOrAdmin
from fleetdeck.server_lite.names import BadName, check_name
from fleetdeck.server_lite.routes.projects import project_id_for
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import Document, DuplicateId

router = APIRouter(prefix="/fleet", tags=["fleet"])
HOSTS = "fleet_hosts"
RESTARTS = "fleet_restarts"
FINDINGS = "fleet_findings"
SUPERVISORS = "fleet_supervisors"

SUPERVISOR_TTL_S = 7 * 24 * 3600.0
"""Supervisor status is kept this long after its last report, so a silent host stays visible."""
MISSED_REPORTS = 3
"""A supervisor is declared gone after this many report intervals without a report."""
MIN_SILENCE_S = 5.0

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Cause = Literal["no_heartbeat", "agent_dead", "crash_loop", "phase_timeout", "silent", "gpu_idle",
                "host_unreachable", "memory_leak"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuInfo(_Strict):
    count: int = Field(default=0, ge=0, le=1024)
    model: Name | None = None


class HostRecord(_Strict):
    address: Text = ""
    port: int = Field(default=22, ge=1, le=65535)
    user: Text = ""
    labels: list[Name] = Field(default_factory=list)
    queues: list[Name] = Field(default_factory=list)
    gpus: GpuInfo = Field(default_factory=GpuInfo)
    price_per_hour: float | None = Field(default=None, ge=0)
    price_per_gpu_hour: float | None = Field(default=None, ge=0)
    install: dict[str, JsonValue] = Field(default_factory=dict)
    """What provisioning installed: venv hash, fleetdeck version, preflight facts."""


class SupervisorStatus(_Strict):
    state: Annotated[str, StringConstraints(max_length=50)]
    """running | backoff | crash_looping | draining | drained | stopped"""
    interval_s: float = Field(default=2.0, gt=0, le=3600)
    worker: Name | None = None
    agent_pid: int | None = None
    rss_mb: float | None = None
    restarts: int = 0
    consecutive_crashes: int = 0
    pending_restart: Text | None = None
    stats: dict[Name, JsonValue] = Field(default_factory=dict)


class RestartRecord(_Strict):
    id: Id
    """Made by the supervisor, so a report resent after a network error is stored once."""
    ts: float
    reason: Text
    kind: Literal["crash", "leak", "hard_limit", "manual", "drain"]
    exit_code: int | None = None
    backoff_s: float = 0.0
    rss_mb: float | None = None
    at_safe_point: bool = True
    memory_curve: list[list[float]] = Field(default_factory=list, max_length=2000)
    """``[seconds, rss_mb]`` samples leading up to the restart."""


class FindingReport(_Strict):
    id: Id
    host: Name
    cause: Cause
    summary: Text
    worker: Name | None = None
    task_id: Id | None = None
    phase: Name | None = None
    evidence: dict[Name, JsonValue] = Field(default_factory=dict)
    suggested_action: Literal["restart", "abort-requeue", "drain", "inspect"] = "inspect"
    state: Literal["open", "resolved"] = "open"
    resolution: Text | None = None


class Resolution(_Strict):
    note: Text = ""
    action: Literal["restart", "abort-requeue", "drain", "dismiss"] = "dismiss"


def _host_name(name: str) -> str:
    try:
        return check_name(name, "host name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None


def host_id(name: str) -> str:
    return project_id_for("fleet-host:" + name)


# -- hosts -----------------------------------------------------------------------------------------


@router.put("/hosts/{name}", dependencies=[UserOrAdmin])
def put_host(name: str, body: HostRecord, state: State) -> Document:
    name = _host_name(name)
    existing = state.store.get(HOSTS, host_id(name))
    now = state.clock.now()
    doc = {**body.model_dump(), "id": host_id(name), "name": name, "updated": now,
           "created": existing["created"] if existing else now}
    return state.store.upsert(HOSTS, doc)


@router.get("/hosts")
def list_hosts(state: State) -> dict[str, Any]:
    supervisors = state.store.list_volatile(SUPERVISORS)
    now = time.time()
    items = [_with_state(doc, supervisors.get(doc["name"]), now)
             for doc in state.store.find(HOSTS, sort=[("name", 1)])]
    return {"items": items}


@router.get("/hosts/{name}")
def get_host(name: str, state: State) -> Document:
    doc = state.store.get(HOSTS, host_id(_host_name(name)))
    if doc is None:
        raise HTTPException(404, f"no fleet host {name!r}")
    return _with_state(doc, state.store.list_volatile(SUPERVISORS).get(doc["name"]), time.time())


@router.delete("/hosts/{name}", status_code=204, dependencies=[UserOrAdmin])
def delete_host(name: str, state: State) -> None:
    name = _host_name(name)
    if not state.store.delete(HOSTS, host_id(name)):
        raise HTTPException(404, f"no fleet host {name!r}")
    state.store.delete_volatile(SUPERVISORS, name)


def _silence_limit(status: Document) -> float:
    return max(MISSED_REPORTS * float(status.get("interval_s", 2.0)), MIN_SILENCE_S)


def _with_state(doc: Document, status: Document | None, now: float) -> Document:
    if status is None:
        health = "unknown"
    elif status["state"] == "stopped":
        health = "stopped"
    elif now - status["last_seen"] > _silence_limit(status):
        health = "down"
    elif status["state"] in ("crash_looping", "backoff") or status.get("pending_restart"):
        health = "degraded"
    else:
        health = "ok"
    return {**doc, "state": health, "supervisor": status}


# -- supervisors and restarts ----------------------------------------------------------------------


@router.put("/supervisors/{host}")
def put_supervisor(host: str, body: SupervisorStatus, state: State) -> Document:
    host = _host_name(host)
    record = {**body.model_dump(), "host": host, "last_seen": time.time()}
    state.store.put_volatile(SUPERVISORS, host, record, SUPERVISOR_TTL_S)
    return record


@router.get("/supervisors")
def list_supervisors(state: State) -> dict[str, Any]:
    statuses = state.store.list_volatile(SUPERVISORS)
    return {"items": [statuses[k] for k in sorted(statuses)]}


@router.post("/hosts/{host}/restarts", status_code=201)
def record_restart(host: str, body: RestartRecord, state: State) -> Document:
    host = _host_name(host)
    doc = {**body.model_dump(), "host": host, "received": state.clock.now()}
    try:
        return state.store.insert(RESTARTS, doc)
    except DuplicateId:
        return state.store.get(RESTARTS, body.id)  # type: ignore[return-value]


@router.get("/hosts/{host}/restarts")
def list_restarts(host: str, state: State, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    host = _host_name(host)
    return {"items": state.store.find(RESTARTS, {"host": host}, sort=[("ts", -1)], limit=limit)}


# -- findings --------------------------------------------------------------------------------------


@router.post("/findings", status_code=201)
def report_finding(body: FindingReport, state: State) -> Document:
    """Store a finding, or update it when the reporter sends the same id again (it got worse,
    or it is resolved)."""
    existing = state.store.get(FINDINGS, body.id)
    now = state.clock.now()
    doc = {**body.model_dump(), "created": existing["created"] if existing else now, "updated": now}
    if existing and existing.get("state") == "resolved" and body.state == "open":
        doc["state"] = "resolved"  # a user's resolution wins over a late report
        doc["resolution"] = existing.get("resolution")
    return state.store.upsert(FINDINGS, doc)


@router.get("/findings")
def list_findings(state: State, status: Literal["open", "resolved", "all"] = "open",
                  host: str | None = None, limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    """Findings, newest first: those reported by supervisors plus ``no_heartbeat`` for every host
    whose supervisor went quiet."""
    query: dict[str, Any] = {}
    if status != "all":
        query["state"] = status
    if host is not None:
        query["host"] = _host_name(host)
    items = state.store.find(FINDINGS, query, sort=[("created", -1)], limit=limit)
    if status != "resolved":
        derived = [f for f in _silent_supervisors(state) if host is None or f["host"] == host]
        dismissed = {d["id"] for d in state.store.find(FINDINGS, {"id": {"$in": [f["id"] for f in derived]}})}
        items += [f for f in derived if f["id"] not in dismissed]
    items.sort(key=lambda f: f["created"], reverse=True)
    return {"items": items[:limit]}


@router.get("/findings/{finding_id}")
def get_finding(finding_id: str, state: State) -> Document:
    found = state.store.get(FINDINGS, finding_id)
    if found is None:
        found = next((f for f in _silent_supervisors(state) if f["id"] == finding_id), None)
    if found is None:
        raise HTTPException(404, f"no finding {finding_id!r}")
    return found


@router.post("/findings/{finding_id}/resolve")
def resolve_finding(finding_id: str, body: Resolution, state: State) -> Document:
    finding = get_finding(finding_id, state)
    now = state.clock.now()
    resolved = {**finding, "state": "resolved", "updated": now,
                "resolution": f"{body.action}: {body.note}".rstrip(": ")}
    return state.store.upsert(FINDINGS, resolved)


def _silent_supervisors(state: ServerState) -> list[Document]:
    now = time.time()
    findings = []
    for host, status in state.store.list_volatile(SUPERVISORS).items():
        silence = now - status["last_seen"]
        limit = _silence_limit(status)
        if status["state"] == "stopped" or silence <= limit:
            continue
        findings.append({
            "id": project_id_for(f"no_heartbeat:{host}:{status['last_seen']:.3f}"), "host": host,
            "cause": "no_heartbeat", "worker": status.get("worker"), "task_id": status.get("stats", {}).get("task_id"),
            "phase": None, "state": "open", "resolution": None, "suggested_action": "restart",
            "summary": f"no report from the supervisor on {host} for {silence:.0f}s (agent and supervisor "
                       f"dead, or host unreachable); expected one every {status['interval_s']:g}s",
            "evidence": {"last_seen": status["last_seen"], "last_status": status},
            "created": status["last_seen"] + limit, "updated": now})
    return findings
