"""Small modal screens: confirm a destructive action, ask for one value, show a text."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from fleetdeck.app.tui.fmt import clean


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive action; the question names the action, the targets and their count."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, action: str, targets: list[str]) -> None:
        super().__init__()
        self.action_name = action
        self.targets = targets

    def compose(self) -> ComposeResult:
        count = len(self.targets)
        noun = "target" if count == 1 else "targets"
        text = Text(f"{self.action_name} {count} {noun}?\n\n", style="bold")
        for name in self.targets[:10]:
            text.append(f"  • {clean(name, 100)}\n")
        if count > 10:
            text.append(f"  … and {count - 10} more\n")
        text.append("\n[y] yes   [n] no", style="dim")
        with Vertical(classes="modal-box"):
            yield Static(text, id="confirm-text")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen["str | None"]):
    """Ask for one line of text (a queue name, a task id, a ``:`` command)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, label: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.label = label
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(Text(self.label))
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A scrollable text shown literally (a raw record, a command's output, the help)."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="text.close")]

    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        body = self.body if isinstance(self.body, Text) else Text("\n".join(
            clean(line) for line in self.body.splitlines()))
        with Vertical(classes="modal-box wide"):
            yield Label(Text(self.title_text, style="bold"))
            with VerticalScroll():
                yield Static(body, id="text-body")

    def action_close(self) -> None:
        self.dismiss(None)
