"""Tables for the terminal: every cell whole at any width.

On a terminal too narrow for a table's natural width, each column gets exactly the width of
its widest cell (or of its header's longest word), headers wrap inside it, and optional
columns are left out, in the order given, until the rest fits; a note names them (their
figures stay in the results file). Output that is not a terminal is never narrowed.
"""

from __future__ import annotations

from rich.table import Table

BORDER = 1  # one rule character between columns and at each edge
PADDING = 2  # one space each side of a cell


def fitted_table(title: str, columns: list[str], rows: list[list[str]], width: int | None,
                 optional: tuple[str, ...] = (),
                 left: tuple[str, ...] = ()) -> tuple[Table, list[str]]:
    """(table, columns left out). rows: one list of cell strings per row, in `columns`
    order; width: the terminal's columns (None: unlimited); left: columns aligned left
    (the others align right)."""
    fixed = {column: _fixed(column, [cells[index] for cells in rows])
             for index, column in enumerate(columns)}
    natural = {column: max(len(column), fixed[column]) for column in columns}
    kept = list(columns)
    narrow = width is not None and _width(natural, kept) > width
    for drop in optional:
        if not narrow or _width(fixed, kept) <= width:
            break
        kept.remove(drop)
    table = Table(title=title)
    for column in kept:
        table.add_column(column, justify="left" if column in left else "right",
                         width=fixed[column] if narrow else None)
    positions = [columns.index(column) for column in kept]
    for cells in rows:
        table.add_row(*(cells[index] for index in positions))
    return table, [column for column in columns if column not in kept]


def _fixed(column: str, cells: list[str]) -> int:
    """The narrowest width that shows every cell of the column whole and wraps its header
    only between words."""
    return max([len(word) for word in column.split()] + [len(cell) for cell in cells])


def _width(widths: dict[str, int], kept: list[str]) -> int:
    """Characters the table takes with the kept columns at these widths."""
    return sum(widths[column] for column in kept) + PADDING * len(kept) + BORDER * (len(kept) + 1)
