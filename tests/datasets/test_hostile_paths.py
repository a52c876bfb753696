"""Hostile paths are refused on add, by the server, and on get; nothing is written outside the target."""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from pathlib import Path

import pytest

from fleetdeck import Dataset
from fleetdeck._dataset_manifest import BadManifest, FileEntry, HostilePath, decode, encode, pack
from fleetdeck.client import Client
from fleetdeck.errors import RequestRejected

from .trees import read_tree, write_tree

SHA = "ab" * 32


def _raw_manifest(lines: list[str]) -> bytes:
    """A manifest built by hand from ``sha<TAB>size<TAB>mode<TAB>path`` lines, bypassing every check."""
    rows = [line.split("\t", 3) for line in lines]
    return pack([r[3] for r in rows], [FileEntry(r[0], int(r[1]), int(r[2], 8)) for r in rows])


def _draft_with_file(client: Client, name: str, tmp_path: Path) -> Dataset:
    draft = Dataset.create(name, "hostile", client=client)
    draft.add_files(write_tree(tmp_path / "ok", {"keep.txt": b"keep"}))
    return draft


def test_symlink_leading_out_of_the_root_is_refused_on_add(client: Client, name: str, tmp_path: Path) -> None:
    secret = write_tree(tmp_path / "outside", {"secret.txt": b"password"}) / "secret.txt"
    root = write_tree(tmp_path / "data", {"a.txt": b"a"})
    (root / "innocent.txt").symlink_to(secret)
    draft = _draft_with_file(client, name, tmp_path)
    with pytest.raises(HostilePath, match="symlink leading out of"):
        draft.add_files(root)
    assert draft.list_files() == ["keep.txt"], "a refused add changes nothing"


def test_symlink_inside_the_root_is_stored_as_its_content(client: Client, name: str, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "data", {"a.txt": b"a"})
    (root / "alias.txt").symlink_to(root / "a.txt")
    draft = Dataset.create(name, "hostile", client=client)
    draft.add_files(root)
    assert draft.file_entry("alias.txt") == draft.file_entry("a.txt")


@pytest.mark.parametrize("dataset_path", ["../up", "/etc", "a/../../b", "C:/windows", "a\\..\\b"])
def test_dataset_path_that_climbs_out_is_refused(client: Client, name: str, tmp_path: Path,
                                                  dataset_path: str) -> None:
    draft = _draft_with_file(client, name, tmp_path)
    with pytest.raises(HostilePath):
        draft.add_files(tmp_path / "ok", dataset_path=dataset_path)
    assert draft.list_files() == ["keep.txt"]


def test_names_differing_only_by_case_are_refused(client: Client, name: str, tmp_path: Path) -> None:
    draft = _draft_with_file(client, name, tmp_path)
    with pytest.raises(HostilePath, match="'keep.txt' and 'KEEP.txt' differ only by case"):
        draft.add_files(write_tree(tmp_path / "upper", {"KEEP.txt": b"other"}))
    assert draft.list_files() == ["keep.txt"]


