"""What only the embedded store must prove: durability on disk, compaction, recovery and locking."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from tinydb import TinyDB

from fleetdeck.server_lite.store.base import BadDocument, DataDirLocked, StoreFull
from fleetdeck.server_lite.store.embedded import SNAPSHOT, EmbeddedStore
from fleetdeck.server_lite.store.journal import CorruptJournal, iter_journal_files
from tests.server_lite.conftest import fill
from tests.support import wait_for


def crash(store: EmbeddedStore) -> None:
    """Drop the store as a killed process would: no compaction, no flush, lock released by the OS."""
    if store._compactor is not None:
        store._compactor.join()
    store._journal.close()
    os.close(store._lock_fd)


def journal_files(data_dir: Path) -> list[Path]:
    return [path for _, path in iter_journal_files(data_dir / "journal")]


def record_ends(path: Path) -> list[int]:
    """Byte offsets where each journal record ends."""
    data = path.read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 8 + length
        ends.append(pos)
    return ends


def test_reopen_keeps_everything_after_close_and_after_a_crash(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d")
    for i in range(50):
        store.insert("things", {"id": f"t{i}", "n": i, "created": float(i)})
    store.update("things", "t3", {"$set": {"n": 300}})
    store.delete("things", "t4")
    expected = store.find("things", sort=[("id", 1)])
    store.close()

    store = EmbeddedStore(tmp_path / "d")
    assert store.find("things", sort=[("id", 1)]) == expected
    assert store.replayed_records == 0, "a clean close leaves everything in the snapshot"
    store.insert("things", {"id": "late", "n": -1})
    store.update("things", "t5", {"$inc": {"n": 1000}})
    expected = store.find("things", sort=[("id", 1)])
    crash(store)

    store = EmbeddedStore(tmp_path / "d")
    try:
        assert store.find("things", sort=[("id", 1)]) == expected
        assert store.replayed_records == 2, "the writes after the snapshot come back from the journal"
    finally:
        store.close()


def test_compaction_writes_a_tinydb_snapshot_and_drops_covered_journals(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d", compact_bytes=16 * 1024)
    docs = [{"id": f"t{i:04d}", "payload": "x" * 100, "n": i} for i in range(1000)]
    for doc in docs:
        store.insert("things", doc)
    wait_for(lambda: (tmp_path / "d" / SNAPSHOT).exists(), message="a background compaction")
    wait_for(lambda: store._compactor is not None and not store._compactor.is_alive(), message="compaction end")
    assert len(journal_files(tmp_path / "d")) <= 2, "journals covered by the snapshot are deleted"
    crash(store)

    store = EmbeddedStore(tmp_path / "d")
    assert store.find("things", sort=[("id", 1)]) == docs
    store.close()
    assert journal_files(tmp_path / "d")[0].stat().st_size == 0, "close folds the journal in"
    with TinyDB(tmp_path / "d" / SNAPSHOT, access_mode="r") as db:
        assert sorted(db.table("things").all(), key=lambda d: d["id"]) == docs


@pytest.mark.parametrize("cut", ["mid-header", "mid-payload", "one-byte-short", "at-boundary"])
def test_torn_journal_tail_keeps_every_complete_record(tmp_path: Path, cut: str) -> None:
    store = EmbeddedStore(tmp_path / "d")
    for i in range(20):
        store.insert("things", {"id": f"t{i:02d}", "n": i})
    crash(store)
    journal = journal_files(tmp_path / "d")[-1]
    ends = record_ends(journal)
    assert len(ends) == 20
    keep = 17  # records 0..16 complete; the cut falls inside record 17 (or right after 16)
    offset = {"mid-header": ends[keep - 1] + 3, "mid-payload": ends[keep - 1] + 20,
              "one-byte-short": ends[keep] - 1, "at-boundary": ends[keep - 1]}[cut]
    with open(journal, "r+b") as fh:
        fh.truncate(offset)

    store = EmbeddedStore(tmp_path / "d")
    assert [d["n"] for d in store.find("things", sort=[("n", 1)])] == list(range(keep))
    assert journal.stat().st_size == ends[keep - 1], "the torn tail is cut off"
    store.insert("things", {"id": "after", "n": 99})
    crash(store)
    store = EmbeddedStore(tmp_path / "d")
    try:
        assert store.count("things") == keep + 1
    finally:
        store.close()


def test_mid_file_corruption_refuses_to_open_and_changes_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d")
    for i in range(20):
        store.insert("things", {"id": f"t{i:02d}", "n": i})
    crash(store)
    journal = journal_files(tmp_path / "d")[-1]
    ends = record_ends(journal)
    data = bytearray(journal.read_bytes())
    data[ends[4] + 12] ^= 0xFF  # a flipped bit inside record 5's payload, 15 complete records after it
    journal.write_bytes(bytes(data))

    with pytest.raises(CorruptJournal, match=rf"damaged at byte {ends[4]} .*not torn by a crash"):
        EmbeddedStore(tmp_path / "d")
    assert journal.read_bytes() == bytes(data), "a refused open must not truncate anything"
    data[ends[4] + 12] ^= 0xFF  # repaired (restored): the refused open released the lock
    journal.write_bytes(bytes(data))
    store = EmbeddedStore(tmp_path / "d")
    try:
        assert store.count("things") == 20
    finally:
        store.close()


def test_damage_in_an_older_journal_refuses_to_open(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d")
    store.insert("things", {"id": "a"})
    crash(store)
    first = journal_files(tmp_path / "d")[-1]
    shutil.copy(first, first.with_name("99999999.log"))  # a newer journal after the one we damage
    with open(first, "ab") as fh:
        fh.write(b"\x05\x00")
    with pytest.raises(CorruptJournal, match="not the newest journal"):
        EmbeddedStore(tmp_path / "d")


def test_second_open_of_a_data_dir_is_refused(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d")
    try:
        with pytest.raises(DataDirLocked, match=rf"in use by another fleetdeck server \(pid {os.getpid()}\)"):
            EmbeddedStore(tmp_path / "d")
    finally:
        store.close()
    EmbeddedStore(tmp_path / "d").close()  # released on close


def test_full_disk_is_store_full_and_nothing_unacknowledged_survives(small_disk, tmp_path: Path) -> None:
    disk = small_disk("1m")
    store = EmbeddedStore(disk / "d")
    acknowledged: list[str] = []
    refused: list[str] = []
    for i in range(5):
        acknowledged.append(store.insert("things", {"id": f"early{i}"})["id"])
    filler = fill(disk, "filler")
    for i in range(200):
        doc_id = f"t{i:03d}"
        try:
            store.insert("things", {"id": doc_id, "payload": "y" * 500})
            acknowledged.append(doc_id)
        except StoreFull as exc:
            assert "disk full" in str(exc)
            refused.append(doc_id)
    assert refused, "the disk never filled up"
    assert all(store.get("things", i) is None for i in refused), "a refused write is not in memory"
    with pytest.raises(StoreFull):
        store.update("things", "early0", {"$set": {"payload": "z" * 5000}})
    assert store.get("things", "early0") == {"id": "early0"}

    store.close()  # compaction fails on the full disk: logged, the journal keeps everything
    filler.unlink()
    store = EmbeddedStore(disk / "d")
    assert sorted(d["id"] for d in store.find("things")) == sorted(acknowledged)
    store.insert("things", {"id": "after-space-freed"})
    store.close()
    store = EmbeddedStore(disk / "d")
    try:
        assert store.count("things") == len(acknowledged) + 1
    finally:
        store.close()


def test_unrepresentable_value_is_bad_document_and_nothing_is_written(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "d")
    try:
        size = store.journal_bytes()
        with pytest.raises(BadDocument, match="64-bit"):
            store.insert("things", {"id": "big", "n": 2**70})
        assert store.get("things", "big") is None and store.journal_bytes() == size
    finally:
        store.close()


def test_name_substring_search_agrees_with_a_scan_through_inserts_renames_and_deletes(tmp_path: Path) -> None:
    """The embedded store answers ``$contains`` from a joined-text index; it must equal a plain scan."""
    import random

    rng = random.Random(3)
    words = ["ResNet", "vit", "Straße", "BERT", "日本", "sweep", "lr-0.1", "[red]x[/]"]
    store = EmbeddedStore(tmp_path / "d")
    live: dict[str, str] = {}
    try:
        for step in range(3000):
            action = rng.random()
            if action < 0.7 or not live:
                doc_id = f"{step:032x}"
                name = f"{rng.choice(words)}-{rng.choice(words)}-{step}"
                store.insert("tasks", {"id": doc_id, "created": float(step), "name": name})
                live[doc_id] = name
            elif action < 0.85:
                doc_id = rng.choice(sorted(live))
                live[doc_id] = f"renamed {rng.choice(words)}"
                store.update("tasks", doc_id, {"$set": {"name": live[doc_id]}})
            else:
                doc_id = rng.choice(sorted(live))
                store.delete("tasks", doc_id)
                del live[doc_id]
            if step % 97 == 0:
                needle = rng.choice(["strasse", "RESNET-vit", "日本", "renamed", "-1", "zzz", "[RED]"])
                found = {d["id"] for d in store.find("tasks", {"name": {"$contains": needle}})}
                expected = {i for i, n in live.items() if needle.casefold() in n.casefold()}
                assert found == expected, needle
                page = store.find("tasks", {"name": {"$contains": needle}}, sort=[("created", -1)], limit=5)
                assert [d["id"] for d in page] == sorted(expected, reverse=True)[:5]
    finally:
        store.close()


def test_created_order_pages_stay_exact_when_insertion_order_disagrees(tmp_path: Path) -> None:
    """Documents inserted out of ``created`` order (a clock step back, an import) still page newest first."""
    store = EmbeddedStore(tmp_path / "d")
    try:
        created = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
        for i, value in enumerate(created):
            store.insert("tasks", {"id": f"{i:032x}", "created": value, "status": "created" if i % 2 else "failed"})
        newest = [d["created"] for d in store.find("tasks", sort=[("created", -1)], limit=3)]
        assert newest == [9.0, 7.0, 5.0]
        store.update("tasks", f"{2:032x}", {"$set": {"created": 0.5}})
        store.delete("tasks", f"{4:032x}")
        store.insert("tasks", {"id": "f" * 32, "created": 6.0, "status": "failed"})
        assert [d["created"] for d in store.find("tasks", sort=[("created", -1)])] == [6.0, 5.0, 3.0, 2.0, 1.0, 0.5]
        assert [d["created"] for d in store.find("tasks", {"status": "failed"}, sort=[("created", 1)], limit=2)] == [
            0.5, 5.0]
    finally:
        store.close()
