"""Table fan-out (``pgbg fanout``): one statement template, expanded over the tables that match.

What vacuumdb and reindexdb do from the client, done as pgbg jobs: the tables are chosen by the
server (``queries/fanout_tables.sql``), most urgent first, and each becomes one job of a group
that runs at most N at a time. A table's name reaches the SQL only as the server quoted it
(``format('%I.%I')``), so no name, however odd, can change the statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli.errors import UsageError

if TYPE_CHECKING:
    import psycopg

ORDERS = ("size", "dead", "xid-age", "name")
# {table}: schema.name, both quoted; {schema} and {name}: each quoted on its own
PLACEHOLDERS = ("{table}", "{schema}", "{name}")
HIDDEN_SCHEMAS = ["pg_catalog", "information_schema", "pgbg", "pgbg_bind"]
_SIZE = re.compile(r"([0-9]+)\s*(B|kB|KB|MB|GB|TB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
BYTES_MAX = 1024**5  # a petabyte: larger is no floor anyone means


@dataclass(frozen=True)
class Table:
    target: str  # schema.name, quoted as the server quotes identifiers
    schema: str
    name: str
    kind: str
    bytes: int
    dead_tuples: int
    xid_age: int
    sql: str  # the template, expanded for this table


def pattern(text: str, what: str) -> str:
    """A shell-style pattern (``*`` any characters, ``?`` one) as an anchored regular expression."""
    if not text or len(text) > 200 or "\x00" in text:
        raise UsageError(f"invalid {what} pattern {text!r}: give a name, or a pattern such as 'orders_*'")
    parts = []
    for run in re.findall(r"[*?]+|[^*?]+", text):
        if run[0] not in "*?":
            parts.append(re.escape(run))
        else:  # one atom per run of wildcards: `**` is `*`, and 100 of them cost the server seconds
            n = run.count("?")
            parts.append(".*" if n == 0 else f".{{{n},}}" if "*" in run else "." if n == 1 else f".{{{n}}}")
    return "^" + "".join(parts) + "$"


def parse_bytes(text: str, what: str) -> int:
    """``10MB``, ``512kB``, ``1GB`` or a bare number of bytes (units of 1024, as PostgreSQL's)."""
    match = _SIZE.fullmatch(text.strip()) if text and len(text) < 40 else None
    if not match:
        raise UsageError(f"invalid {what} {text!r}: use a size such as 500kB, 10MB or 2GB")
    value = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if value > BYTES_MAX:
        raise UsageError(f"invalid {what} {text!r}: at most 1024TB")
    return value


def check_template(template: str) -> None:
    if not any(p in template for p in PLACEHOLDERS):
        raise UsageError("the statement template names no table: put {table} (or {schema} and {name}) where "
                         "the table goes, e.g. 'VACUUM (ANALYZE) {table}'")
    expand(template, "s", "t")  # a placeholder where no name can be kept is refused before any query


MAINTENANCE = {"vacuum", "analyze", "analyse", "reindex", "cluster"}


def _first_word(sql_text: str) -> str:
    """The template's first keyword, as the server reads it (statements.split: comments, nested
    ones too, are skipped)."""
    from pgbg_cli import statements as st

    stmts = st.split(sql_text)
    toks = stmts[0].tokens if stmts else []
    return toks[0].value if toks and toks[0].kind == st.WORD else ""


_PLACEHOLDER = re.compile(r"\{(table|schema|name)\}")
# what the template's SQL text is at each point: a quoted part runs to its end, a comment too
_SQL_PART = re.compile(r"""(?P<literal>'(?:[^']|'')*'?)
    |(?P<comment>/\*)
    |(?P<other>[Ee]'(?:[^'\\]|''|\\.)*'?|"(?:[^"]|"")*"?|--[^\n]*
                |(?P<tag>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$).*?(?:(?P=tag)|$))
    |(?P<plain>\{(?:table|schema|name)\}|[^'"$Ee/{-]+|.)""", re.S | re.X)


def expand(template: str, schema_q: str, name_q: str) -> str:
    """The template with each placeholder replaced, in one pass: what a name put there is never
    read again, so a table named ``x{name}`` stays inside its quotes. In a string literal
    (``'{table}'::regclass``) the name's quotes are doubled, as the literal needs; in a comment,
    a dollar-quoted or E'' string or a quoted identifier no name could be kept in, so a
    placeholder there is refused (UsageError)."""
    parts = {"table": f"{schema_q}.{name_q}", "schema": schema_q, "name": name_q}
    out = []
    pos = 0
    while pos < len(template):
        m = _SQL_PART.match(template, pos)
        assert m is not None  # `.` matches any character
        text, pos = m.group(0), m.end()
        if m.group("comment"):  # to its end: block comments nest
            depth = 1
            while depth and pos < len(template):
                step = template[pos:pos + 2]
                depth += 1 if step == "/*" else -1 if step == "*/" else 0
                pos += 2 if step in ("/*", "*/") else 1
            text = template[m.start():pos]
        if m.group("literal"):
            out.append(_PLACEHOLDER.sub(lambda p: _in_literal(parts[p.group(1)]), text))
        elif m.group("other") or m.group("comment"):
            if _PLACEHOLDER.search(text):
                raise UsageError(f"{_PLACEHOLDER.search(text).group(0)} inside {text[:2]!r}...: put it where an "
                                 "identifier goes, or in a plain '...' literal")
            out.append(text)
        else:
            out.append(_PLACEHOLDER.sub(lambda p: parts[p.group(1)], text))
    return "".join(out)


def _in_literal(name: str) -> str:
    """A quoted name inside a plain '...' literal: its quotes doubled. A backslash is refused:
    where standard_conforming_strings is off (a setting of the worker's, not known here) it
    would escape the literal's closing quote."""
    if "\\" in name:
        raise UsageError(f"the table {name} has a backslash in its name, which a '...' literal cannot hold "
                         "safely: put the placeholder where an identifier goes")
    return name.replace("'", "''")


def find(conn: psycopg.Connection[Any], template: str, *, schemas: list[str], tables: list[str],
         excluded: list[str], min_bytes: int, min_dead: int, min_xid_age: int,
         order: str) -> tuple[list[Table], list[Table]]:
    """(the tables to run the template on, the matching ones the role may not maintain, for a
    template that maintains tables: VACUUM, ANALYZE, REINDEX, CLUSTER)."""
    from pgbg_cli import queries
    from pgbg_cli.db import server_version

    check_template(template)
    maintains = _first_word(template) in MAINTENANCE
    rows = conn.execute(queries.text("fanout_tables"), {
        "maintain": server_version(conn) >= 170000,
        "schemas": [pattern(s, "schema") for s in schemas],
        "hidden": HIDDEN_SCHEMAS,
        "tables": [pattern(t, "table") for t in tables],
        "excluded": [pattern(t, "--exclude-table") for t in excluded],
        "min_bytes": min_bytes, "min_dead": min_dead, "min_xid_age": min_xid_age, "order": order,
    }).fetchall()
    chosen: list[Table] = []
    refused: list[Table] = []
    for row in rows:
        table = Table(row["target"], row["schema"], row["name"], row["kind"], row["bytes"],
                      row["dead_tuples"], row["xid_age"], expand(template, row["schema_q"], row["name_q"]))
        (chosen if row["may_maintain"] or not maintains else refused).append(table)
    return chosen, refused

