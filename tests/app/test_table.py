"""sync_rows: a poll that changes a few cells keeps the user's cursor, scroll position and columns."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from fleetdeck.app.tui.widgets.table import cursor_key, sync_rows


def rows(keys: list[str], value: str = "v") -> list[tuple[str, list[Any]]]:
    return [(key, [Text(key), Text(value)]) for key in keys]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(cursor_type="row")
        table.add_columns("name", "value")
        yield table


def test_cursor_scroll_and_cells_across_polls() -> None:
    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(60, 12)) as pilot:
            table = app.query_one(DataTable)
            keys = [f"r{i:02d}" for i in range(50)]
            sync_rows(table, rows(keys))
            await pilot.pause()
            table.move_cursor(row=30, animate=False)
            await pilot.pause()
            scroll = table.scroll_y
            assert cursor_key(table) == "r30" and scroll > 0

            changed = rows(keys)
            changed[30] = ("r30", [Text("r30"), Text("new value", style="red")])
            sync_rows(table, changed)  # same rows: updated in place
            await pilot.pause()
            assert table.get_cell("r30", list(table.columns)[1]) == Text("new value", style="red")
            assert cursor_key(table) == "r30" and table.scroll_y == scroll

            sync_rows(table, rows(["new", *keys]))  # a row arrives on top: the cursor follows its row
            await pilot.pause()
            assert cursor_key(table) == "r30" and table.cursor_row == 31

            sync_rows(table, rows([k for k in ["new", *keys] if k != "r30"]))  # its row is gone: same position
            await pilot.pause()
            assert table.cursor_row == 31 and cursor_key(table) == "r31"

            sync_rows(table, [])
            assert cursor_key(table) is None and table.row_count == 0

    asyncio.run(main())
