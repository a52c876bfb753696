"""Projects: named groups of tasks, created on first use by ``Task.init``."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, HTTPException

from fleetdeck.server_lite.deps import FastRoute, State, UserOrAdmin
from fleetdeck.server_lite.names import check_name
from fleetdeck.server_lite.schemas import ProjectCreate
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import DuplicateId, Document

router = APIRouter(tags=["projects"], route_class=FastRoute)
PROJECTS = "projects"


def project_id_for(name: str) -> str:
    """Projects are keyed by a hash of their name, so concurrent creates of one name agree."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def ensure_project(state: ServerState, name: str, description: str = "") -> Document:
    name = check_name(name, "project name", nested=True)
    pid = project_id_for(name)
    found = state.store.get(PROJECTS, pid)
    if found is not None:
        return found
    doc = {"id": pid, "name": name, "description": description, "created": state.clock.now()}
    try:
        return state.store.insert(PROJECTS, doc)
    except DuplicateId:
        return state.store.get(PROJECTS, pid) or doc


@router.post("/projects", status_code=201, dependencies=[UserOrAdmin])
def create_project(body: ProjectCreate, state: State) -> Document:
    return ensure_project(state, body.name, body.description)


@router.get("/projects")
def list_projects(state: State) -> dict[str, Any]:
    projects = state.store.find(PROJECTS, sort=[("name", 1)])
    items = [{**p, "tasks": state.store.count("tasks", {"project": p["id"]})} for p in projects]
    return {"items": items}


@router.get("/projects/{project_id}")
def get_project(project_id: str, state: State) -> Document:
    found = state.store.get(PROJECTS, project_id)
    if found is None:
        raise HTTPException(404, f"no project {project_id!r}")
    return found

