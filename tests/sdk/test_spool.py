"""The spool: records survive as written, are read back in order, and half-written ones are invisible."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetdeck.spool import HELPER, PROCESS, SpoolWriter, check_run_key, pending, read_header, read_record


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    proc, helper = SpoolWriter(tmp_path, PROCESS), SpoolWriter(tmp_path, HELPER)
    names = [proc.write({"kind": "create", "i": 0}), proc.write({"kind": "events", "i": 1}, b"\x00" * 24)]
    helper.write({"kind": "update"})
    assert names == ["p0000000000", "p0000000001"]
    order = [p.name for p in pending(tmp_path)]
    assert order == ["h0000000000.rec", "p0000000000.rec", "p0000000001.rec"]
    record = read_record(tmp_path / "p0000000001.rec")
    assert record.header == {"kind": "events", "i": 1} and record.payload == b"\x00" * 24
    assert read_header(tmp_path / "p0000000001.rec") == {"kind": "events", "i": 1}


def test_a_reopened_writer_continues_the_sequence(tmp_path: Path) -> None:
    SpoolWriter(tmp_path, PROCESS).write({"kind": "a"})
    assert SpoolWriter(tmp_path, PROCESS).write({"kind": "b"}) == "p0000000001"


def test_half_written_and_corrupt_records(tmp_path: Path) -> None:
    (tmp_path / ".tmp-p0000000000").write_bytes(b"FDR1")  # a crash before the rename
    assert pending(tmp_path) == []
    (tmp_path / "p0000000000.rec").write_bytes(b"garbage-bytes")
    with pytest.raises(ValueError, match="corrupt"):
        read_record(tmp_path / "p0000000000.rec")


@pytest.mark.parametrize("key", ["..", "a/b", "", "x" * 41, "../../etc"])
def test_run_keys_cannot_escape_the_spool(key: str) -> None:
    with pytest.raises(ValueError):
        check_run_key(key)


def test_spool_root_follows_the_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fleetdeck.config import data_home
    from fleetdeck.spool import spool_root

    assert spool_root() == data_home() / "spool"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert spool_root() == data_home() / "spool"
    monkeypatch.setenv("FLEETDECK_SPOOL_DIR", str(tmp_path))
    assert spool_root() == tmp_path
