"""Progress reporting for long dataset operations (hashing, uploading, downloading).

The SDK cannot depend on rich (training environments stay small), so an operation takes a
:data:`ProgressFactory`: called once per phase with a description and the phase's total bytes,
it returns the callback that advances that phase. The CLI passes one backed by rich progress
bars; the SDK's default prints a line on stderr at most once a second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], Advance]
"""``factory(description, total_bytes)`` -> ``advance(n_bytes)``."""


def no_progress(description: str, total: int) -> Advance:
    """Report nothing."""
    return _ignore


def _ignore(n: int) -> None:
    return None


def text_progress(stream: TextIO | None = None, interval_s: float = 1.0) -> ProgressFactory:
    """Plain-text progress: ``uploading 3 files: 40% (12.0 MB / 30.0 MB)`` lines, throttled."""

    def factory(description: str, total: int) -> Advance:
        out = stream or sys.stderr
        done = 0
        last = 0.0

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if done >= total or now - last >= interval_s:
                last = now
                percent = 100 if total <= 0 else min(100, done * 100 // total)
                print(f"{description}: {percent}% ({human_bytes(done)} / {human_bytes(total)})", file=out)

        return advance

    return factory


def human_bytes(n: float) -> str:
    """``1.5 GB`` style sizes (powers of 1000, as rich and most tools show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
