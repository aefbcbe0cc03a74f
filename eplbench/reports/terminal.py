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
    kept = list(columns)
    narrow = width is not None and _width(kept, columns, rows, natural=True) > width
    for drop in optional:
        if not narrow or _width(kept, columns, rows, natural=False) <= width:
            break
        kept.remove(drop)
    table = Table(title=title)
    for column in kept:
        table.add_column(column, justify="left" if column in left else "right",
                         width=_fixed(column, columns, rows) if narrow else None)
    for cells in rows:
        table.add_row(*(cells[columns.index(column)] for column in kept))
    return table, [column for column in columns if column not in kept]


def _fixed(column: str, columns: list[str], rows: list[list[str]]) -> int:
    """The narrowest width that shows every cell of the column whole and wraps its header
    only between words."""
    index = columns.index(column)
    longest_word = max(len(word) for word in column.split())
    return max([longest_word] + [len(cells[index]) for cells in rows])


def _width(kept: list[str], columns: list[str], rows: list[list[str]], natural: bool) -> int:
    """Characters the table takes with these columns: natural (headers on one line) or
    with every column at its `_fixed` width."""
    widths = [max(len(column), _fixed(column, columns, rows)) if natural else
              _fixed(column, columns, rows) for column in kept]
    return sum(widths) + PADDING * len(kept) + BORDER * (len(kept) + 1)
