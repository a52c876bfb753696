"""Blobs (content-addressed, chunked resumable uploads) and the artifacts/models that point at them."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from fleetdeck.server_lite.blobs import BadBlob, OffsetMismatch
from fleetdeck.server_lite.deps import FastRoute, Principal, State
from fleetdeck.server_lite.names import BadName, check_name, check_sha256
from fleetdeck.server_lite.routes.tasks import load_task
from fleetdeck.server_lite.schemas import ArtifactCreate, UploadStart
from fleetdeck.server_lite.store.base import Document

router = APIRouter(tags=["blobs"], route_class=FastRoute)
ARTIFACTS = "artifacts"


def _sha(value: str) -> str:
    try:
        return check_sha256(value)
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None


@router.post("/blobs/uploads")
def start_upload(body: UploadStart, state: State, principal: Principal) -> dict[str, Any]:
    try:
        return state.blobs.begin(body.sha256, body.size)
    except BadBlob as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/blobs/uploads/{sha256}")
def upload_status(sha256: str, state: State, principal: Principal) -> dict[str, Any]:
    _sha(sha256)
    if state.blobs.exists(sha256):
        return {"sha256": sha256, "complete": True}
    try:
        size = state.blobs.expected_size(sha256)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    return state.blobs.begin(sha256, size)


@router.put("/blobs/uploads/{sha256}", openapi_extra={
    "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_chunk(sha256: str, request: Request, state: State, principal: Principal,
                       offset: Annotated[int, Query(ge=0)]) -> dict[str, Any]:
    _sha(sha256)
    try:
        new_offset = await state.blobs.write(sha256, offset, request.stream())
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    except OffsetMismatch as exc:
        raise HTTPException(409, {"message": f"upload of {sha256[:12]} is at byte {exc.expected}",
                                  "offset": exc.expected}) from None
    except BadBlob as exc:
        raise HTTPException(413, str(exc)) from None
    return {"sha256": sha256, "offset": new_offset}


@router.post("/blobs/uploads/{sha256}/complete")
def complete_upload(sha256: str, state: State, principal: Principal) -> dict[str, Any]:
    _sha(sha256)
    try:
        return state.blobs.complete(sha256)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    except OffsetMismatch as exc:
        raise HTTPException(409, {"message": f"upload of {sha256[:12]} is incomplete (byte {exc.expected})",
                                  "offset": exc.expected}) from None
    except BadBlob as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/blobs/{sha256}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_blob(sha256: str, state: State, principal: Principal) -> FileResponse:
    path = state.blobs.path(_sha(sha256))
    if not path.is_file():
        raise HTTPException(404, f"no blob {sha256[:12]}")
    return FileResponse(path, media_type="application/octet-stream")


@router.head("/blobs/{sha256}", include_in_schema=False)
def blob_exists(sha256: str, state: State, principal: Principal) -> None:
    if not state.blobs.exists(_sha(sha256)):
        raise HTTPException(404, f"no blob {sha256[:12]}")


def artifact_id(task_id: str, name: str, mode: str) -> str:
    return hashlib.sha256(f"{task_id}\0{mode}\0{name}".encode()).hexdigest()[:32]


@router.post("/tasks/{task_id}/artifacts", status_code=201)
def register_artifact(task_id: str, body: ArtifactCreate, state: State, principal: Principal) -> Document:
    """Register (or replace, by name) an artifact or model of a task; its blob must be uploaded first."""
    task = load_task(state, task_id)
    try:
        check_name(body.name, "artifact name")
    except BadName as exc:
        raise HTTPException(400, str(exc)) from None
    if body.sha256 is not None and not state.blobs.exists(body.sha256):
        raise HTTPException(409, f"blob {body.sha256[:12]} is not uploaded")
    doc = {**body.model_dump(), "id": artifact_id(task_id, body.name, body.mode), "task": task_id,
           "project": task["project"], "created": state.clock.now()}
    if body.sha256 is not None and body.size is None:
        doc["size"] = state.blobs.path(body.sha256).stat().st_size
    return state.store.upsert(ARTIFACTS, doc)


@router.get("/tasks/{task_id}/artifacts")
def list_artifacts(task_id: str, state: State, kind: str | None = None) -> dict[str, Any]:
    load_task(state, task_id)
    query: dict[str, Any] = {"task": task_id}
    if kind:
        query["kind"] = kind
    return {"items": state.store.find(ARTIFACTS, query, sort=[("created", 1)])}


@router.get("/models")
def list_models(state: State, project: str | None = None,
                page_size: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    from fleetdeck.server_lite.routes.projects import project_id_for

    query: dict[str, Any] = {"kind": "model"}
    if project:
        query["project"] = project_id_for(project)
    return {"items": state.store.find(ARTIFACTS, query, sort=[("created", -1)], limit=page_size)}
