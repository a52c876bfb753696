"""The datasets API of a real server: dedup queries, version numbers, finalize rules."""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleetdeck._dataset_manifest import FileEntry, encode
from fleetdeck.client import Client
from fleetdeck.errors import AuthError, NotFound, RequestRejected
from fleetdeck.server_lite.process import ServerProcess


def _upload(client: Client, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    client.upload_blob(io.BytesIO(data), sha256=sha, size=len(data))
    return sha


def test_missing_blobs_answers_for_many_at_once(client: Client) -> None:
    have = _upload(client, b"stored content")
    absent = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    answer = client.post("/blobs/missing", {"sha256": [absent[0], have, *absent, have]})
    assert answer["missing"] == absent, "each missing blob once, in request order"
    with pytest.raises(RequestRejected, match="sha256"):
        client.post("/blobs/missing", {"sha256": ["../../etc/passwd"]})


def _batch(pairs: list[tuple[str, bytes]]) -> bytes:
    head = json.dumps([[sha, len(data)] for sha, data in pairs]).encode()
    return len(head).to_bytes(8, "big") + head + b"".join(data for _, data in pairs)


def test_small_blobs_travel_many_to_a_request_and_are_verified(client: Client, server: ServerProcess) -> None:
    blobs = [os.urandom(100 + i) for i in range(50)]
    pairs = [(hashlib.sha256(b).hexdigest(), b) for b in blobs]
    headers = {"Content-Type": "application/octet-stream"}
    assert client.request("POST", "/blobs/batch", content=_batch(pairs), headers=headers) == \
        {"stored": 50, "present": 0}
    assert client.request("POST", "/blobs/batch", content=_batch(pairs), headers=headers) == \
        {"stored": 0, "present": 50}, "a retried batch is harmless"
    assert client.post("/blobs/missing", {"sha256": [sha for sha, _ in pairs]})["missing"] == []
    forged = [(hashlib.sha256(b"one").hexdigest(), b"one"), (hashlib.sha256(b"two").hexdigest(), b"tw0")]
    with pytest.raises(RequestRejected, match="does not hash to its sha256; 1 blobs before it were stored"):
        client.request("POST", "/blobs/batch", content=_batch(forged), headers=headers)
    assert client.post("/blobs/missing", {"sha256": [forged[1][0]]})["missing"] == [forged[1][0]]
    with pytest.raises(RequestRejected, match="add up to the body's length"):
        client.request("POST", "/blobs/batch", content=_batch(pairs)[:-1], headers=headers)
    for header in (b"[[1, 2]]", b'[["%s", 1e400]]' % forged[0][0].encode(), b"{not json", b'"text"'):
        with pytest.raises(RequestRejected, match="batch header is malformed"):
            client.request("POST", "/blobs/batch", content=len(header).to_bytes(8, "big") + header,
                           headers=headers)
    assert not list((server.data_dir / "blobs" / "uploads").glob("*.batch")), "no temp file left behind"


def test_concurrent_creates_get_distinct_consecutive_versions(client: Client, name: str) -> None:
    def create(_: int) -> int:
        return int(client.post("/datasets", {"name": name, "project": "api"})["version"])

    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(create, range(12)))
    assert versions == list(range(1, 13))
    other = client.post("/datasets", {"name": name, "project": "another-project"})
    assert other["version"] == 1, "numbering is per (project, name)"


def test_finalize_needs_a_manifest_whose_contents_are_all_stored(client: Client, name: str) -> None:
    draft = client.post("/datasets", {"name": name, "project": "api"})
    with pytest.raises(RequestRejected, match="has no uploaded manifest"):
        client.post(f"/datasets/{draft['id']}/finalize")
    stored = _upload(client, b"x" * 10)
    never_uploaded = hashlib.sha256(b"never uploaded").hexdigest()
    manifest = encode({"a": FileEntry(stored, 10, 0o644), "b": FileEntry(never_uploaded, 14, 0o755)})
    with pytest.raises(RequestRejected, match="is not uploaded"):
        client.request("PATCH", f"/datasets/{draft['id']}",
                       json={"manifest": hashlib.sha256(manifest).hexdigest()})
    sha = _upload(client, manifest)
    doc = client.request("PATCH", f"/datasets/{draft['id']}", json={"manifest": sha})
    assert (doc["files"], doc["size"], doc["added"]) == (2, 24, 2)
    with pytest.raises(RequestRejected, match="1 file contents .* are not uploaded"):
        client.post(f"/datasets/{draft['id']}/finalize")
    assert client.get(f"/datasets/{draft['id']}")["status"] == "draft"
    _upload(client, b"never uploaded")
    final = client.post(f"/datasets/{draft['id']}/finalize")
    assert final["status"] == "final" and final["finalized"] >= final["created"]
    assert client.post(f"/datasets/{draft['id']}/finalize") == final, "finalizing again is a no-op"


def test_bad_requests_are_named(client: Client, name: str) -> None:
    with pytest.raises(RequestRejected, match="dataset name must not contain"):
        client.post("/datasets", {"name": "a/b", "project": "api"})
    with pytest.raises(NotFound, match="no dataset version"):
        client.post("/datasets", {"name": name, "project": "api", "parents": ["0" * 32]})
    with pytest.raises(RequestRejected, match="parents"):
        client.post("/datasets", {"name": name, "project": "api", "parents": ["not-an-id"]})
    with pytest.raises(RequestRejected, match="colour: Extra inputs"):
        client.post("/datasets", {"name": name, "project": "api", "colour": "red"})


def test_datasets_need_a_token(server: ServerProcess) -> None:
    with Client(url=server.url, token="fd_wrong") as stranger:
        with pytest.raises(AuthError):
            stranger.get("/datasets")
        with pytest.raises(AuthError):
            stranger.post("/blobs/missing", {"sha256": []})
