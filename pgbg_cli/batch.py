"""Many jobs in one invocation: where each job's SQL came from, and submitting them all or none.

The jobs of a batch come from several SQL arguments (one job each), from a file of statements
(one job per statement, split by ``statements.split``, which follows the server's lexical
rules, and each piece then parsed by the server itself), or from lines (one job per non-blank
line). Every job is described and checked first (``precheck``); then all are submitted in
one transaction, pipelined in one round trip: a job the server refuses leaves nothing of the
batch queued, and the error names where that job was in the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import describe, jobs, precheck
from pgbg_cli import statements as st
from pgbg_cli.errors import JobFailed, PgbgError, UsageError

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Piece:
    """One job's SQL, and where it was in the input (for messages)."""

    sql: str
    where: str


def from_args(args: list[str]) -> list[Piece]:
    """One job per SQL argument (an argument of several statements is one job, as ever)."""
    return [Piece(a, f"argument {i + 1}" if len(args) > 1 else "the SQL") for i, a in enumerate(args)]


def from_lines(text: str, source: str) -> list[Piece]:
    """One job per non-blank line of ``text``."""
    return [Piece(line.strip(), f"{source} line {n}")
            for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def from_statements(text: str, source: str, *, standard_strings: bool = True) -> list[Piece]:
    """One job per statement of ``text``; each named by its number and the line it starts on."""
    stmts = st.split(text, standard_strings=standard_strings)
    pieces = []
    for i, stmt in enumerate(stmts):
        line = text.count("\n", 0, stmt.tokens[0].start) + 1 if stmt.tokens else 1
        pieces.append(Piece(stmt.text, f"{source}: statement {i + 1} (line {line})"))
    return pieces


def _refused(piece: Piece, error: Exception) -> JobFailed:
    from pgbg_cli.db import first_line

    why = first_line(str(error)).removeprefix("pgbg: ")
    if "nothing was queued" in why:
        return JobFailed(f"{piece.where}: {why.replace('nothing was queued', 'nothing of this batch was queued', 1)}")
    return JobFailed(f"{piece.where}: {why}; nothing of this batch was queued")


def submit(
    conn: psycopg.Connection[Any],
    pieces: list[Piece],
    *,
    label: str | None = None,
    timeout_ms: int | None = None,
    queue_size: int = 0,
    group: str | None = None,
    group_limit: int | None = None,
) -> tuple[list[dict[str, Any]], jobs.Start | None]:
    """Queue one job per piece, all in one transaction (all or none), then start this role's
    supervisor if none is alive. Returns the jobs (id and cookie), in order, and what starting
    it found."""
    from pgbg_cli.db import PINNED_PATH, check_dates, user_search_path
    from pgbg_cli.pipeline import Batch

    if not pieces:
        raise UsageError("no SQL given")
    for piece in pieces:
        jobs.check_sql(piece.sql, piece.where)
    check_dates(conn)
    path = user_search_path(conn)
    # every statement described in one round trip, parsed with the user's search_path
    batch = Batch(conn)
    batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (path,))
    queued = [describe.queue(batch, piece.sql) for piece in pieces]
    pin = batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (PINNED_PATH,))
    batch.run()
    pin.rows()
    columns = []
    for piece, slots in zip(pieces, queued, strict=True):
        shape = describe.shape_of(*slots)
        try:
            precheck.check(conn, piece.sql, shape)
        except JobFailed as exc:
            raise _refused(piece, exc) from None
        columns.append(jobs.columns_of(shape))
    # one statement queues them all (all or none); the supervisor's start after it commits
    from psycopg.types.json import Jsonb

    shapes = [None if t is None else {"t": t, "m": m, "n": n} for t, m, n in columns]
    batch = Batch(conn)
    submitted = batch.query(SUBMIT_MANY_SQL, ([p.sql for p in pieces], Jsonb(shapes), label, timeout_ms, queue_size,
                                              group, group_limit, path))
    batch.sync()
    started = batch.query(jobs.ENSURE_IF_QUEUED_SQL)
    batch.run()
    if submitted.error is not None:
        raise submitted.error  # as a single launch's submit (pgbg's one-line messages)
    rows = sorted(submitted.rows(), key=lambda r: r["id"])
    try:
        start = jobs.start_of(started, conn.info.user)
    except PgbgError:
        raise
    except Exception as exc:  # psycopg's, from the supervisor's start
        problem = jobs.start_trouble(rows[0], exc)
        if problem is exc:
            raise
        raise problem from None
    return rows, start


SUBMIT_MANY_SQL = ("SELECT id, cookie, current_user AS owner "
                   "FROM pgbg.submit_many(%s::text[], %s::jsonb, %s, %s, %s, %s, %s, p_search_path => %s)")
