"""The ASGI application: routers, authentication, body limits and error mapping.

Every route but ``/health`` requires a bearer token, ``/openapi.json`` included
(``tests/server_lite/test_auth.py`` walks the route table to prove it). Errors always come back as JSON ``{"detail": ...}``: a user's mistake is
a 4xx naming the problem; a full disk is a 507 and the write was not acknowledged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetdeck._version import __version__
from fleetdeck.server_lite.deps import authenticated
from fleetdeck.server_lite.names import BadName
from fleetdeck.server_lite.routes import blobs, events, projects, queues, tasks, tokens
from fleetdeck.server_lite.routes import datasets
from fleetdeck.server_lite.routes import fleet
from fleetdeck.server_lite.routes import costs
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.store.base import BadDocument, StoreError, StoreFull

log = logging.getLogger("fleetdeck.server")

ROUTERS = [projects.router, tasks.router, events.router, blobs.router, queues.router, tokens.router, datasets.router,
           fleet.router, costs.router]
"""Every authenticated router; a feature adds its router here."""


def create_app(state: ServerState, extra_routers: list[Any] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.notifier.bind(asyncio.get_running_loop())
        yield

    # The schema is served by an authenticated route below; the browser docs pages are off
    # (they cannot send a bearer token, and they load their scripts from a CDN). No slash redirects:
    # a decoded ``%2F`` in an id would otherwise be answered with a redirect to a path it chose.
    app = FastAPI(title="fleetdeck server", version=__version__, lifespan=lifespan,
                  description="Experiment tracking, queues and fleet state for fleetdeck.",
                  openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    app.state.fleetdeck = state

    @app.get("/health", tags=["server"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authenticated)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    for router in [*ROUTERS, *(extra_routers or [])]:
        app.include_router(router, dependencies=[Depends(authenticated)])

    @app.exception_handler(StoreFull)
    async def _full(request: Request, exc: StoreFull) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.exception_handler(BadDocument)
    async def _bad_document(request: Request, exc: BadDocument) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        # A file operation no module mapped to a StoreError: still a clear 507/503, never a 500.
        log.error("%s %s: %s", request.method, request.url.path, exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JSONResponse({"detail": "disk full: the request was not stored"}, status_code=507)
        return JSONResponse({"detail": f"storage unavailable: {exc.strerror or exc}"}, status_code=503)

    @app.exception_handler(BadName)
    async def _bad_name(request: Request, exc: BadName) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    app.add_middleware(BodyLimit, default_limit=state.max_body_bytes, chunk_limit=state.max_chunk_bytes)
    return app


class BodyLimit:
    """Refuse request bodies over the limit with 413 before they are buffered.

    Blob chunk uploads (``PUT /blobs/uploads/...``) get their own, larger limit.
    """

    def __init__(self, app: ASGIApp, default_limit: int, chunk_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.chunk_limit = chunk_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_chunk = scope["method"] == "PUT" and scope["path"].startswith("/blobs/uploads/")
        limit = self.chunk_limit if is_chunk else self.default_limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if too_big:
                await _reply(send, 413, f"request body over the {limit} byte limit")
                return
        seen = 0
        started = False
        exceeded = False
        message_413 = f"request body over the {limit} byte limit"

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # The app may catch _TooLarge while parsing the body and answer 400 (FastAPI does):
            # once the limit is exceeded, whatever it answers is replaced by the 413.
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reply(send, 413, message_413)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, message_413)


class _TooLarge(Exception):
    pass


async def _reply(send: Send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