def test_names_differing_only_by_unicode_normalisation_are_refused(client: Client, name: str,
                                                                    tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9.txt", unicodedata.normalize("NFD", "caf\u00e9.txt")
    draft = _draft_with_file(client, name, tmp_path)
    with pytest.raises(HostilePath, match="differ only by Unicode normalisation"):
        draft.add_files(write_tree(tmp_path / "both", {composed: b"1", decomposed: b"2"}))
    assert draft.list_files() == ["keep.txt"]
    # one name stored in NFD on disk (as macOS writes it) is kept in NFC form and replaces its twin
    draft.add_files(write_tree(tmp_path / "nfc", {composed: b"1"}))
    draft.add_files(write_tree(tmp_path / "mac", {decomposed: b"4"}))
    assert draft.list_files() == [composed, "keep.txt"]
    assert draft.file_entry(composed).sha256 == hashlib.sha256(b"4").hexdigest()


def test_file_that_is_also_a_folder_is_refused(client: Client, name: str, tmp_path: Path) -> None:
    draft = _draft_with_file(client, name, tmp_path)
    with pytest.raises(HostilePath, match="is a file and also a folder"):
        draft.add_files(write_tree(tmp_path / "nested", {"inner.txt": b"x"}), dataset_path="keep.txt")


def test_server_refuses_a_hand_made_hostile_manifest(client: Client, name: str) -> None:
    draft = Dataset.create(name, "hostile", client=client)
    cases = [([f"{SHA}\t1\t644\t../../etc/passwd"], "'..' part"),
             ([f"{SHA}\t1\t644\t/abs"], "absolute"),
             ([f"{SHA}\t1\t644\tA.txt", f"{SHA}\t1\t644\ta.txt"], "differ only by case")]
    for lines, reason in cases:
        blob = _raw_manifest(lines)
        sha = hashlib.sha256(blob).hexdigest()
        client.upload_blob(io.BytesIO(blob), sha256=sha, size=len(blob))
        with pytest.raises(RequestRejected, match=reason):
            client.request("PATCH", f"/datasets/{draft.id}", json={"manifest": sha})
    assert client.get(f"/datasets/{draft.id}")["manifest"] is None


@pytest.mark.parametrize("lines, error", [
    ([f"{SHA}\t1\t644\t../evil"], HostilePath),
    ([f"{SHA}\t1\t644\t/etc/cron.d/evil"], HostilePath),
    ([f"{SHA}\t1\t644\tC:/evil"], HostilePath),
    ([f"{SHA}\t1\t644\tdir/X", f"{SHA}\t1\t644\tdir/x"], HostilePath),
    ([f"{SHA}\t1\t644\tA", f"{SHA}\t1\t644\ta/b"], HostilePath),
    ([f"{SHA}\t1\t644\t" + unicodedata.normalize("NFD", "\u00e9")], HostilePath),
    ([f"{SHA}\t1\t644\tb", f"{SHA}\t1\t644\ta"], BadManifest),
    ([f"{SHA}\t1\t644\ta", f"{SHA}\t1\t644\ta"], BadManifest),
    ([f"{SHA}\t-1\t644\ta"], BadManifest),
])
def test_client_refuses_a_hostile_manifest_on_get(lines: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(_raw_manifest(lines))


def test_corrupt_or_truncated_manifest_is_refused() -> None:
    blob = encode({"a": FileEntry(SHA, 1, 0o644), "b": FileEntry(SHA, 2, 0o755)})
    assert decode(blob) == {"a": FileEntry(SHA, 1, 0o644), "b": FileEntry(SHA, 2, 0o755)}
    for broken in (blob[:-3], blob[:30], b"not a manifest", blob.replace(b"fleetdeck", b"fleetdock")):
        with pytest.raises(BadManifest):
            decode(broken)


def test_get_never_writes_through_a_symlink_planted_in_the_target(client: Client, name: str,
                                                                  tmp_path: Path) -> None:
    v1 = Dataset.create(name, "hostile", client=client)
    v1.add_files(write_tree(tmp_path / "src", {"sub/x.txt": b"payload", "top.txt": b"top"}))
    v1.finalize()
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside, target_is_directory=True)
    (target / "top.txt").symlink_to(outside / "victim.txt")
    with pytest.raises(HostilePath, match="leads out of it"):
        Dataset.get(dataset_id=v1.id, client=client).get_mutable_local_copy(target, overwrite=True)
    assert os.listdir(outside) == [], "nothing may be written outside the target"
    (target / "sub").unlink()
    Dataset.get(dataset_id=v1.id, client=client).get_mutable_local_copy(target, overwrite=True)
    assert read_tree(target) == {"sub/x.txt": b"payload", "top.txt": b"top"}
    assert not (target / "top.txt").is_symlink(), "a planted file symlink is replaced, not written through"
    assert os.listdir(outside) == []
