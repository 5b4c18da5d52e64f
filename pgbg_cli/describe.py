"""What a statement returns, asked of the server without running it (Parse + Describe).

pg_background hands rows back only through a column definition list that matches the
worker's result exactly; describing the statement first spares users from writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

_STATEMENT = b"pgbg_describe"


@dataclass(frozen=True)
class Shape:
    """The result columns of a statement, or why they could not be known."""

    names: list[str]
    types: list[int]
    typmods: list[int]
    error: str | None = None
    sqlstate: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None

    @property
    def returns_rows(self) -> bool:
        return self.known and bool(self.types)


def describe(conn: psycopg.Connection[Any], query: str) -> Shape:
    """Parse and describe ``query`` on the server; nothing is executed."""
    from psycopg import pq, sql

    from pgbg_cli.db import PINNED_PATH, user_search_path

    pgconn = conn.pgconn
    # parsed as the user's session would parse it: with the user's search_path
    pgconn.exec_(sql.SQL("SELECT pg_catalog.set_config('search_path', {}, false)")
                 .format(sql.Literal(user_search_path(conn))).as_bytes(conn))
    pin = sql.SQL("SELECT pg_catalog.set_config('search_path', {}, false)").format(
        sql.Literal(PINNED_PATH)).as_bytes(conn)
    res = pgconn.prepare(_STATEMENT, query.encode(conn.info.encoding and "utf-8"))
    if res.status != pq.ExecStatus.COMMAND_OK:
        message = (res.error_message or b"").decode("utf-8", "replace").strip()
        state = res.error_field(pq.DiagnosticField.SQLSTATE)
        _cleanup(conn)
        pgconn.exec_(pin)
        return Shape([], [], [], error=message.removeprefix("ERROR:").strip() or "cannot describe",
                     sqlstate=state.decode() if state else None)
    try:
        desc = pgconn.describe_prepared(_STATEMENT)
        names = [(desc.fname(i) or b"?column?").decode("utf-8", "replace") for i in range(desc.nfields)]
        types = [desc.ftype(i) for i in range(desc.nfields)]
        mods = [desc.fmod(i) for i in range(desc.nfields)]
    finally:
        pgconn.exec_(b"DEALLOCATE " + _STATEMENT + b"; " + pin)
    return Shape(names, types, mods)


def _cleanup(conn: psycopg.Connection[Any]) -> None:
    from psycopg import pq

    if conn.pgconn.transaction_status == pq.TransactionStatus.INERROR:
        conn.pgconn.exec_(b"ROLLBACK")
