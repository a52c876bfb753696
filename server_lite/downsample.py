"""Downsampling of metric series for plots: min/max per bucket, always keeping the last point.

A 1,000,000-point curve drawn in a 200-column terminal needs a few hundred points. Taking the
minimum and the maximum of each bucket (in their original order) keeps every spike visible, which
plain striding or averaging hides.
"""

from __future__ import annotations

import numpy as np


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of the points to keep: per bucket its min and max, plus the first and last point.

    Args:
        values: the series' values (NaN allowed: a NaN never wins min or max).
        max_points: the most points to return (at least 4 is useful).

    Returns:
        Index array into ``values``, ascending, at most ``max_points`` long.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    body = values[1:n - 1]
    buckets = max(1, (max_points - 4) // 2)  # room for first, last and a remainder bucket
    width = len(body) // buckets
    main = body[:buckets * width].reshape(buckets, width)
    rest = body[buckets * width:]
    has_nan = bool(np.isnan(body).any())
    hi_src = np.where(np.isnan(main), -np.inf, main) if has_nan else main
    lo_src = np.where(np.isnan(main), np.inf, main) if has_nan else main
    offsets = np.arange(buckets) * width
    parts = [np.array([0]), offsets + hi_src.argmax(axis=1) + 1, offsets + lo_src.argmin(axis=1) + 1]
    if len(rest):
        rest_clean = np.nan_to_num(rest, nan=0.0)
        base = buckets * width + 1
        parts.append(np.array([base + int(rest_clean.argmax()), base + int(rest_clean.argmin())]))
    parts.append(np.array([n - 1]))
    return np.unique(np.concatenate(parts))
