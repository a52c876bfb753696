"""Helpers to drive the real app with Textual's Pilot against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from fleetdeck.app.tui.app import FleetdeckApp
from fleetdeck.app.tui.data import DataSource
from fleetdeck.app.tui.settings import TuiSettings
from fleetdeck.client import Client

Scenario = Callable[[FleetdeckApp, Pilot[None]], Awaitable[None]]


def make_app(client: Client, *, readonly: bool = False, settings: TuiSettings | None = None,
             clock: Callable[[], float] = time.time, view: str = "experiments", label: str | None = None) -> FleetdeckApp:
    source = DataSource(client, readonly=readonly, clock=clock, label=label)
    return FleetdeckApp(source, settings or TuiSettings(poll_s=1.0), clock=clock, view=view)


def drive(app: FleetdeckApp, scenario: Scenario, size: tuple[int, int] = (140, 40)) -> None:
    """Run ``scenario`` against ``app`` in a headless terminal of ``size``."""
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())


async def until(pilot: Pilot[None], predicate: Callable[[], Any], timeout: float = 10.0,
                message: str = "condition") -> Any:
    """Let the app run until ``predicate()`` is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # a widget not mounted yet: keep waiting
            last = exc
        else:
            if last:
                return last
        await pilot.pause(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")
