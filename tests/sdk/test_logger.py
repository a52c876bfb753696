"""The in-process buffers: every reported point reaches the spool once, in order, whatever the timing."""

from __future__ import annotations

import threading
from array import array
from pathlib import Path

from fleetdeck._buffer import EventBuffer
from fleetdeck.logger import Logger, encode_png
from fleetdeck.spool import pending, read_record


def _points(folder: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for path in pending(folder):
        record = read_record(path)
        offset = 0
        for group in record.header.get("scalars", []):
            n = group["n"]
            its, vals = array("q"), array("d")
            its.frombytes(record.payload[offset:offset + 8 * n])
            vals.frombytes(record.payload[offset + 8 * n:offset + 16 * n])
            offset += 24 * n
            series.setdefault((group["metric"], group["variant"]), []).extend(zip(its, vals))
    return series


def test_points_survive_concurrent_flushes(tmp_path: Path) -> None:
    """A flusher running every millisecond while two threads report: nothing lost, torn or doubled."""
    buffer = EventBuffer(tmp_path / "run", "key", interval=0.001)
    logger = Logger(buffer)

    def report(variant: str) -> None:
        for i in range(50_000):
            logger.report_scalar("loss", variant, float(i), i)

    threads = [threading.Thread(target=report, args=(v,)) for v in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    buffer.close()
    series = _points(tmp_path / "run")
    for variant in ("a", "b"):
        assert series[("loss", variant)] == [(i, float(i)) for i in range(50_000)]


def test_values_of_other_types_are_converted_or_dropped_with_one_warning(tmp_path: Path, capsys) -> None:
    import numpy as np

    buffer = EventBuffer(tmp_path / "run", "key", interval=60)
    logger = Logger(buffer)
    logger.report_scalar("m", "v", np.float32(1.5), np.int64(3))
    logger.report_scalar("m", "v", 2, None)  # no iteration: the series counts
    logger.report_scalar("m", "v", "3.5", 7.0)
    logger.report_scalar("m", "v", "not a number", 8)
    logger.report_scalar("m", "v", object(), 9)
    buffer.close()
    assert _points(tmp_path / "run")[("m", "v")] == [(3, 1.5), (4, 2.0), (7, 3.5)]
    assert capsys.readouterr().err.count("point dropped") == 2


def test_other_events_and_images_are_spooled(tmp_path: Path) -> None:
    buffer = EventBuffer(tmp_path / "run", "key", interval=60)
    logger = Logger(buffer)
    logger.report_text("hello")
    logger.report_single_value("acc", 0.9)
    logger.report_table("t", "s", 0, table_plot=[["a", "b"], [1, float("nan")]])
    logger.report_image("img", "s", 1, matrix=[[0, 255], [255, 0]])
    buffer.close()
    events = [e for p in pending(tmp_path / "run") for e in read_record(p).header.get("events", [])]
    assert [e["kind"] for e in events] == ["text", "single_value", "table", "image"]
    assert events[2]["data"] == {"columns": ["a", "b"], "rows": [[1, None]]}
    image = tmp_path / "run" / "files" / events[3]["data"]["file"]
    assert image.read_bytes().startswith(b"\x89PNG")


def test_png_encoder_writes_a_valid_file() -> None:
    import zlib

    png = encode_png([[[255, 0, 0], [0, 255, 0]]])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4:idat], "big")
    assert zlib.decompress(png[idat + 4:idat + 4 + length]) == bytes([0, 255, 0, 0, 0, 255, 0])
