"""Upload a run's spool to the server, in order and exactly once.

Used by the helper process during the run and by ``fleetdeck sync`` afterwards. Each record is
deleted only after the server acknowledged it; event batches carry a deterministic ``batch_id``
(the server drops a batch it has already committed) and every other write is idempotent (a PATCH
of the whole merged field, an artifact registered by name, a status already reached), so a record
that is sent twice — the uploader died between the server's answer and the delete — is applied once.

Only a task *creation* is not idempotent: its id is written to ``state.json`` right after the
server answers, so the window in which a crash could create the task twice is one file write.

Secrets are redacted here (:mod:`fleetdeck.redact`), at the single point where data leaves the
machine; the spool folder is readable by its owner only.
"""

from __future__ import annotations

import json
import math
import shutil
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdeck import redact
from fleetdeck.errors import AuthError, NotFound, RequestRejected, ServerError, ServerUnreachable
from fleetdeck.spool import PROCESS, Record, pending, read_header, read_record, read_state, write_state

if TYPE_CHECKING:  # pragma: no cover
    from fleetdeck.client import Client

MAX_POINTS_PER_REQUEST = 250_000
_MERGED = ("hyperparams", "configuration", "runtime", "environment", "script")
_SAFE_FILE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Retry(Exception):
    """The server is unreachable or failing; try the same record again later."""


