"""Bad input against a real server: generated requests (schemathesis) and a path-traversal corpus.

No input may produce a 5xx, and no name, id or hash a client sends may make the server touch a file
outside its data directory.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess

EXAMPLES = 12
"""Examples per operation and generation mode: bounded so the whole walk stays under a minute."""

MAX_WAIT_S = 0.2
"""Long-poll waits in generated requests are clamped to this, so a generated ``wait_s=60`` costs nothing."""


def _clamp_waits(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (min(v, MAX_WAIT_S) if k.endswith("wait_s") and isinstance(v, (int, float)) and not
                    isinstance(v, bool) else _clamp_waits(v)) for k, v in value.items()}
    return value


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(server: ServerProcess, client: Client) -> None:
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json"))
    failures: list[str] = []
    operations = 0
    with httpx.Client(base_url=server.url, headers=auth, timeout=15) as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                try:
                    strategy = operation.as_strategy(generation_mode=mode)
                except Exception as exc:  # noqa: BLE001 - an operation schemathesis cannot negate
                    if mode is schemathesis.GenerationMode.NEGATIVE:
                        continue
                    raise AssertionError(f"{operation.label}: {exc}") from exc

                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def check(case: Any) -> None:
                    kwargs = case.as_transport_kwargs(base_url=server.url)
                    body = kwargs.get("json")
                    if body is not None:
                        kwargs["json"] = _clamp_waits(body)
                    params = kwargs.get("params")
                    if isinstance(params, dict):
                        kwargs["params"] = _clamp_waits(params)
                    headers = {**(kwargs.pop("headers", None) or {}), **auth}
                    kwargs.pop("cookies", None)
                    kwargs.pop("url", None)
                    if isinstance(kwargs.get("data"), (bytes, str)):  # requests-style raw body
                        kwargs["content"] = kwargs.pop("data")
                    try:
                        response = http.request(case.method, case.formatted_path, headers=headers,
                                                **{k: v for k, v in kwargs.items()
                                                   if k in ("params", "json", "content", "data", "files")})
                    except httpx.TransportError as exc:
                        failures.append(f"{case.method} {case.formatted_path} -> {exc!r} "
                                        f"(server alive: {server.proc.poll() is None}, query {kwargs.get('params')!r}, "
                                        f"body {str(kwargs.get('json') or kwargs.get('content'))[:300]!r})")
                        return
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code} "
                                        f"{response.text[:200]!r} (query {kwargs.get('params')!r}, "
                                        f"body {str(kwargs.get('json') or kwargs.get('content'))[:200]!r})")

                try:
                    check()
                except Unsatisfiable:
                    if mode is schemathesis.GenerationMode.POSITIVE:
                        raise  # nothing to negate in an operation without inputs is fine; no valid input is not
    assert operations >= 20
    assert failures == [], "\n".join(failures[:10])
    assert httpx.get(f"{server.url}/health").status_code == 200


# -- path traversal --------------------------------------------------------------------------

CORPUS = [
    "..", ".", "../", "../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/passwd", "/tmp/fd-evil",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252fetc%252fpasswd", "..%2f..%2fsecret", "..%5c..%5csecret",
    "a\x00b", "evil.txt\x00.png", "a\\..\\..\\b", "C:\\Windows\\evil", "x/../../y", "./././x",
    "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fsecret",  # fullwidth ../ (NFKC folds it to ../)
    "\u2025\u2215secret", "..\u2215..\u2215secret", "\u202egnp.exe", "~/.ssh/authorized_keys",
    "a" * 5000, "\u00e9" * 300, " ", "", "\r\nX-Injected: 1", "${HOME}", "$(touch /tmp/fd-pwned)",
]
"""Names, ids and hashes that would escape or confuse a naive path join or shell."""


def snapshot(root: Path, skip: set[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``root`` except those under ``skip``."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for name in files:
            path = Path(folder, name)
            if path not in skip:
                st_ = path.lstat()
                out[str(path)] = (st_.st_size, st_.st_mtime_ns)
    return out


def raw_request(server: ServerProcess, method: str, raw_path: str, body: bytes | None = None) -> int:
    """Send the path bytes verbatim (no client-side normalisation of ``..`` or escapes)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.putrequest(method, raw_path, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_path_traversal_corpus_is_refused_or_neutralised(server: ServerProcess, client: Client,
                                                         tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not touch")
    watched = tmp_path.parent  # the test's tmp dir and its siblings
    skip = {server.data_dir, server.log_path}
    before = snapshot(watched, skip)
    etc_passwd = os.stat("/etc/passwd").st_mtime_ns
    task = client.create_task(name="victim", project="p")
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    statuses: dict[str, list[int]] = {}

    def record(kind: str, status: int) -> None:
        assert status < 500, f"{kind}: server error {status}"
        statuses.setdefault(kind, []).append(status)

    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
        for bad in CORPUS:
            seg = quote(bad, safe="")
            # ids and hashes must be refused outright ("." and ".." segments are collapsed by
            # every HTTP client, httpx included; the raw requests below send them as they are)
            for method, path in () if bad in (".", "..") else (("GET", f"/tasks/{seg}"), ("POST", f"/tasks/{seg}/events"),
                                 ("GET", f"/blobs/{seg}"), ("PUT", f"/blobs/uploads/{seg}?offset=0"),
                                 ("POST", f"/blobs/uploads/{seg}/complete"), ("GET", f"/projects/{seg}")):
                response = http.request(method, path, json={} if method == "POST" else None,
                                        content=b"x" if method == "PUT" else None)
                record("id", response.status_code)
                assert 400 <= response.status_code < 500, f"{method} {path} -> {response.status_code}"
                assert "do not touch" not in response.text
            response = http.post("/blobs/uploads", json={"sha256": bad, "size": 1})
            assert response.status_code == 422, f"sha256 {bad!r} -> {response.status_code}"
            # names are refused, or kept as plain data (the server never builds a path from them)
            for method, path, body in (
                    ("POST", "/projects", {"name": bad}),
                    ("POST", "/tasks", {"name": bad, "project": "p"}),
                    ("POST", "/tasks", {"name": "t", "project": bad}),
                    ("POST", f"/tasks/{task['id']}/artifacts", {"name": bad, "uri": bad}),
                    ("POST", "/queues", {"name": bad}),
                    ("POST", f"/queues/{seg}/entries", {"task_id": task["id"]}),
                    ("PUT", f"/workers/{seg}", {"host": bad})):
                response = http.request(method, path, json=body)
                record("name", response.status_code)
                if response.status_code < 300 and path == "/tasks" and body["name"] == bad:
                    assert client.get_task(response.json()["id"])["name"] == bad, "kept verbatim"
            # the same through raw, unnormalised request lines
            for raw in (f"/tasks/{bad}", f"/blobs/{bad}", f"/blobs/../../{bad}", f"/tasks/../blobs/{bad}"):
                if any(c in raw for c in "\x00\r\n ") or len(raw) > 4000 or not raw.isascii():
                    continue  # http.client refuses these itself (they went through quoted above)
                record("raw", raw_request(server, "GET", raw))
    assert statuses["id"] and statuses["name"] and statuses["raw"]
    assert snapshot(watched, skip) == before, "a file outside the data dir was written or changed"
    assert os.stat("/etc/passwd").st_mtime_ns == etc_passwd
    assert not Path("/tmp/fd-evil").exists() and not Path("/tmp/fd-pwned").exists()
    assert secret.read_text() == "do not touch"
    for path in server.data_dir.rglob("*"):
        assert path.resolve().is_relative_to(server.data_dir.resolve())
