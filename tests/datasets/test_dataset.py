"""Dataset versions against a real server process, with real files on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetdeck import Dataset
from fleetdeck.client import Client
from fleetdeck.dataset import DatasetError
from fleetdeck.errors import FleetdeckError, NotFound, RequestRejected
from fleetdeck.server_lite.process import ServerProcess

from .trees import read_tree, stored_blob_bytes, write_tree

V1_FILES = {
    "train/cat.bin": os.urandom(30_000),
    "train/dog.bin": os.urandom(20_000),
    "labels.csv": b"cat,0\ndog,1\n",
    "readme.txt": b"first version\n",
    "weights/big.bin": os.urandom(1_500_000),  # over 1 MiB: the chunked, resumable upload path
}


def _v1(client: Client, src: Path, name: str) -> Dataset:
    write_tree(src, V1_FILES)
    v1 = Dataset.create(name, "vision", dataset_tags=["raw"], client=client)
    assert v1.add_files(src) == len(V1_FILES)
    v1.finalize()
    return v1


def test_v2_uploads_only_what_changed_and_reads_back_byte_for_byte(
        client: Client, name: str, server: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "src"
    v1 = _v1(client, src, name)
    assert v1.is_final and v1.version == 1

    new_dog = os.urandom(25_000)
    new_bird = os.urandom(12_345)
    (src / "train/dog.bin").write_bytes(new_dog)        # modified
    (src / "readme.txt").unlink()                        # removed
    (src / "train/bird.bin").write_bytes(new_bird)       # added
    v2 = Dataset.create(name, "vision", parent_datasets=[v1.id], client=client)
    assert v2.file_count == len(V1_FILES), "a new version starts with its parent's files"
    assert v2.add_files(src) == 2, "unchanged files must not count as changes"
    assert v2.remove_files("readme.txt") == 1

    before = stored_blob_bytes(server)
    stats = v2.upload(show_progress=False)
    added_bytes = stored_blob_bytes(server) - before
    assert stats.files_uploaded == 2
    assert stats.bytes_uploaded == len(new_dog) + len(new_bird)
    unchanged = ("train/cat.bin", "labels.csv", "weights/big.bin")
    assert stats.bytes_skipped == sum(len(V1_FILES[p]) for p in unchanged)
    assert added_bytes == len(new_dog) + len(new_bird) + stats.manifest_bytes, \
        "the server must have received only the new content and the manifest"
    v2.finalize()

    got = Dataset.get(dataset_name=name, dataset_project="vision", client=client)
    assert (got.id, got.version, got.parents) == (v2.id, 2, [v1.id])
    expected = {**V1_FILES, "train/dog.bin": new_dog, "train/bird.bin": new_bird}
    del expected["readme.txt"]
    local = got.get_local_copy()
    assert read_tree(local) == expected
    assert got.get_local_copy() == local, "the cached copy is reused"
    assert (Path(local) / "labels.csv").stat().st_mode & 0o222 == 0, "the cached copy is read-only"

    assert got.list_added_files() == ["train/bird.bin"]
    assert got.list_modified_files() == ["train/dog.bin"]
    assert got.list_removed_files() == ["readme.txt"]
    assert got.diff(Dataset.get(dataset_id=v1.id, client=client)).counts() == \
        {"added": 1, "modified": 1, "removed": 1}
    doc = client.get(f"/datasets/{v2.id}")
    assert (doc["files"], doc["size"], doc["added"], doc["modified"], doc["removed"]) == \
        (len(expected), sum(map(len, expected.values())), 1, 1, 1), \
        "the server computes the counts from the manifests"

    # the parent is untouched and still reads back as it was
    assert read_tree(Dataset.get(dataset_id=v1.id, client=client).get_local_copy()) == V1_FILES


def test_unchanged_tree_as_new_version_uploads_no_content(client: Client, name: str, server: ServerProcess,
                                                          tmp_path: Path) -> None:
    src = tmp_path / "src"
    v1 = _v1(client, src, name)
    again = Dataset.create(name + "-copy", "other-project", client=client)
    again.add_files(src)
    before = stored_blob_bytes(server)
    stats = again.upload(show_progress=False)
    assert stats.bytes_uploaded == 0 and stats.files_uploaded == 0, "content is deduplicated across datasets"
    assert stored_blob_bytes(server) == before, "identical file list gives the identical manifest blob"
    assert again.list_added_files() == v1.list_files()


def test_corrupted_cached_file_is_detected_and_fetched_again(client: Client, name: str,
                                                            tmp_path: Path) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    local = Path(Dataset.get(dataset_id=v1.id, client=client).get_local_copy())
    victim = local / "train/cat.bin"

    victim.chmod(0o644)                                   # a careless user writes into the cache
    victim.write_bytes(b"\0" * len(V1_FILES["train/cat.bin"]))
    assert read_tree(Dataset.get(dataset_id=v1.id, client=client).get_local_copy()) == V1_FILES

    # bit rot: same size and modification time, so only a full re-hash can see it
    info = victim.stat()
    victim.chmod(0o644)
    with open(victim, "r+b") as fh:
        fh.write(b"X")
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))
    report = Dataset.get(dataset_id=v1.id, client=client).verify(repair=False)
    assert report.corrupted == ["train/cat.bin"] and not report.ok
    report = Dataset.get(dataset_id=v1.id, client=client).verify()
    assert report.repaired == ["train/cat.bin"] and report.ok
    assert read_tree(local) == V1_FILES


def test_mutable_copy_and_verify_of_a_folder(client: Client, name: str, tmp_path: Path) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    target = tmp_path / "work"
    Dataset.get(dataset_id=v1.id, client=client).get_mutable_local_copy(target)
    assert read_tree(target) == V1_FILES
    (target / "labels.csv").write_bytes(b"edited")       # writable, and a private copy
    (target / "train/dog.bin").unlink()
    (target / "notes.md").write_text("mine")
    assert read_tree(Dataset.get(dataset_id=v1.id, client=client).get_local_copy()) == V1_FILES
    with pytest.raises(FleetdeckError, match="not empty"):
        Dataset.get(dataset_id=v1.id, client=client).get_mutable_local_copy(target)
    report = Dataset.get(dataset_id=v1.id, client=client).verify(target)
    assert (report.corrupted, report.missing, report.extra) == \
        (["labels.csv"], ["train/dog.bin"], ["notes.md"])
    assert read_tree(target) == {**V1_FILES, "notes.md": b"mine"}, "repaired; the user's own file is kept"


def test_finalized_version_is_immutable_but_taggable(client: Client, name: str, tmp_path: Path) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    with pytest.raises(DatasetError, match="finalized"):
        v1.add_files(tmp_path / "src")
    with pytest.raises(RequestRejected, match="finalized and cannot change"):
        client.request("PATCH", f"/datasets/{v1.id}", json={"description": "sneaky"})
    draft = Dataset.create(name, "vision", client=client)
    with pytest.raises(RequestRejected, match="is a draft"):
        Dataset.create(name, "vision", parent_datasets=[draft.id], client=client)
    v1.add_tags("golden")
    assert Dataset.get(dataset_id=v1.id, client=client).tags == ["raw", "golden"]
    assert [d["id"] for d in Dataset.list_datasets(dataset_project="vision", tags=["golden"],
                                                   client=client)] == [v1.id]


def test_versions_are_numbered_and_resolved_by_name(client: Client, name: str, tmp_path: Path) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    v2 = Dataset.create(name, "vision", parent_datasets=[v1], client=client)
    v3 = Dataset.create(name, "vision", parent_datasets=[v1], client=client)
    assert (v2.version, v3.version) == (2, 3)
    v3.finalize()
    assert Dataset.get(dataset_name=name, dataset_project="vision", client=client).id == v3.id, \
        "by name: the latest finalized version (v2 is still a draft)"
    by_number = Dataset.get(dataset_name=name, dataset_project="vision", dataset_version="2", client=client)
    assert by_number.id == v2.id
    with pytest.raises(NotFound, match=f"no version 9 of dataset '{name}'"):
        Dataset.get(dataset_name=name, dataset_project="vision", dataset_version=9, client=client)


def test_draft_survives_between_processes_and_refuses_changed_files(client: Client, name: str,
                                                                   tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.bin": b"a" * 1000, "b.bin": b"b" * 1000})
    draft = Dataset.create(name, "p", client=client)
    draft.add_files(src)
    reopened = Dataset.get(dataset_id=draft.id, client=client)   # as `fleetdeck data upload` would
    assert reopened.list_files() == ["a.bin", "b.bin"]
    (src / "a.bin").write_bytes(b"A" * 1000)                     # same size, new content
    with pytest.raises(DatasetError, match="a.bin changed since it was added"):
        reopened.upload(show_progress=False)
    reopened.add_files(src)
    reopened.finalize()
    assert read_tree(reopened.get_local_copy()) == {"a.bin": b"A" * 1000, "b.bin": b"b" * 1000}


def test_a_task_records_the_versions_it_read(client: Client, name: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    task = client.create_task(name="train", project="vision")
    monkeypatch.setenv("FLEETDECK_TASK_ID", task["id"])
    Dataset.get(dataset_name=name, dataset_project="vision", client=client)
    Dataset.get(dataset_name=name, dataset_project="vision", client=client)   # read twice, listed once
    readers = Dataset.get(dataset_id=v1.id, client=client).readers()
    assert [(r["task"], r["task_name"]) for r in readers] == [(task["id"], "train")]
    inputs = client.get(f"/tasks/{task['id']}/artifacts")["items"]
    assert [(a["mode"], a["metadata"]["dataset_id"]) for a in inputs] == [("input", v1.id)]


def test_a_training_script_with_task_init_records_its_input(client: Client, name: str, server: ServerProcess,
                                                           tmp_path: Path) -> None:
    """The real lineage path: ``Task.init`` in a script, then ``Dataset.get`` inside it."""
    v1 = _v1(client, tmp_path / "src", name)
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from fleetdeck import Dataset, Task

        task = Task.init(project_name="vision", task_name="uses-{name}")
        folder = Dataset.get(dataset_name={name!r}, dataset_project="vision").get_local_copy()
        print("TASK", task.id, len(list(Path(folder).rglob("*.bin"))))
    """))
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token,
           "FLEETDECK_SPOOL_DIR": str(tmp_path / "spool"), "FLEETDECK_MONITOR_SAMPLE_S": "0.1"}
    env.pop("FLEETDECK_TASK_ID", None)
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    task_id, bins = run.stdout.split("TASK ")[1].split()
    assert bins == "3"
    readers = Dataset.get(dataset_id=v1.id, client=client).readers()
    assert [(r["task"], r["task_name"]) for r in readers] == [(task_id, f"uses-{name}")]