class Uploader:
    """Sends the records of one run folder.

    Args:
        folder: the run's spool folder.
        client: the connection to use.
        log: receives one line per notable event (a rejected record, a resumed upload).
    """

    def __init__(self, folder: Path, client: Client, log: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.client = client
        self.log = log
        self.state = read_state(folder)
        self.state.setdefault("merged", {key: {} for key in _MERGED})

    @property
    def task_id(self) -> str | None:
        return self.state.get("task_id")

    def ordered(self, include_close: bool) -> list[Path]:
        """Pending records in upload order: a run's ``close`` records go last, and only when asked."""
        paths = pending(self.folder)
        creates = [p for p in paths if p.name == f"{PROCESS}{0:010d}.rec"]
        closes = [p for p in paths if _is_close(p)]
        rest = [p for p in paths if p not in closes and p not in creates]
        return creates + rest + (closes if include_close else [])

    def upload(self, include_close: bool = True) -> int:
        """Send every pending record (``close`` ones only with ``include_close``).

        Returns:
            the number of records sent.

        Raises:
            Retry: the server cannot be reached or failed; the records stay spooled.
            AuthError: the token was refused; retrying will not help.
        """
        sent = 0
        for path in self.ordered(include_close):
            try:
                record = read_record(path)
            except (ValueError, OSError) as exc:
                self._reject(path, f"unreadable record: {exc}")
                continue
            if record.header.get("kind") != "create" and not self.task_id:
                self.log(f"fleetdeck: {self.folder.name} has records but no task and no create record; "
                         "nothing can be uploaded")
                return sent
            try:
                self._apply(record)
            except Retry:
                raise
            except (ServerUnreachable, ServerError) as exc:
                raise Retry(str(exc)) from None
            except AuthError:
                raise
            except (RequestRejected, NotFound) as exc:
                self._reject(path, str(exc))
                continue
            path.unlink()
            sent += 1
        return sent

    def _reject(self, path: Path, reason: str) -> None:
        """Keep a record the server will never accept in ``rejected/`` and say why (never silently)."""
        target = self.folder / "rejected"
        target.mkdir(exist_ok=True)
        shutil.move(str(path), target / path.name)
        self.log(f"fleetdeck: record {path.name} of {self.folder.name} rejected: {reason}")

    def _save(self) -> None:
        write_state(self.folder, self.state)

    # -- records ---------------------------------------------------------------------------------

    def _apply(self, record: Record) -> None:
        kind = record.header.get("kind")
        handler = getattr(self, f"_apply_{kind}", None)
        if handler is None:
            raise RequestRejected(f"unknown record kind {kind!r}", 400)
        handler(record)

    def _apply_create(self, record: Record) -> None:
        header = record.header
        if self.task_id:
            return
        attach = header.get("attach")
        if attach:
            doc = self.client.get_task(attach)
            merged = self.state["merged"]
            for key in ("hyperparams", "configuration", "runtime"):
                merged[key] = doc.get(key) or {}
            self.state["task_id"] = attach
        else:
            doc = self.client.create_task(**header["fields"])
            self.state["task_id"] = doc["id"]
        self._save()
        if doc.get("status") != "in_progress":
            self._status("in_progress", "")
        self._update({"runtime": header.get("runtime") or {}})

    def _apply_update(self, record: Record) -> None:
        fields = dict(record.header.get("fields") or {})
        if record.header.get("runtime"):
            fields["runtime"] = record.header["runtime"]
        self._update(fields)

    def _apply_status(self, record: Record) -> None:
        self._status(record.header["status"], record.header.get("reason", ""))

    def _apply_close(self, record: Record) -> None:
        header = record.header
        fields: dict[str, Any] = {"runtime": header.get("runtime") or {}}
        if header.get("imported"):
            fields["environment"] = {"imported": header["imported"]}
            packages = self.state["merged"]["environment"].get("packages") or {}
            if packages:
                from fleetdeck._capture_env import imported_distributions

                imported = imported_distributions(header["imported"], packages)
                fields["environment"]["imported"] = imported
                fields["script"] = {"requirements": "".join(f"{line}\n" for line in imported)}
        self._update(fields)
        if header.get("status"):
            self._status(header["status"], redact.redact_text(header.get("reason", ""), self._known_secrets()))
        self.state["closed"] = True
        self._save()

    def _apply_artifact(self, record: Record) -> None:
        header = record.header
        path = Path(header["path"])
        if not path.is_absolute():
            path = self.folder / "files" / _safe_name(header["path"])
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise RequestRejected(f"artifact {header['name']!r}: file {path} no longer exists", 400) from None
        hashes = self.state.setdefault("hashes", {})
        cached = hashes.get(record.name)
        if cached and cached["size"] == size and cached["mtime"] == path.stat().st_mtime_ns:
            sha256 = cached["sha256"]
        else:
            from fleetdeck.client import sha256_file

            sha256 = sha256_file(path)
            hashes[record.name] = {"sha256": sha256, "size": size, "mtime": path.stat().st_mtime_ns}
            self._save()
        status = self.client.post("/blobs/uploads", {"sha256": sha256, "size": size}, idempotent=True)
        if not status.get("complete") and int(status.get("offset", 0)) > 0:
            self.log(f"fleetdeck: resuming upload of {header['name']!r} at byte {status['offset']} of {size}")
        try:
            self.client.upload_blob(path, sha256=sha256, size=size)
        except RequestRejected as exc:
            if exc.status_code != 409:
                raise
            # the server holds a different number of bytes than this attempt assumed (it died in
            # the middle of a chunk): ask it again on the next attempt and resume from there
            raise Retry(f"upload of {header['name']!r} out of step with the server: {exc}") from None
        self.client.add_artifact(self.task_id or "", name=header["name"], kind=header.get("artifact_kind", "artifact"),
                                 sha256=sha256, size=size, content_type=header.get("content_type", ""),
                                 metadata=header.get("metadata") or {})
        hashes.pop(record.name, None)
        self._save()
        if header.get("delete_after"):
            path.unlink(missing_ok=True)

    def _apply_events(self, record: Record) -> None:
        header = record.header
        open_blocks = self.state.setdefault("open_key_blocks", {})
        before = dict(open_blocks)
        console = redact.redact_console(header.get("console", []), self._known_secrets(), open_blocks)
        if open_blocks != before:
            self._save()
        events, files = self._events(header.get("events", []))
        requests = list(_split_scalars(header.get("scalars", []), record.payload))
        if not requests:
            requests = [[]]
        for index, scalars in enumerate(requests):
            batch: dict[str, Any] = {"batch_id": f"{header['batch_id']}.{index}", "scalars": scalars}
            if index == 0:
                batch["console"] = console
                batch["events"] = events
            body = _dumps(batch)
            self.client.request("POST", f"/tasks/{self.task_id}/events", content=body, idempotent=True,
                                headers={"Content-Type": "application/json"}, timeout=120.0)
        for file in files:
            file.unlink(missing_ok=True)

    def _events(self, raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Path]]:
        """Upload the images that events point at; returns the wire events and the files to delete."""
        events: list[dict[str, Any]] = []
        files: list[Path] = []
        for event in raw:
            event = dict(event)
            data = event.get("data")
            if event.get("kind") == "image" and isinstance(data, dict) and "file" in data:
                path = self.folder / "files" / _safe_name(str(data["file"]))
                if not path.exists():
                    self.log(f"fleetdeck: debug image {path.name} is missing; event kept without it")
                else:
                    event["sha256"] = self.client.upload_blob(path)["sha256"]
                    files.append(path)
                event["data"] = {"filename": path.name}
            if event.get("kind") == "text" and isinstance(data, dict):
                event["data"] = {**data, "text": redact.redact_text(str(data.get("text", "")), self._known_secrets())}
            events.append(event)
        return events, files

    # -- helpers ---------------------------------------------------------------------------------

    def _known_secrets(self) -> list[str]:
        """Secret values this run declared by name (parameters, env vars, argv), to mask anywhere."""
        merged = self.state["merged"]
        runtime = merged.get("runtime") or {}
        return redact.known_secrets(merged.get("hyperparams"), runtime.get("env"), runtime.get("argv") or ())

    def _update(self, fields: dict[str, Any]) -> None:
        """PATCH the task with ``fields``; dict fields are merged with what earlier records set."""
        if not fields:
            return
        merged = self.state["merged"]
        body: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _MERGED and isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
                body[key] = merged[key]
            else:
                body[key] = value
        self.client.update_task(self.task_id or "", **_redacted(body, self._known_secrets()))
        self._save()

    def _status(self, status: str, reason: str) -> None:
        try:
            self.client.set_status(self.task_id or "", status, reason[-10_000:])
        except RequestRejected as exc:
            if exc.status_code != 409:
                raise
            self.log(f"fleetdeck: status of task {self.task_id} not changed to {status}: {exc}")


