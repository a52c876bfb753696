"""Pure formatting helpers for the TUI: literal text, ages, durations, bars and sparklines.

Everything that comes from the server (task names, parameters, log lines) is shown through
:func:`literal`, never parsed as Rich markup, and stripped of terminal escape sequences, so a task
named ``[red]x[/]`` or a log line with ``ESC[2J`` cannot restyle or break the screen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from rich.text import Text

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
MAX_CELL = 4096
"""Characters kept of one line; the rest is cut with an ellipsis so a 1 MB line stays cheap."""

STATUS_STYLE = {
    "created": "dim",
    "queued": "cyan",
    "in_progress": "bold blue",
    "completed": "green",
    "failed": "bold red",
    "aborted": "yellow",
    "stopped": "yellow",
}
"""Rich styles per task status (ANSI colour names: they follow the terminal's theme)."""

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_CELLS = 12
"""Default sparkline width in cells."""


def clean(value: Any, limit: int = MAX_CELL) -> str:
    """Text safe to put on screen: escape sequences removed, control characters made visible."""
    text = "" if value is None else str(value)
    if len(text) > limit * 2:
        text = text[: limit * 2]
    text = _ANSI.sub("", text).replace("\t", "    ")
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def literal(value: Any, style: str = "", limit: int = MAX_CELL) -> Text:
    """A Rich ``Text`` showing ``value`` exactly (no markup parsing), optionally styled."""
    return Text(clean(value, limit), style=style, no_wrap=True, overflow="ellipsis")


def status_text(status: str) -> Text:
    return Text(status.replace("_", " "), style=STATUS_STYLE.get(status, ""))


def age(seconds: float | None) -> str:
    """``"3 s"``, ``"4 min"``, ``"2 h"``, ``"5 d"`` for an elapsed time; ``"-"`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def duration(seconds: float | None) -> str:
    """``"1:02:03"`` style run time; ``"-"`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def task_duration(task: dict[str, Any], now: float) -> float | None:
    started = task.get("started")
    if not started:
        return None
    ended = task.get("ended") or (now if task.get("status") == "in_progress" else None)
    return None if ended is None else ended - started


def number(value: Any) -> str:
    """A metric value in at most 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return clean(value, 40)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.6g}"


def size(num_bytes: Any) -> str:
    if not isinstance(num_bytes, (int, float)):
        return "-"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def sparkline(values: Sequence[float | None], width: int = SPARK_CELLS) -> str:
    """A one-line sparkline of ``values`` (bucketed to ``width`` cells by mean)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) > width:
        step = len(finite) / width
        finite = [sum(bucket) / len(bucket) for bucket in
                  (finite[int(i * step): max(int(i * step) + 1, int((i + 1) * step))] for i in range(width))]
    lo, hi = min(finite), max(finite)
    span = hi - lo
    if span == 0:
        return SPARK_BLOCKS[3] * len(finite)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - lo) / span * top)] for v in finite)


def bar(fraction: float | None, width: int = 10) -> Text:
    """A horizontal meter ``███▌·····  42%`` coloured by load; empty when unknown."""
    if fraction is None or not math.isfinite(fraction):
        return Text("-", style="dim")
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    cells = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    style = "red" if fraction >= 0.9 else "yellow" if fraction >= 0.7 else "green"
    text = Text(cells.ljust(width, "·"), style=style)
    text.append(f" {fraction * 100:3.0f}%", style="")
    return text
