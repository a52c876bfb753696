"""Helpers shared by the benchmarks (run as ``python bench/bench_X.py``, so this imports as ``_common``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def no_fdatasync() -> Iterator[None]:
    """Skip fdatasync while populating (setup speed only; the files written are the same)."""
    saved = os.fdatasync
    os.fdatasync = lambda fd: None
    try:
        yield
    finally:
        os.fdatasync = saved
