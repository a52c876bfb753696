"""The one HTTP client of fleetdeck: used by the SDK, the agent, the fleet manager, CLI and TUI.

Idempotent requests (GET, PUT, DELETE, and POSTs that carry an idempotency key such as an event
``batch_id``) are retried with exponential backoff on connection errors and 502/503/504. Every
failure becomes a :class:`~fleetdeck.errors.FleetdeckError` whose message names the problem.
"""

from __future__ import annotations

import atexit
import hashlib
import json as _json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable

import httpx

try:  # optional: an SDK installed in a training environment may not have it
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None  # type: ignore[assignment]

from fleetdeck.config import ClientSettings
from fleetdeck.errors import AuthError, NotFound, RequestRejected, ServerError, ServerUnreachable

CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes per blob upload request; an interrupted upload resumes from the last whole chunk."""

_RETRY_STATUS = {502, 503, 504}

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just transferred."""


class Client:
    """A connection to one fleetdeck server.

    Args:
        url: server base URL; defaults to the configured one.
        token: bearer token; defaults to the configured one.
        settings: fully resolved settings (overrides ``url``/``token``).
    """

    def __init__(self, url: str | None = None, token: str | None = None,
                 settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings.load(url=url, token=token)
        headers = {"User-Agent": "fleetdeck-client"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        self._http = httpx.Client(base_url=self.settings.url, headers=headers,
                                  timeout=self.settings.timeout_s)

    @property
    def url(self) -> str:
        return self.settings.url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                content: bytes | None = None, headers: Mapping[str, str] | None = None,
                idempotent: bool | None = None, timeout: float | None = None) -> Any:
        """Send one request and return the decoded JSON body (None for 204).

        Raises:
            ServerUnreachable, AuthError, NotFound, RequestRejected, ServerError.
        """
        retry = idempotent if idempotent is not None else method in ("GET", "PUT", "DELETE", "HEAD")
        attempts = self.settings.retries + 1 if retry else 1
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        if json is not None:
            content = _encode_json(json)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, params=clean_params, content=content,
                                              headers=headers, timeout=timeout or self.settings.timeout_s)
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    time.sleep(min(0.2 * 2 ** attempt, 2.0))
                    continue
                raise ServerUnreachable(f"cannot reach fleetdeck server at {self.url}: {_reason(exc)}") from None
            if response.status_code in _RETRY_STATUS and attempt + 1 < attempts:
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
                continue
            if response.status_code == 401 and not self.settings.token:
                raise AuthError(f"no API token configured for {self.url}: set FLEETDECK_API_TOKEN or "
                                "[server] token in the config file")
            return _decode(response, method, path)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    # -- server ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.get("/health")

    # -- projects and tasks ----------------------------------------------------------------

    def create_project(self, name: str, description: str = "") -> dict[str, Any]:
        return self.post("/projects", {"name": name, "description": description})

    def list_projects(self) -> list[dict[str, Any]]:
        return self.get("/projects")["items"]

    def create_task(self, **fields: Any) -> dict[str, Any]:
        return self.post("/tasks", fields)

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.get(f"/tasks/{_seg(task_id)}")

    def update_task(self, task_id: str, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/tasks/{_seg(task_id)}", json=fields, idempotent=True)

    def set_status(self, task_id: str, status: str, reason: str = "", force: bool = False) -> dict[str, Any]:
        return self.post(f"/tasks/{_seg(task_id)}/status", {"status": status, "reason": reason, "force": force})

    def list_tasks(self, **filters: Any) -> dict[str, Any]:
        """One page of tasks: ``{"items": [...], "next_page": token | None, "total": n}``."""
        return self.get("/tasks", **filters)

    def iter_tasks(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """All tasks matching the filters, following page tokens."""
        page: str | None = None
        while True:
            result = self.list_tasks(**filters, page_token=page)
            yield from result["items"]
            page = result.get("next_page")
            if not page:
                return

    # -- events ----------------------------------------------------------------------------

    def post_events(self, task_id: str, batch: dict[str, Any]) -> dict[str, Any]:
        """Send one event batch; with a ``batch_id`` it is safe to resend (applied exactly once)."""
        return self.request("POST", f"/tasks/{_seg(task_id)}/events", json=batch,
                            idempotent="batch_id" in batch)

    def list_series(self, task_id: str) -> list[dict[str, Any]]:
        return self.get(f"/tasks/{_seg(task_id)}/scalars")["items"]

    def get_series(self, task_id: str, metric: str, variant: str, max_points: int | None = None) -> dict[str, Any]:
        return self.get(f"/tasks/{_seg(task_id)}/scalars/series", metric=metric, variant=variant,
                        max_points=max_points)

    def get_console(self, task_id: str, start: int = 0, limit: int = 1000) -> dict[str, Any]:
        return self.get(f"/tasks/{_seg(task_id)}/console", start=start, limit=limit)

    def get_events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self.get(f"/tasks/{_seg(task_id)}/events", kind=kind)["items"]

    # -- blobs and artifacts ---------------------------------------------------------------

    def upload_blob(self, source: str | os.PathLike[str] | BinaryIO, *, sha256: str | None = None,
                    size: int | None = None, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Upload a file in chunks, resuming where the server stopped; returns ``{sha256, size}``.

        The file is streamed twice at most (once to hash it when ``sha256`` is not given, once to
        send it) and never held in memory whole.
        """
        path = Path(source) if isinstance(source, (str, os.PathLike)) else None
        if path is not None:
            size = path.stat().st_size if size is None else size
            sha256 = sha256 or sha256_file(path)
        if sha256 is None or size is None:
            raise ValueError("upload_blob of a stream needs sha256 and size")
        state = self.post("/blobs/uploads", {"sha256": sha256, "size": size}, idempotent=True)
        if state.get("complete"):
            if progress:
                progress(size)
            return {"sha256": sha256, "size": size}
        offset = int(state["offset"])
        fh: BinaryIO = path.open("rb") if path is not None else source  # type: ignore[assignment]
        try:
            fh.seek(offset)
            if progress and offset:
                progress(offset)
            while offset < size:
                chunk = fh.read(CHUNK_SIZE)
                if not chunk:
                    raise RequestRejected(f"source ended at byte {offset} of {size}", 400)
                result = self.request("PUT", f"/blobs/uploads/{sha256}", content=chunk,
                                      params={"offset": offset}, timeout=max(self.settings.timeout_s, 60.0),
                                      headers={"Content-Type": "application/octet-stream"})
                offset = int(result["offset"])
                if progress:
                    progress(len(chunk))
        finally:
            if path is not None:
                fh.close()
        return self.post(f"/blobs/uploads/{sha256}/complete", idempotent=True)

    def download_blob(self, sha256: str, target: str | os.PathLike[str],
                      progress: ProgressCallback | None = None) -> Path:
        """Stream a blob to ``target`` and verify its sha256; a mismatch deletes the file and raises."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", f"/blobs/{_seg(sha256)}", timeout=max(self.settings.timeout_s, 60.0)) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _decode(resp, "GET", f"/blobs/{sha256}")
                with partial.open("wb") as out:
                    for chunk in resp.iter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        digest.update(chunk)
                        if progress:
                            progress(len(chunk))
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ServerUnreachable(f"download of blob {sha256[:12]} from {self.url} failed: {_reason(exc)}") from None
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise ServerError(f"blob {sha256[:12]} arrived corrupted (sha256 mismatch)", 502)
        os.replace(partial, target)
        return target

    def add_artifact(self, task_id: str, **artifact: Any) -> dict[str, Any]:
        return self.post(f"/tasks/{_seg(task_id)}/artifacts", artifact, idempotent=True)

    # -- tokens (admin) ---------------------------------------------------------------------

    def create_token(self, name: str, role: str = "user") -> dict[str, Any]:
        """A new token record; its ``token`` secret is returned this once and never again."""
        return self.post("/tokens", {"name": name, "role": role})

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.get("/tokens")["items"]

    def revoke_token(self, token_id: str) -> None:
        self.request("DELETE", f"/tokens/{_seg(token_id)}")

    # -- queues and workers ----------------------------------------------------------------

    def create_queue(self, name: str) -> dict[str, Any]:
        return self.post("/queues", {"name": name}, idempotent=True)

    def list_queues(self) -> list[dict[str, Any]]:
        return self.get("/queues")["items"]

    def enqueue(self, task_id: str, queue: str, priority: int = 0) -> dict[str, Any]:
        return self.post(f"/queues/{_seg(queue)}/entries", {"task_id": task_id, "priority": priority})

    def remove_from_queue(self, queue: str, task_id: str) -> None:
        """Take a waiting task off a queue (it becomes a draft again)."""
        self.request("DELETE", f"/queues/{_seg(queue)}/entries/{_seg(task_id)}")

    def dequeue(self, queues: list[str], worker: str, wait_s: float = 0.0) -> dict[str, Any] | None:
        """Atomically take the next task from the first non-empty queue, long-polling up to ``wait_s``."""
        result = self.post("/queues/dequeue", {"queues": queues, "worker": worker, "wait_s": wait_s},
                           timeout=self.settings.timeout_s + wait_s)
        return result.get("task")

    def heartbeat(self, worker: str, **status: Any) -> dict[str, Any]:
        return self.request("PUT", f"/workers/{_seg(worker)}", json=status)

    def list_workers(self) -> list[dict[str, Any]]:
        return self.get("/workers")["items"]


def _encode_json(value: Any) -> bytes:
    """Request bodies as JSON: orjson when the environment has it (metric batches are large)."""
    if _orjson is not None:
        return _orjson.dumps(value, option=_orjson.OPT_SERIALIZE_NUMPY | _orjson.OPT_NON_STR_KEYS)
    return _json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def _decode_json(data: bytes) -> Any:
    return _orjson.loads(data) if _orjson is not None else _json.loads(data)


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK_SIZE) -> str:
    """Hash a file by streaming it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _seg(value: str) -> str:
    """Quote one URL path segment so an id or name can never add path components."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _decode(response: httpx.Response, method: str, path: str) -> Any:
    status = response.status_code
    if status < 400:
        if status == 204 or not response.content:
            return None
        return _decode_json(response.content)
    message = _error_message(response)
    where = f"{method} {path}"
    if status in (401, 403):
        raise AuthError(f"server refused the token ({status}): {message}")
    if status == 404:
        raise NotFound(message)
    if status < 500:
        raise RequestRejected(f"{where} rejected ({status}): {message}", status)
    raise ServerError(f"{where} failed on the server ({status}): {message}", status)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # pydantic validation errors
        parts = []
        for err in detail[:3]:
            if isinstance(err, dict):
                loc = ".".join(str(x) for x in err.get("loc", []) if x != "body")
                parts.append(f"{loc}: {err.get('msg', '')}")
        return "; ".join(parts) or str(detail)
    return str(detail)


_shared: dict[tuple[str, str | None], Client] = {}
_shared_lock = threading.Lock()


def shared_client() -> Client:
    """One client per configured server for the whole process, closed when the process exits.

    SDK handles (``Task.get_task``, datasets) are many; their connections should not be.
    """
    settings = ClientSettings.load()
    key = (settings.url, settings.token)
    with _shared_lock:
        if key not in _shared:
            if not _shared:
                atexit.register(_close_shared)
            _shared[key] = Client(settings=settings)
        return _shared[key]


def _close_shared() -> None:
    with _shared_lock:
        while _shared:
            _shared.popitem()[1].close()
