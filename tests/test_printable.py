"""What people read is escaped; what scripts read is exact. No server needed.

A job's SQL, label, message or reason, a role or application name, a result column: any of
them may hold control characters (ESC sequences that recolour or clear the terminal, a
carriage return or newline that fakes a row), bidi overrides that turn text around, or
Rich markup. Tables (Rich), plain text (tabulate) and messages on stderr show them as
visible escapes (``output.printable``); JSON and CSV carry them unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from rich.console import Console, Group
from rich.text import Text

from pgbg_cli import jobview, output, watch
from pgbg_cli.output import Column, Format, printable

NASTY = {
    "label": "nightly\n1:1  fake-row  succeeded",
    "message": "boom\r\x1b[2Jcleared \x1b]8;;http://x\x07link\x1b]8;;\x07",
    "reason": "[bold]not bold[/bold] [link=http://evil]x[/link] [/nonsense]",
    "sql": "SELECT 1 /* \u202eevil\u202c */\n\tFROM t\x00\x7f\x85\x9b",
    "owner": "role\x08\x08\x08xx\u2066",
}
RAW = "".join(NASTY.values())
UNSAFE = [chr(c) for c in [*range(0x20), *range(0x7f, 0xa0)]] + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029",
                                                                    *map(chr, range(0x202a, 0x202f)),
                                                                    *map(chr, range(0x2066, 0x206a))]


def _assert_clean(text: str, *, lines_ok: bool = True) -> None:
    """No unsafe character (a newline only as the layout's own line break)."""
    for char in UNSAFE:
        if lines_ok and char == "\n":
            continue
        assert char not in text, f"{char!r} reached the terminal: {text!r}"


# --- printable ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\nb", "a\\nb"), ("a\rb", "a\\rb"), ("a\tb", "a\\tb"), ("\x1b[31mred", "\\x1b[31mred"),
        ("\x00", "\\x00"), ("\x7f", "\\x7f"), ("\x85", "\\x85"), ("\x9b", "\\x9b"), ("\x1f", "\\x1f"),
        ("abc\u202edcba", "abc\\u202edcba"), ("\u2066x\u2069", "\\u2066x\\u2069"), ("\u200f", "\\u200f"),
        ("\u061c", "\\u061c"), ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ],
)
def test_printable_escapes(raw, shown):
    assert printable(raw) == shown


@pytest.mark.parametrize("text", ["plain text", "C:\\temp\\x", "E'\\n'", "café 日本語 😀 👩‍👩‍👧", "[bold]x[/bold]",
                                  " spaced  out ", ""])
def test_printable_leaves_the_rest_alone(text):
    assert printable(text) == text


def test_printable_escapes_every_unsafe_character_and_is_idempotent():
    text = "".join(UNSAFE)
    once = printable(text)
    _assert_clean(once, lines_ok=False)
    assert once.isascii() and once.isprintable()
    assert printable(once) == once


# --- rows: plain, table, JSON, CSV --------------------------------------------------------

COLUMNS = [Column("label", "LABEL"), Column("owner", "ROLE"), Column("message", "MESSAGE"),
           Column("reason", "REASON"), Column("sql", "SQL")]
ROWS = [NASTY, {"label": "second", "owner": "r", "message": "", "reason": "", "sql": "SELECT 2"}]


def _rich(renderable, width: int = 400) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, emoji=False, highlight=False).print(renderable)
    return buf.getvalue()


def test_plain_rows_escape_and_keep_one_line_per_row():
    text = output.render_rows(ROWS, COLUMNS, Format.plain)
    _assert_clean(text)
    lines = text.splitlines()
    assert len(lines) == 2 + len(ROWS)  # header, rule, one line per row: no fake row
    assert "nightly\\n1:1  fake-row  succeeded" in lines[2]
    assert "\\x1b[2J" in lines[2] and "\\u202eevil\\u202c" in lines[2]
    assert "\\n\\tFROM t\\x00\\x7f\\x85\\x9b" in lines[2]
    assert "[bold]not bold[/bold] [link=http://evil]x[/link] [/nonsense]" in lines[2]


def test_table_rows_escape_and_never_read_markup():
    text = _rich(output.rich_table(ROWS, COLUMNS))
    _assert_clean(text)
    assert "[bold]not bold[/bold] [link=http://evil]x[/link] [/nonsense]" in text
    assert "nightly\\n1:1  fake-row  succeeded" in text and "\\x1b]8;;http://x\\x07link" in text
    assert len([line for line in text.splitlines() if line.strip()]) == 2 + len(ROWS)


