"""Rendering helpers shared by CLI commands: rich tables, times and durations.

Every user-supplied string is printed with markup disabled (``Text``), so a task named
``[red]x[/]`` prints literally.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False)


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    return f"{duration((now or time.time()) - ts)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    out = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for column in columns:
        out.add_column(column, overflow="ellipsis", no_wrap=True)
    for row in rows:
        out.add_row(*[cell if isinstance(cell, Text) else Text(fmt(cell)) for cell in row])
    return out


def fmt(value: Any) -> str:
    """A cell's text: floats to 5 significant digits, None as blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


STATUS_STYLE = {"completed": "green", "failed": "red", "aborted": "yellow", "in_progress": "cyan",
                "queued": "magenta", "stopped": "yellow", "created": "dim"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))
