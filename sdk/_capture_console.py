"""Console capture: ``sys.stdout``/``sys.stderr`` are teed, line by line, into the event buffer.

The user still sees every byte at once (the original stream is written first). Lines are cut at
``\\n``; a ``\\r`` without a newline (a progress bar redrawing itself) discards the text before it,
so a tqdm bar becomes its final state instead of thousands of lines. The partial last line is
kept at exit. Output written straight to file descriptor 1/2 by C code or subprocesses is not seen.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TextIO

MAX_LINE = 16 * 1024
"""Longer lines are cut (the server refuses lines over 64 KiB)."""


class ConsoleTee:
    """A text stream that writes through to ``original`` and records complete lines."""

    def __init__(self, original: TextIO, stream: str, sink: deque[tuple[str, str, float]]) -> None:
        self._original = original
        self._stream = stream
        self._sink = sink
        self._partial = ""

    def write(self, text: str) -> int:
        written = self._original.write(text)
        try:
            self._record(text)
        except Exception:  # capture must never break the user's print
            pass
        return written

    def _record(self, text: str) -> None:
        if not isinstance(text, str):
            return
        data = self._partial + text
        if "\n" not in data:
            self._partial = _after_cr(data)[-MAX_LINE:]
            return
        *lines, rest = data.split("\n")
        now = time.time()
        for line in lines:
            line = _after_cr(line.rstrip("\r"))
            self._sink.append((line[:MAX_LINE], self._stream, now))
        self._partial = _after_cr(rest)[-MAX_LINE:]

    def flush_partial(self) -> None:
        """Record the unterminated last line (at exit)."""
        if self._partial:
            self._sink.append((self._partial, self._stream, time.time()))
            self._partial = ""

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._original.flush()

    @property
    def original(self) -> TextIO:
        return self._original

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _after_cr(line: str) -> str:
    """The text a terminal would show after carriage returns redrew the line."""
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""
