"""Console capture: complete lines, progress bars coalesced, partial last line kept."""

from __future__ import annotations

import io
from collections import deque

from fleetdeck._capture_console import ConsoleTee


def test_lines_and_progress_bars() -> None:
    original, sink = io.StringIO(), deque()
    tee = ConsoleTee(original, "stdout", sink)
    tee.write("epoch 1\nepo")
    tee.write("ch 2\n")
    for pct in range(0, 101, 10):
        tee.write(f"\r[{'#' * (pct // 10):<10}] {pct}%")
    tee.write("\n")
    tee.write("windows line\r\n")
    tee.write("no newline at exit")
    tee.flush_partial()
    assert [line for line, _, _ in sink] == ["epoch 1", "epoch 2", "[##########] 100%", "windows line",
                                              "no newline at exit"]
    assert original.getvalue().startswith("epoch 1\nepoch 2\n\r[")  # the user's terminal got every byte


def test_the_tee_behaves_like_the_stream() -> None:
    original = io.StringIO()
    tee = ConsoleTee(original, "stderr", deque())
    assert tee.write("x") == 1 and tee.getvalue() == "x" and tee.original is original
