"""The one output layer: Rich tables on a terminal, tabulate plain text, JSON or CSV.

Only data goes to stdout; messages go to stderr (see ``say``). NO_COLOR is honoured
(Rich reads it), and plain text carries no escape codes.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import io
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class Format(str, enum.Enum):
    auto = "auto"
    table = "table"
    plain = "plain"
    json = "json"
    csv = "csv"


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    human: Callable[[Any, dict[str, Any]], str] | None = None  # table/plain rendering
    justify: str = "left"

    @property
    def title(self) -> str:
        return self.header or self.key


def resolve(fmt: Format | str | None) -> Format:
    """``auto`` becomes ``table`` on a terminal and ``plain`` otherwise."""
    fmt = Format(fmt or Format.auto)
    if fmt is Format.auto:
        return Format.table if sys.stdout.isatty() else Format.plain
    return fmt


def jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        # a number when a float holds it exactly, else the exact digits as a string
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dict | list):
        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value)


def _human(col: Column, row: dict[str, Any]) -> str:
    value = row.get(col.key)
    if col.human is not None:
        return col.human(value, row)
    return _text(value)


def dumps_json(data: Any) -> str:
    return json.dumps(jsonable(data), ensure_ascii=False, indent=2)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def render_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: Format | str | None,
    *,
    title: str | None = None,
) -> str:
    """Rows as text in ``fmt`` (``table`` is rendered by ``emit_rows`` through Rich)."""
    fmt = resolve(fmt)
    if fmt is Format.json:
        return dumps_json([{c.key: row.get(c.key) for c in columns} for row in rows]) + "\n"
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow([_csv_value(row.get(c.key)) for c in columns])
        return buf.getvalue()
    from tabulate import tabulate

    body = [[_human(c, row) for c in columns] for row in rows]
    text = tabulate(body, headers=[c.title for c in columns], tablefmt="simple",
                    disable_numparse=True)
    if not rows:
        text = "  ".join(c.title for c in columns) + "\n(no rows)"
    return text + "\n"


def _csv_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(jsonable(value), ensure_ascii=False)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return "" if value is None else str(value)


def rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None = None):
    from rich import box
    from rich.table import Table
    from rich.text import Text  # cells as Text: data such as "[####--]  42%" or "[x]" is not markup

    # borderless (a rule under the header, a space between columns):
    # a bordered 12-column table no longer fits 80 columns
    table = Table(title=title, header_style="bold", title_justify="left", expand=False, box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 0, 0, 0))
    cells = [[_human(c, row) for c in columns] for row in rows]
    for i, c in enumerate(columns):
        # a figure is never cut (its header may wrap); text folds when it must
        widest = max((len(line[i]) for line in cells), default=0) if c.justify == "right" else None
        table.add_column(c.title, justify=c.justify, overflow="fold", min_width=widest or None)
    for line in cells:
        table.add_row(*[Text(value) for value in line])
    return table


def emit_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: Format | str | None,
    *,
    title: str | None = None,
) -> None:
    fmt = resolve(fmt)
    if fmt is Format.table:
        stdout_console().print(rich_table(rows, columns, title))
        return
    sys.stdout.write(render_rows(rows, columns, fmt, title=title))
    sys.stdout.flush()


def emit_record(
    record: dict[str, Any], fields: Iterable[Column], fmt: Format | str | None, *, compact: bool = False
) -> None:
    """One record: key/value pairs for people, an object in JSON, one row in CSV.

    ``compact`` leaves empty fields out of the human formats (JSON and CSV keep them all).
    """
    fields = list(fields)
    fmt = resolve(fmt)
    human_fields = [c for c in fields if not compact or record.get(c.key) not in (None, "")]
    if fmt is Format.json:
        sys.stdout.write(dumps_json({c.key: record.get(c.key) for c in fields}) + "\n")
    elif fmt is Format.csv:
        sys.stdout.write(render_rows([record], fields, fmt))
    elif fmt is Format.table:
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for c in human_fields:
            table.add_row(c.title, Text(_human(c, record)))
        stdout_console().print(table)
    else:
        width = max((len(c.title) for c in human_fields), default=0)
        for c in human_fields:
            value = _human(c, record).replace("\n", "\n" + " " * (width + 2))
            sys.stdout.write(f"{c.title.ljust(width)}  {value}\n")
    sys.stdout.flush()


def say(message: str, *, style: str | None = None) -> None:
    """A message for people, on stderr."""
    if style and sys.stderr.isatty():
        stderr_console().print(message, style=style, markup=False)
    else:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def bar(pct: float | None, width: int = 10) -> str:
    """A text progress bar such as ``[####------]  42%``."""
    if pct is None:
        return ""
    pct = max(0.0, min(100.0, float(pct)))
    filled = int(round(pct / 100 * width))
    return f"[{'#' * filled}{'-' * (width - filled)}] {pct:3.0f}%"
