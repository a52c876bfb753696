"""Request dependencies: the server state and the caller's verified token; the fast route class."""

from __future__ import annotations

from typing import Annotated, Any

from collections.abc import Callable, Coroutine

import orjson
from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
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
    enforce_scope(request, principal)
    return principal


def enforce_scope(request: Request, principal: dict[str, Any]) -> None:
    """Keep task tokens inside their task, and refuse writes under a lease that is gone.

    A ``task`` token (minted per lease for one job) reaches only ``/tasks/<its id>/...`` and blob
    uploads/downloads. A write that names a lease (the task token's own, or an agent's
    ``X-Fleetdeck-Lease`` header) is refused with 409 once that lease is no longer the task's.
    """
    from fleetdeck.server_lite import leases

    task_id = request.path_params.get("task_id")
    if principal["role"] == leases.TASK_ROLE:
        if task_id != principal.get("task_id") and not request.url.path.startswith("/blobs"):
            raise HTTPException(403, "a task token only reaches its own task")
        lease_id = principal.get("lease_id")
    else:
        lease_id = request.headers.get(leases.LEASE_HEADER)
    if lease_id and task_id and request.method not in ("GET", "HEAD"):
        try:
            leases.check(get_state(request), task_id, lease_id)
        except leases.LeaseLost as exc:
            raise HTTPException(409, str(exc)) from None


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


class _OrjsonRequest(Request):
    """A request whose JSON body is parsed by orjson (several times faster than ``json.loads``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class FastRoute(APIRoute):
    """Routes of the hot paths (event ingest, task create/list): JSON bodies parsed with orjson.

    A malformed body still becomes FastAPI's 422 naming the problem: orjson raises a
    ``ValueError`` subclass, which FastAPI maps exactly as it does for ``json.loads``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return handle
