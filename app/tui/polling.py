"""Non-overlapping background polls: fetch in a thread, apply on the event loop, then re-arm.

A view never blocks the event loop on HTTP: :class:`Poller` runs ``fetch`` in a thread worker and
hands the result to ``apply`` on the loop. The next poll is armed with ``set_timer`` only after the
previous one finished, so a slow server never piles up requests; a manual refresh while a poll is
in flight is remembered and run right after it. Results of a poll whose parameters were changed
meanwhile (a filter keystroke) are dropped by generation number, never painted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from textual.dom import DOMNode
from textual.timer import Timer

from fleetdeck.errors import FleetdeckError

T = TypeVar("T")


class Poller(Generic[T]):
    """Polls one data source for one view.

    Args:
        owner: the widget or screen that owns the timers and workers.
        fetch: blocking call run in a thread (HTTP through the client).
        apply: called on the event loop with the fetched data.
        fail: called on the event loop with a :class:`FleetdeckError` from ``fetch``.
        interval: seconds between the end of one poll and the start of the next; 0 polls once.
        name: worker group name (shown in Textual's devtools).
    """

    def __init__(self, owner: DOMNode, fetch: Callable[[], T], apply: Callable[[T], None],
                 fail: Callable[[FleetdeckError], None], interval: float, name: str) -> None:
        self.owner = owner
        self.fetch = fetch
        self.apply = apply
        self.fail = fail
        self.interval = interval
        self.name = name
        self.paused = False
        """A paused poller finishes its current poll and arms no timer until resumed."""
        self.in_flight = False
        self._again = False
        self._generation = 0
        self._timer: Timer | None = None

    def poll_now(self, invalidate: bool = False) -> None:
        """Poll as soon as possible (right away, or after the poll in flight).

        Args:
            invalidate: the parameters changed, so a result now in flight is stale and is dropped.
        """
        if invalidate:
            self._generation += 1
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.in_flight:
            self._again = True
            return
        self.in_flight = True
        generation = self._generation
        self.owner.run_worker(lambda: self._run(generation), thread=True, group=self.name,
                              exit_on_error=False, name=self.name)

    def pause(self) -> None:
        self.paused = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def resume(self) -> None:
        self.paused = False
        self.poll_now()

    def _run(self, generation: int) -> None:
        try:
            data: Any = self.fetch()
        except FleetdeckError as exc:
            self._deliver(self._failed, generation, exc)
        except Exception as exc:  # a bug or an unexpected reply: show it, keep polling
            self._deliver(self._failed, generation, FleetdeckError(f"{self.name}: {type(exc).__name__}: {exc}"))
            raise
        else:
            self._deliver(self._succeeded, generation, data)

    def _deliver(self, callback: Callable[[int, Any], None], generation: int, payload: Any) -> None:
        try:
            self.owner.app.call_from_thread(callback, generation, payload)
        except RuntimeError:
            # The app closed while this thread was waiting on the server; nothing left to paint.
            pass

    def _succeeded(self, generation: int, data: T) -> None:
        self._finish()
        if generation == self._generation and self.owner.is_attached:
            self.apply(data)

    def _failed(self, generation: int, error: FleetdeckError) -> None:
        self._finish()
        if generation == self._generation and self.owner.is_attached:
            self.fail(error)

    def _finish(self) -> None:
        self.in_flight = False
        if not self.owner.is_attached:
            return
        if self._again:
            self._again = False
            self.poll_now()
        elif self.interval > 0 and not self.paused:
            self._timer = self.owner.set_timer(self.interval, self.poll_now, name=f"{self.name}-timer")
