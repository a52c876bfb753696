"""Token administration (admin role)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from fleetdeck.server_lite.auth import public
from fleetdeck.server_lite.deps import AdminOnly, State
from fleetdeck.server_lite.schemas import TokenCreate

router = APIRouter(tags=["tokens"], dependencies=[AdminOnly])


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, state: State) -> dict[str, Any]:
    doc, secret = state.tokens.create(body.name, body.role)
    return {**public(doc), "token": secret}


@router.get("/tokens")
def list_tokens(state: State) -> dict[str, Any]:
    return {"items": state.tokens.list()}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, state: State) -> None:
    if not state.tokens.revoke(token_id):
        raise HTTPException(404, f"no token {token_id!r}")
