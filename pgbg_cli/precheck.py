"""What the server can tell about a job's SQL before it is queued: ``pgbg launch`` fails fast.

``describe`` has the server parse, analyse and plan a single statement (never running it);
this module turns what it found, and what the statements' own words show, into one-line
refusals (exit 1) before anything is queued:

- a syntax error (any statement), an unknown table, column or function, a missing privilege
  on a table, column or function (a single statement): the server's message and SQLSTATE;
- a statement pg_background never runs (transaction control, LISTEN): 0A000 at run time;
- a statement PostgreSQL runs only alone (VACUUM, CREATE INDEX CONCURRENTLY, ...) among
  others: 25001 at run time ("... cannot be executed from a function");
- VACUUM or ANALYZE of a table that does not exist, is not a table, or that the role may not
  maintain: the server would skip it with a mere WARNING and report success.

What only running shows is left to run time (README, "Errors known only when a job runs").
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from pgbg_cli import statements as st
from pgbg_cli.errors import JobFailed

if TYPE_CHECKING:
    import psycopg

    from pgbg_cli.describe import Shape

# relkinds VACUUM and ANALYZE work on; others are skipped with a WARNING
VACUUMABLE = {"r", "m", "t", "p"}
ANALYZABLE = {"r", "m", "p", "f"}
PARTITIONED = {"p", "I"}


def refuse(message: str, sqlstate: str | None) -> JobFailed:
    from pgbg_cli.db import first_line

    code = f" [{sqlstate}]" if sqlstate else ""
    return JobFailed(f"the server refused the SQL; nothing was queued: {first_line(message)}{code}")


def is_multiple(shape: Shape) -> bool:
    """Whether describing failed only because the SQL holds several statements."""
    return not shape.known and shape.sqlstate == "42601" and "multiple commands" in (shape.error or "")


def check(conn: psycopg.Connection[Any], sql_text: str, shape: Shape) -> None:
    """Raise JobFailed, with one line, for SQL that cannot succeed as a job."""
    multiple = is_multiple(shape)
    if not shape.known and not multiple and (shape.sqlstate or "").startswith("42"):
        # a syntax error, an unknown table, column or function (the server's own words)
        raise refuse(shape.error or "", shape.sqlstate)
    if shape.known and (shape.plan_sqlstate or "").startswith("42"):
        # a missing privilege on a table, column or function; a $1 with no value
        raise refuse(shape.plan_error or "", shape.plan_sqlstate)
    standard = conn.info.parameter_status("standard_conforming_strings") != "off"
    stmts = st.split(sql_text, standard_strings=standard)
    for stmt in stmts:
        never = st.never_in_a_job(stmt)
        if never and (len(stmts) == 1 or _one_statement(conn, stmt.text)):
            raise JobFailed(f"{never[0]} cannot run in a job: {never[1]}; nothing was queued [0A000]")
    lookups: list[tuple[str, st.Statement, str, st.Target]] = []  # (purpose, statement, command, target)
    if multiple:
        for i, stmt in enumerate(stmts):
            command = st.must_run_alone(stmt)
            if command and _one_statement(conn, stmt.text):
                raise _alone(command, i, stmts)
            sensitive = st.partition_sensitive_target(stmt)
            if sensitive:
                lookups.append(("alone", stmt, sensitive[0], sensitive[1]))
    if stmts:
        # only the first statement: a later one may name a table an earlier one creates
        maintained = st.vacuum_targets(stmts[0])
        if maintained:
            lookups.extend(("maintain", stmts[0], maintained[0], t) for t in maintained[1])
    if lookups:
        _check_relations(conn, lookups, stmts)


def _one_statement(conn: psycopg.Connection[Any], text: str) -> bool:
    """The server's word that ``text`` alone is one statement (parsed, never run): a check of
    the split before anything is refused on its account."""
    from psycopg import pq

    res = conn.pgconn.prepare(b"", text.encode("utf-8"))
    if res.status == pq.ExecStatus.COMMAND_OK:
        return True
    state = res.error_field(pq.DiagnosticField.SQLSTATE)
    if conn.pgconn.transaction_status == pq.TransactionStatus.INERROR:
        conn.pgconn.exec_(b"ROLLBACK")
    return state is not None and state.decode() != "42601"


def _alone(command: str, index: int, stmts: list[st.Statement]) -> JobFailed:
    texts = [s.text for s in stmts]
    if len(texts) <= 3 and all(len(t) <= 60 and "\n" not in t for t in texts):
        how = ": " + "; ".join(f"pgbg launch {shlex.quote(t)}" for t in texts)
    else:
        how = f" (statement {index + 1} of {len(texts)}: {st.excerpt(texts[index], 40)})"
    return JobFailed(f"{command} must run alone, and this SQL has {len(texts)} statements (PostgreSQL would "
                     f"refuse it: 25001); nothing was queued: launch each as a job of its own{how}")


def _check_relations(conn: psycopg.Connection[Any], lookups: list[tuple[str, st.Statement, str, st.Target]],
                     stmts: list[st.Statement]) -> None:
    import psycopg

    from pgbg_cli import queries
    from pgbg_cli.db import server_version, user_search_path

    maintain = server_version(conn) >= 170000  # the MAINTAIN privilege (PostgreSQL 17)
    cur = psycopg.ClientCursor(conn)
    cur.execute(queries.text("relation_targets"), {
        "path": user_search_path(conn), "maintain": maintain, "names": [t.name for _, _, _, t in lookups]})
    cur.nextset()
    rows = cur.fetchall()
    for (purpose, stmt, command, target), row in zip(lookups, rows, strict=True):
        if purpose == "alone":
            if row["found"] and row["relkind"] in PARTITIONED and _one_statement(conn, stmt.text):
                raise _alone(command, stmts.index(stmt), stmts)
            continue
        if not row["found"]:
            raise refuse(f'relation "{target.name}" does not exist', "42P01")
        kinds = VACUUMABLE if command == "VACUUM" else ANALYZABLE
        verb = command.lower()
        if row["relkind"] not in kinds:
            raise JobFailed(f'{command} would skip "{target.name}": it cannot {verb} that kind of relation '
                            "(only tables and materialized views); nothing was queued [42809]")
        if not row["may_maintain"]:
            takes = "the MAINTAIN privilege on it, or owning it" if maintain else "owning it, or the database"
            raise JobFailed(f'{command} would skip "{target.name}": permission denied to {verb} it (it takes '
                            f"{takes}); nothing was queued [42501]")
