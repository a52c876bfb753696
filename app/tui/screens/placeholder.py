"""A view whose feature is not installed yet (Costs, Datasets before their issues land)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from fleetdeck.app.tui.screens.base import ViewScreen


class PlaceholderScreen(ViewScreen):
    """Keeps the view's place in the navigation and says why it is empty."""

    def __init__(self, title: str, reason: str) -> None:
        super().__init__()
        self.title_text = title
        self.reason = reason

    def compose_body(self) -> ComposeResult:
        text = Text(f"{self.title_text}\n\n", style="bold")
        text.append(self.reason, style="yellow")
        yield Static(text, id="placeholder-text")
