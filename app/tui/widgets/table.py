"""Keeping a polled DataTable in step with fresh rows without losing the user's place.

Every view polls the server and shows the answer in a table. Clearing and refilling the table on
each poll moves the cursor, resets the scroll position and makes the columns jump; most polls
change a few cells of the same rows, so :func:`sync_rows` updates those cells in place and only
rebuilds the rows when the set or order of keys changed, keeping the cursor on the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


def cursor_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor (None for an empty table)."""
    if not table.row_count:
        return None
    try:
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
    except CellDoesNotExist:
        return None


def sync_rows(table: DataTable[Any], rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Show ``rows`` (key, cells in column order) in ``table``.

    Same keys in the same order: only the cells that changed are replaced. Otherwise the rows are
    rebuilt and the cursor goes back to the row with the same key, or stays at the same position
    when that row is gone.
    """
    keys = [key for key, _ in rows]
    if keys == [str(row_key.value) for row_key in table.rows]:
        columns = list(table.columns)
        for key, cells in rows:
            for column, value in zip(columns, cells):
                if table.get_cell(key, column) != value:
                    table.update_cell(key, column, value, update_width=True)
        return
    selected, position = cursor_key(table), table.cursor_row
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if not keys:
        return
    row = keys.index(selected) if selected in keys else min(position, len(keys) - 1)
    table.move_cursor(row=max(row, 0), animate=False)