def test_sync_folder_mirrors_a_folder_including_a_rename_by_case(client: Client, name: str,
                                                                 tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"a", "Readme.md": b"r", "sub/b.txt": b"b"})
    draft = Dataset.create(name, "vision", client=client)
    assert draft.sync_folder(src, dataset_path="data") == (0, 3)
    (src / "sub/b.txt").unlink()
    (src / "Readme.md").rename(src / "README.md")          # differs only by case from the old name
    (src / "a.txt").write_bytes(b"A")
    assert draft.sync_folder(src, dataset_path="data") == (2, 2)
    assert draft.list_files() == ["data/README.md", "data/a.txt"]


def test_an_interrupted_upload_resumes_where_the_server_stopped(client: Client, name: str,
                                                                tmp_path: Path) -> None:
    big = os.urandom(1_500_000)
    src = write_tree(tmp_path / "src", {"big.bin": big, "small.txt": b"small"})
    draft = Dataset.create(name, "vision", client=client)
    draft.add_files(src)
    sha = draft.file_entry("big.bin").sha256
    client.post("/blobs/uploads", {"sha256": sha, "size": len(big)})     # an upload cut off at 600 kB
    client.request("PUT", f"/blobs/uploads/{sha}", params={"offset": 0}, content=big[:600_000],
                   headers={"Content-Type": "application/octet-stream"})
    advanced: list[int] = []

    def progress(description: str, total: int) -> Callable[[int], None]:
        return advanced.append

    stats = draft.upload(progress=progress)
    assert stats.files_uploaded == 2
    assert sorted(advanced) == [5, 600_000, 900_000], "the big file resumes at byte 600,000; not sent twice"
    draft.finalize()
    assert read_tree(draft.get_local_copy()) == {"big.bin": big, "small.txt": b"small"}


def test_a_draft_reads_back_only_what_it_uploaded(client: Client, name: str, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"a"})
    draft = Dataset.create(name, "vision", client=client)
    draft.add_files(src)
    draft.upload(show_progress=False)
    assert read_tree(draft.get_local_copy()) == {"a.txt": b"a"}
    draft.add_files(write_tree(tmp_path / "more", {"b.txt": b"b"}))
    with pytest.raises(DatasetError, match="changes that are not uploaded"):
        draft.get_local_copy()
    draft.upload(show_progress=False)
    assert read_tree(draft.get_local_copy()) == {"a.txt": b"a", "b.txt": b"b"}, "a new upload, a new copy"


def test_processes_getting_one_version_at_once_share_one_copy(client: Client, name: str,
                                                              server: ServerProcess, tmp_path: Path) -> None:
    v1 = _v1(client, tmp_path / "src", name)
    script = ("import sys; from fleetdeck import Dataset; "
              "print(Dataset.get(dataset_id=sys.argv[1]).get_local_copy())")
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token}
    procs = [subprocess.Popen([sys.executable, "-c", script, v1.id], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1 and read_tree(paths.pop()) == V1_FILES
