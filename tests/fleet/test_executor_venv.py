"""The venv cache's key, requirement selection and eviction, on real folders and real locks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fleetdeck.fleet.venv_cache import VenvCache, VenvError, task_requirements


def _fake_entry(cache: VenvCache, name: str, age_s: float) -> Path:
    """A complete-looking entry (eviction only looks at folders and their markers)."""
    path = cache.root / name
    path.mkdir()
    marker = path / ".complete"
    marker.write_text("x")
    then = time.time() - age_s
    os.utime(marker, (then, then))
    return path


def test_requirements_prefer_the_recorded_file_and_skip_fleetdeck() -> None:
    task = {"script": {"requirements": "numpy==1.26.4  # pinned\nfleetdeck==0.1.0\n\nTorch==2.3.0\n"},
            "environment": {"packages": {"pandas": "2.0"}}}
    assert task_requirements(task) == ["Torch==2.3.0", "numpy==1.26.4"]
    imported_only = {"environment": {"packages": {"numpy": "1.26.4", "pandas": "2.0", "pip": "24"},
                                     "imported": ["numpy", "os"]}}
    assert task_requirements(imported_only) == ["numpy==1.26.4"]
    with pytest.raises(VenvError, match="not a valid distribution name"):
        task_requirements({"environment": {"packages": {"-e git+https://x": "1"}}})


def test_key_depends_on_requirements_not_their_order(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path)
    assert cache.key(["a==1", "b==2"]) == cache.key(["b==2", "a==1"]) != cache.key(["a==1"])


def test_lru_eviction_skips_entries_in_use(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path, max_entries=3, min_free_bytes=0)
    oldest = _fake_entry(cache, "oldest", 300)
    in_use = _fake_entry(cache, "in-use", 200)
    recent = _fake_entry(cache, "recent", 10)
    with cache._lock("in-use", exclusive=False):
        cache._make_room(keep="new")
    assert not oldest.exists() and in_use.exists() and recent.exists()
    newer = _fake_entry(cache, "newer", 5)
    cache._make_room(keep="new")  # the in-use one is free now and the least recently used
    assert not in_use.exists() and recent.exists() and newer.exists()


def test_free_space_floor_refuses_a_build_with_the_reason(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path, max_entries=10, min_free_bytes=1 << 60)
    stale = _fake_entry(cache, "stale", 100)
    with pytest.raises(VenvError, match=r"GiB free under .*, below the .* GiB floor, even after evicting"):
        cache._make_room(keep="new")
    assert not stale.exists(), "unused entries go first when the disk is below the floor"


def test_jobs_share_a_cached_venv_at_the_same_time(tmp_path: Path) -> None:
    """A job holding a venv must not block a second job on the same venv (one per GPU set at once)."""
    import threading

    cache = VenvCache(tmp_path)
    _fake_entry(cache, cache.key(["a==1"]), 0)
    entered = threading.Event()
    release = threading.Event()

    def first() -> None:
        with cache.use(["a==1"]):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        with cache.use(["a==1"]) as venv:
            assert venv.installed is False
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join()
