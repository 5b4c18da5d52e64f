"""The one output layer: Rich tables on a terminal, plain text tables, JSON or CSV.

Only data goes to stdout; messages go to stderr (see ``say``). NO_COLOR is honoured
(Rich reads it), and plain text carries no escape codes. JSON and CSV carry every value
exactly; what people read (tables, plain text, messages) goes through ``printable``, so a
job's SQL, label or message cannot move the cursor, fake a row or turn text around, and
Rich never reads data as markup (cells, headers and titles are ``Text``).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import sys
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
    # table/plain rendering; a list of strings is shown as that many lines
    human: Callable[[Any, dict[str, Any]], str | list[str]] | None = None
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


# C0 controls (newline and tab included), DEL, C1 controls, and the Unicode characters that
# reorder or break lines: bidi embeddings/overrides/isolates/marks, line and paragraph separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """``text`` safe to show people on a terminal: one line, nothing that acts on the terminal.

    Newline, carriage return and tab become ``\\n``, ``\\r`` and ``\\t``; other C0 controls,
    DEL and C1 controls become ``\\xHH`` (ESC is ``\\x1b``); bidi controls (U+061C, U+200E,
    U+200F, U+202A-U+202E, U+2066-U+2069) and the line/paragraph separators U+2028/U+2029 become
    ``\\uHHHH``. Everything else, other languages and emoji included, is left alone. So is a
    backslash: data that already holds a backslash sequence (``\\n`` typed as two characters)
    looks the same as an escaped newline, a price paid to keep SQL, regexes and paths readable;
    JSON and CSV tell them apart. Escaping twice changes nothing more.
    """
    return _UNPRINTABLE.sub(_escape, text)


def jsonable(value: Any) -> Any:
    import decimal  # here, not at the top: commands that print no JSON never load these
    import uuid

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
        import json

        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value)


def _human(col: Column, row: dict[str, Any]) -> str:
    """A cell for people, escaped (``printable``); only a renderer's list of lines spans lines."""
    value = row.get(col.key)
    text = col.human(value, row) if col.human is not None else _text(value)
    if isinstance(text, list | tuple):
        return "\n".join(printable(str(line)) for line in text)
    return printable(text)


def preload(fmt: Format | str | None) -> None:
    """Import now what printing rows in ``fmt`` will need. A command that waits (``wait``,
    ``launch --wait``) calls this before it sleeps, so that it prints and exits as soon as
    its wait ends, instead of loading the renderer then (tens of milliseconds)."""
    fmt = resolve(fmt)
    if fmt is Format.table:
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401
        import rich.text  # noqa: F401
    elif fmt is Format.plain:
        import pgbg_cli.plaintable  # noqa: F401
    else:
        import csv  # noqa: F401
        import decimal  # noqa: F401
        import json  # noqa: F401
        import uuid  # noqa: F401


def dumps_json(data: Any) -> str:
    import json

    return json.dumps(jsonable(data), ensure_ascii=False, indent=2)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, emoji=False)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


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
        lines = [_csv_line([c.key for c in columns])]
        lines += [_csv_line([_csv_value(row.get(c.key)) for c in columns]) for row in rows]
        return "".join(lines)
    from pgbg_cli.plaintable import simple  # tabulate's "simple" layout, without its import time

    body = [[_human(c, row) for c in columns] for row in rows]
    headers = [printable(c.title) for c in columns]
    text = simple(body, headers)
    if not rows:
        text = "  ".join(headers) + "\n(no rows)"
    return text + "\n"


def _csv_line(values: list[str]) -> str:
    """One CSV record ending in ``\\n``. The writer is told ``\\r\\n`` so that a field holding
    either character is quoted (with ``\\n`` alone, a lone ``\\r`` went out bare and split the row)."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue()[:-2] + "\n"


def _csv_value(value: Any) -> str:
    if isinstance(value, dict | list):
        import json

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
    table = Table(title=Text(printable(title)) if title else None, header_style="bold", title_justify="left",
                  expand=False, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 0))
    cells = [[_human(c, row) for c in columns] for row in rows]
    for i, c in enumerate(columns):
        # a figure is never cut (its header may wrap); text folds when it must
        widest = max((len(line[i]) for line in cells), default=0) if c.justify == "right" else None
        table.add_column(Text(printable(c.title)), justify=c.justify, overflow="fold", min_width=widest or None)
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
            table.add_row(Text(printable(c.title)), Text(_human(c, record)))
        stdout_console().print(table)
    else:
        titles = [printable(c.title) for c in human_fields]
        width = max((len(t) for t in titles), default=0)
        for title, c in zip(titles, human_fields, strict=True):
            value = _human(c, record).replace("\n", "\n" + " " * (width + 2))  # a renderer's lines
            sys.stdout.write(f"{title.ljust(width)}  {value}\n")
    sys.stdout.flush()


def say(message: str, *, style: str | None = None) -> None:
    """A message for people, on stderr: one line, escaped (``printable``)."""
    message = printable(message)
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