def test_headers_are_data_too():
    # --result prints columns named by the job's query: SELECT 1 AS "[/x]\x1b[2J"
    columns = [Column("[/x]\x1b[2J\nY"), Column("[bold]b")]
    rows = [{"[/x]\x1b[2J\nY": 1, "[bold]b": 2}]
    plain = output.render_rows(rows, columns, Format.plain)
    _assert_clean(plain)
    assert plain.splitlines()[0].split() == ["[/x]\\x1b[2J\\nY", "[bold]b"]
    table = _rich(output.rich_table(rows, columns, title="t\x1b[1m[/t]"))
    _assert_clean(table)
    assert "[/x]\\x1b[2J\\nY" in table and "[bold]b" in table and "t\\x1b[1m[/t]" in table
    assert output.render_rows([], columns, Format.plain).startswith("[/x]\\x1b[2J\\nY  [bold]b\n")
    assert json.loads(output.render_rows(rows, columns, Format.json)) == rows


def test_json_and_csv_carry_the_raw_characters():
    data = json.loads(output.render_rows(ROWS, COLUMNS, Format.json))
    assert data == ROWS
    parsed = list(csv.reader(io.StringIO(output.render_rows(ROWS, COLUMNS, Format.csv), newline="")))
    assert parsed[0] == [c.key for c in COLUMNS]
    assert parsed[1] == [NASTY[c.key] for c in COLUMNS]


# --- one record: show, and a job's outcome -------------------------------------------------

JOB = {"id": 7, "cookie": 42, "state": "failed", "sqlstate": "P0001", "queued_at": dt.datetime(2026, 1, 1),
       "finished_at": dt.datetime(2026, 1, 1, 0, 0, 1), **NASTY}


def test_record_plain_escapes(capsys):
    output.emit_record(jobview.enrich(JOB), jobview.RECORD_FIELDS, Format.plain, compact=True)
    out = capsys.readouterr().out
    _assert_clean(out)
    keys = [line.split("  ")[0] for line in out.splitlines()]
    assert keys == [c.title for c in jobview.RECORD_FIELDS
                    if jobview.enrich(JOB).get(c.key) not in (None, "")]  # one line per field
    sql = [line for line in out.splitlines() if line.startswith("sql ")]
    assert sql[0].split(None, 1)[1] == "SELECT 1 /* \\u202eevil\\u202c */\\n\\tFROM t\\x00\\x7f\\x85\\x9b"


def test_record_table_escapes(capsys, monkeypatch):
    monkeypatch.setattr(output, "stdout_console",
                        lambda: Console(width=300, color_system=None, emoji=False, highlight=False))
    output.emit_record(jobview.enrich(JOB), jobview.RECORD_FIELDS, Format.table, compact=True)
    out = capsys.readouterr().out
    _assert_clean(out)
    assert "[bold]not bold[/bold] [link=http://evil]x[/link] [/nonsense]" in out
    assert "boom\\r\\x1b[2Jcleared" in out


def test_record_json_is_exact(capsys):
    output.emit_record(jobview.enrich(JOB), jobview.RECORD_FIELDS, Format.json)
    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("label", "message", "reason", "sql")} == {
        k: NASTY[k] for k in ("label", "message", "reason", "sql")}
    assert data["owner"] == NASTY["owner"]


# --- the one-line job tables of list (terminal) and list --watch ----------------------------


def test_job_lines_escape_labels_and_roles_and_collapse_query_previews():
    rows = [jobview.enrich({**JOB, "state": "running", "sql": "SELECT\n\t1 \x1b[2J"})]
    text = _rich(Group(*watch.jobs_table(rows, 300, 10, keep_handles=True)), width=300)
    _assert_clean(text)
    body = [line for line in text.splitlines() if line.strip()]
    assert len(body) == 3  # header, rule, the job
    assert "nightly\\n1:1  fake-row  succeeded" in body[2] and "role\\x08\\x08\\x08xx\\u2066" in body[2]
    assert "SELECT 1 \\x1b[2J" in body[2]  # a preview: white space collapsed, the rest escaped


def test_watch_summary_line_escapes_groups():
    assert watch._one_line("a\n\tb\x1b[2J\u202e") == "a b\\x1b[2J\\u202e"


# --- messages on stderr -------------------------------------------------------------------


def test_say_escapes_a_job_summary(capsys):
    output.say(f"pgbg: {jobview.summary(JOB)}")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    _assert_clean(err)
    assert "job 7:42 failed: [P0001] boom\\r\\x1b[2Jcleared" in err
    assert "[/nonsense]" in err


def test_usage_errors_escape_what_was_typed(cli):
    res = cli("list", "--lab\x1b[2J\nel", dsn="postgresql://nobody@127.0.0.1:1/x")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "--lab\\x1b[2J\\" in res.stderr  # (click spells the newline \x0a)
    _assert_clean(res.stderr)


def test_live_bar_shows_a_reason_literally():
    import datetime as dt

    from pgbg_cli.commands import livebar

    now = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.timezone.utc)
    job = {"id": 1, "state": "queued", "queued_at": now, "reason": "[/bold] waiting \x1b[2J\u202e"}
    lines = livebar.frame([livebar.Seen(job, None)], now, 80, 24)
    assert lines == ["job 1 queued      0s  [/bold] waiting \\x1b[2J\\u202e"]
    text = _rich(Group(*[Text(line) for line in lines]), width=80)  # markup would raise on the stray tag
    _assert_clean(text)
