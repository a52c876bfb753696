"""Messages the TUI's screens and widgets send each other."""

from __future__ import annotations

from textual.message import Message


class OpenTask(Message):
    """Open an experiment's detail view (posted by any view that lists experiments: costs, triage)."""

    def __init__(self, task_id: str, tab: str = "overview") -> None:
        super().__init__()
        self.task_id = task_id
        """Id of the experiment to open."""
        self.tab = tab
        """Detail tab to show first (``overview``, ``console``, ``metrics``, …)."""

