"""What every top-level view shares: the status header, the footer, and the action policy.

``check_action`` hides every mutating action in a read-only session and any action the selected
row does not allow, so the footer shows only the keys that do something here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.widgets.header import StatusHeader
from fleetdeck.errors import FleetdeckError

if TYPE_CHECKING:
    from fleetdeck.app.tui.app import FleetdeckApp


class ViewScreen(Screen[None]):
    """Base of the views: header on top, footer at the bottom, the view's body in between."""

    MUTATING: ClassVar[frozenset[str]] = frozenset()
    """Actions that change something on the server or a host; removed by ``--readonly``."""

    poller: Poller[Any] | None = None
    """What keeps the view fresh; set by views that poll, and driven by resume, refresh and pause."""

    @property
    def fd_app(self) -> FleetdeckApp:
        return cast("FleetdeckApp", self.app)

    @property
    def source(self) -> DataSource:
        return self.fd_app.source

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.fd_app.readonly:
            return False
        return self.allows(action)

    def allows(self, action: str) -> bool:
        """Whether ``action`` applies to the current selection (override per view)."""
        return True

    def poll_succeeded(self) -> None:
        self.fd_app.mark_fresh()
        self.query_one(StatusHeader).update_text()

    def poll_failed(self, error: FleetdeckError) -> None:
        self.fd_app.mark_stale(error)
        self.query_one(StatusHeader).update_text()

    def run_action(self, description: str, call: Callable[[], object]) -> None:
        """Run a blocking action (``call``) in a thread; report the outcome as a notification."""
        def work() -> None:
            try:
                call()
            except FleetdeckError as exc:
                self.app.call_from_thread(self.notify, str(exc), title=description, severity="error")
                return
            self.app.call_from_thread(self.action_done, description)

        self.run_worker(work, thread=True, group="actions", exit_on_error=False)

    def action_done(self, description: str) -> None:
        self.notify(description, title="done")
        self.refresh_data()

    def on_screen_resume(self) -> None:
        if self.poller is not None and not self.poller.paused and not self.poller.in_flight:
            self.poller.poll_now()

    def set_paused(self, paused: bool) -> None:
        if self.poller is not None:
            self.poller.pause() if paused else self.poller.resume()

    def refresh_data(self) -> None:
        """Poll now (views without a poller override)."""
        if self.poller is not None:
            self.poller.poll_now()