def _dumps(value: Any) -> bytes:
    """JSON bytes; orjson when installed (a 250k-point batch encodes ~10x faster), else the stdlib."""
    try:
        import orjson
    except ImportError:
        return json.dumps(value, separators=(",", ":")).encode()
    return orjson.dumps(value)


def _redacted(body: dict[str, Any], known: list[str]) -> dict[str, Any]:
    out = dict(body)
    if "hyperparams" in out:
        out["hyperparams"] = redact.redact_hyperparams(out["hyperparams"])
    if "configuration" in out:
        out["configuration"] = {name: {**item, "value": redact.redact_text(str(item.get("value", "")), known)}
                                for name, item in out["configuration"].items()}
    if "runtime" in out:
        runtime = dict(out["runtime"])
        if isinstance(runtime.get("env"), dict):
            runtime["env"] = redact.redact_mapping(runtime["env"])
        if isinstance(runtime.get("argv"), list):
            runtime["argv"] = redact.redact_argv([str(a) for a in runtime["argv"]])
        out["runtime"] = runtime
    if "script" in out:
        script = dict(out["script"])
        for key in ("diff", "code", "repository"):
            if isinstance(script.get(key), str):
                script[key] = redact.redact_text(script[key], known)
        out["script"] = script
    return out


def _split_scalars(groups: list[dict[str, Any]], payload: bytes) -> Any:
    """Decode the binary columns and yield lists of series of at most ``MAX_POINTS_PER_REQUEST`` points."""
    offset = 0
    current: list[dict[str, Any]] = []
    size = 0
    for group in groups:
        n = int(group["n"])
        iterations, values, times = array("q"), array("d"), array("d")
        iterations.frombytes(payload[offset:offset + 8 * n])
        values.frombytes(payload[offset + 8 * n:offset + 16 * n])
        times.frombytes(payload[offset + 16 * n:offset + 24 * n])
        offset += 24 * n
        for start in range(0, n, MAX_POINTS_PER_REQUEST):
            stop = min(n, start + MAX_POINTS_PER_REQUEST)
            if size and size + (stop - start) > MAX_POINTS_PER_REQUEST:
                yield current
                current, size = [], 0
            vals = values[start:stop].tolist()
            if not math.isfinite(sum(vals)):
                vals = [v if math.isfinite(v) else None for v in vals]
            current.append({"metric": group["metric"], "variant": group["variant"],
                            "iterations": iterations[start:stop].tolist(), "values": vals,
                            "timestamps": times[start:stop].tolist()})
            size += stop - start
    if current:
        yield current


def _is_close(path: Path) -> bool:
    try:
        return read_header(path).get("kind") == "close"
    except (ValueError, OSError):
        return False


def _safe_name(name: str) -> str:
    """A spool-local file name, refused if it could point outside ``files/``."""
    if not name or name.startswith(".") or not set(name) <= _SAFE_FILE:
        raise RequestRejected(f"unsafe file name in spool record: {name!r}", 400)
    return name
