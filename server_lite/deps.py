"""Request dependencies: the server state and the caller's verified token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleetdeck.server_lite.auth import ROLE_RANK
from fleetdeck.server_lite.state import ServerState

_bearer = HTTPBearer(auto_error=False, description="A fleetdeck token (`fleetdeck token create`)")


def get_state(request: Request) -> ServerState:
    return request.app.state.fleetdeck  # type: ignore[no-any-return]


State = Annotated[ServerState, Depends(get_state)]


def authenticated(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> dict[str, Any]:
    """The caller's token record; 401 without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    principal = get_state(request).tokens.verify(credentials.credentials)
    if principal is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


Principal = Annotated[dict[str, Any], Depends(authenticated)]


def require(role: str) -> Any:
    """A dependency that admits tokens of ``role`` or higher."""

    def check(principal: Principal) -> dict[str, Any]:
        if ROLE_RANK[principal["role"]] < ROLE_RANK[role]:
            raise HTTPException(403, f"this action needs the {role} role; the token has {principal['role']}")
        return principal

    return Depends(check)


AdminOnly = require("admin")
UserOrAdmin = require("user")
