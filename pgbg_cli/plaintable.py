"""Plain-text tables: the layout of tabulate's ``simple`` format (text cells, left-aligned),
without importing tabulate, which costs a command that prints one about 9 ms of its start-up
(``bench/bench_cli.py``: ``pgbg list`` against the floor of any Python client).

The same text as ``tabulate(body, headers, tablefmt="simple", disable_numparse=True)``, which
a test compares for many tables: a header line, a line of dashes under each column, a line
per row. A column is as wide as its widest cell or header line, and at least two wider than
its header; columns are two spaces apart; each line ends without blanks. A cell's surrounding
blanks are dropped (a header's are kept); a cell of several lines spans as many lines, the
other cells of its row then blank below their first line. Cells and headers hold no carriage
return (``output.printable`` escapes it).
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_PADDING = 2  # a column is at least this much wider than its header
SEPARATOR = "  "


def simple(body: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """``body`` (rows of text cells) under ``headers``, without a final newline."""
    multiline = any("\n" in text for text in [*headers, *(c for row in body for c in row)])
    if multiline:
        # as tabulate does then: a cell of blanks only has no line, and a row of such cells none
        head = [h.split("\n") for h in headers]
        rows = [[cell.strip().splitlines() for cell in row] for row in body]
    else:
        head = [[h] for h in headers]
        rows = [[[cell.strip()] for cell in row] for row in body]
    widths = [max((len(line) for line in lines), default=0) + MIN_PADDING for lines in head]
    for row in rows:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], max((len(line) for line in lines), default=0))
    out: list[str] = []
    _append(out, head, widths)
    out.append(SEPARATOR.join("-" * w for w in widths))
    for row in rows:
        _append(out, row, widths)
    return "\n".join(out)


def _append(out: list[str], cells: list[list[str]], widths: list[int]) -> None:
    """The lines of one row: as many as its tallest cell has."""
    height = max((len(lines) for lines in cells), default=0)
    for k in range(height):
        parts = [(lines[k] if k < len(lines) else "").ljust(w) for lines, w in zip(cells, widths, strict=True)]
        out.append(SEPARATOR.join(parts).rstrip())
