"""A virtual console: renders only the lines in view, fetches blocks around them in threads.

Like Toolong's ``LogLines``: the widget's virtual height is the task's line count, ``render_line``
draws from an LRU cache of fixed-size blocks, and a block not yet cached is fetched by a thread
worker (a placeholder shows meanwhile). Follow mode keeps the view on the tail while new lines
arrive; scrolling up pauses it and counts the new lines until ``End`` (or ``F``) resumes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.fmt import MAX_CELL, clean
from fleetdeck.app.tui.polling import Poller
from fleetdeck.errors import FleetdeckError

BLOCK = 500
"""Lines per fetched block."""
MAX_BLOCKS = 64
"""Blocks kept in memory (32,000 lines)."""
SEARCH_CHUNK = 5000


class ConsoleView(ScrollView, can_focus=True):
    """The console of one task.

    Args:
        source: the server.
        task_id: whose console.
        poll_s: seconds between tail polls (0: read once).
    """

    BINDINGS = [
        Binding("end,F", "follow", "Follow", id="console.follow"),
        Binding("home,g", "top", "Top", id="console.top", show=False),
        Binding("n", "search_next", "Next match", id="console.next-match", show=False),
    ]

    DEFAULT_CSS = """
    ConsoleView { height: 1fr; background: $surface; }
    """

    follow: reactive[bool] = reactive(True)
    """Whether the view sticks to the newest line."""

    class Status(Message):
        """Line count, follow state or a search result changed (for the status line above)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, source: DataSource, task_id: str, poll_s: float = 1.0, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.task_id = task_id
        self.total = 0
        """Lines the server holds (as of the last poll)."""
        self.new_lines = 0
        """Lines that arrived while follow was paused."""
        self.search_term = ""
        self.match_line: int | None = None
        self.loaded = False
        self._blocks: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._pending: set[int] = set()
        self._width = 0
        self._poller: Poller[dict[str, Any]] = Poller(self, self._fetch_tail, self._apply_tail, self._tail_failed,
                                                      poll_s, f"console-{task_id[:8]}")

    def on_mount(self) -> None:
        self._poller.poll_now()

    def on_unmount(self) -> None:
        self._poller.pause()

    # -- data ------------------------------------------------------------------------------

    def _fetch_tail(self) -> dict[str, Any]:
        if not self.loaded:
            return self.source.console(self.task_id, -BLOCK, BLOCK)
        return self.source.console(self.task_id, self.total, BLOCK * 4)

    def _apply_tail(self, result: dict[str, Any]) -> None:
        self.loaded = True
        items = result["items"]
        old_total = self.total
        self._store(items)
        total = int(result["total"])
        if total < old_total:  # console was reset (task re-run): start over
            self._blocks.clear()
        self.total = total
        added = max(0, total - old_total) if old_total else 0
        if not self.follow:
            self.new_lines += added
        self.virtual_size = Size(max(self._width, 1), total)
        if self.follow:  # after the new virtual size is laid out, or the old end is used
            self.call_after_refresh(self._to_tail)
        self.refresh()
        self._post_status()
        if len(items) == BLOCK * 4:  # far behind the tail: fetch the next stretch right away
            self._poller.poll_now()

    def _tail_failed(self, error: FleetdeckError) -> None:
        self.post_message(self.Status(f"console unavailable: {error}"))

    def _store(self, items: list[dict[str, Any]]) -> None:
        for entry in items:
            n = int(entry["n"])
            block, offset = divmod(n, BLOCK)
            lines = self._blocks.get(block)
            if lines is None:
                lines = self._blocks[block] = []
            self._blocks.move_to_end(block)
            if offset == len(lines):
                lines.append(entry)
            elif offset < len(lines):
                lines[offset] = entry
            else:  # a gap: the block will be read whole when it is shown
                self._blocks.pop(block, None)
                continue
            text = entry.get("line", "")
            self._width = max(self._width, min(len(text), MAX_CELL))
        while len(self._blocks) > MAX_BLOCKS:
            self._blocks.popitem(last=False)

    def _line(self, n: int) -> dict[str, Any] | None:
        block, offset = divmod(n, BLOCK)
        lines = self._blocks.get(block)
        if lines is not None and offset < len(lines):
            self._blocks.move_to_end(block)
            return lines[offset]
        self._request_block(block)
        return None

    def _request_block(self, block: int) -> None:
        if block in self._pending:
            return
        self._pending.add(block)

        def fetch() -> None:
            try:
                result = self.source.console(self.task_id, block * BLOCK, BLOCK)
            except FleetdeckError as exc:
                self.app.call_from_thread(self._block_failed, block, exc)
                return
            self.app.call_from_thread(self._block_loaded, block, result["items"])

        self.run_worker(fetch, thread=True, group="console-blocks", exit_on_error=False)

    def _block_loaded(self, block: int, items: list[dict[str, Any]]) -> None:
        self._pending.discard(block)
        self._blocks.pop(block, None)
        self._store(items)
        self.virtual_size = Size(max(self._width, 1), self.total)
        self.refresh()

    def _block_failed(self, block: int, error: FleetdeckError) -> None:
        self._pending.discard(block)
        self.post_message(self.Status(f"lines {block * BLOCK}+ unavailable: {error}"))

    # -- rendering -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        n = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if n >= self.total:
            return Strip.blank(width, base)
        entry = self._line(n)
        if entry is None:
            text = Text("…", style="dim")
        else:
            text = Text(clean(entry.get("line", "")), style="red" if entry.get("stream") == "stderr" else "")
            if self.search_term:
                text.highlight_words([self.search_term], style="reverse", case_sensitive=False)
        segments = [Segment(seg.text, base + seg.style if seg.style else base)
                    for seg in text.render(self.app.console) if seg.text != "\n"]
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, base)

    # -- follow ----------------------------------------------------------------------------

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new < old and new < self.max_scroll_y:
            self.follow = False
        elif new >= self.max_scroll_y and not self.follow and self.loaded:
            self.follow = True

    def watch_follow(self, following: bool) -> None:
        if following:
            self.new_lines = 0
        if self.is_mounted:
            self._post_status()

    def _to_tail(self) -> None:
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def action_follow(self) -> None:
        self.follow = True
        self._to_tail()

    def action_top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False, immediate=True)

    def _post_status(self) -> None:
        if self.follow:
            state = "following"
        else:
            state = f"paused · {self.new_lines:,} new lines · End follows" if self.new_lines else "paused · End follows"
        match = f" · match at line {self.match_line + 1:,}" if self.match_line is not None else ""
        self.post_message(self.Status(f"{self.total:,} lines · {state}{match}"))

    # -- search ----------------------------------------------------------------------------

    def search(self, term: str) -> None:
        """Find ``term`` (case-insensitive) from the line after the top one; scanned in a thread."""
        self.search_term = term
        self.match_line = None
        self.refresh()
        if term:
            self._scan(term, int(self.scroll_offset.y) + 1)

    def action_search_next(self) -> None:
        if self.search_term:
            start = (self.match_line if self.match_line is not None else int(self.scroll_offset.y)) + 1
            self._scan(self.search_term, start)

    def _scan(self, term: str, start: int) -> None:
        needle = term.lower()

        def scan() -> None:
            position = start
            try:
                while True:
                    result = self.source.console(self.task_id, position, SEARCH_CHUNK)
                    for entry in result["items"]:
                        if needle in entry.get("line", "").lower():
                            self.app.call_from_thread(self._found, term, int(entry["n"]))
                            return
                    if not result["items"]:
                        self.app.call_from_thread(self._found, term, None)
                        return
                    position += len(result["items"])
            except FleetdeckError as exc:
                self.app.call_from_thread(self.post_message, self.Status(f"search failed: {exc}"))

        self.run_worker(scan, thread=True, group="console-search", exclusive=True, exit_on_error=False)

    def _found(self, term: str, line: int | None) -> None:
        if term != self.search_term:
            return
        if line is None:
            self.post_message(self.Status(f"{term!r} not found below line {int(self.scroll_offset.y) + 1:,}"))
            return
        self.match_line = line
        self.follow = False
        self.scroll_to(y=max(0, line - 2), animate=False, immediate=True)
        self._post_status()
