"""What a statement returns, asked of the server without running it (Parse + Describe).

pg_background hands rows back only through a column definition list that matches the
worker's result exactly; describing the statement first spares users from writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    import psycopg

    from pgbg_cli.pipeline import Batch, Slot


@dataclass(frozen=True)
class Shape:
    """The result columns of a statement, or why they could not be known."""

    names: list[str]
    types: list[int]
    typmods: list[int]
    error: str | None = None
    sqlstate: str | None = None
    # what planning it says (EXPLAIN of the prepared statement, never run): a missing privilege
    plan_error: str | None = None
    plan_sqlstate: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None

    @property
    def returns_rows(self) -> bool:
        return self.known and bool(self.types)


def describe(conn: psycopg.Connection[Any], query: str) -> Shape:
    """Parse and describe ``query`` on the server with the user's search_path; nothing is executed.

    One round trip; none when ``preflight`` described this query on this connection already.
    """
    done = _described.pop(conn, None)
    if done is not None and done[0] == query:
        return done[1]
    from pgbg_cli.db import PINNED_PATH, user_search_path
    from pgbg_cli.pipeline import Batch

    batch = Batch(conn)
    # parsed (and planned) as the user's session would: with the user's search_path
    batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (user_search_path(conn),))
    slots = queue(batch, query)
    pin = batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (PINNED_PATH,))
    batch.run()
    pin.rows()  # the pinned path is back, or this raises
    return shape_of(*slots)


# The statement is prepared under a name, so that EXPLAIN can plan it: the executor's start
# checks privileges on tables, columns and functions, which parsing does not. EXPLAIN of a
# prepared statement never executes it (utility statements included: "no plan structure").
STATEMENT = "pgbg_describe"
EXPLAIN_SQL = f"EXPLAIN (COSTS OFF) EXECUTE {STATEMENT}"
DEALLOCATE_SQL = f"DEALLOCATE {STATEMENT}"


def queue(batch: Batch, query: str) -> tuple[Slot, Slot]:
    """Queue the describe of ``query``, its plan, and the clean-up, each its own transaction
    (under the search_path in force): the slots of the describe and of the plan."""
    described = batch.describe(query, name=STATEMENT)
    batch.sync()
    planned = batch.query(EXPLAIN_SQL)
    batch.sync()
    batch.query(DEALLOCATE_SQL)  # fails, harmlessly, when the statement could not be prepared
    batch.sync()
    return described, planned


def shape_of(slot: Slot, planned: Slot | None = None) -> Shape:
    """The Shape that a described statement's slot tells (``Batch.describe``), and its plan's."""
    if slot.error is not None:
        return Shape([], [], [], error=_message(slot.error) or "cannot describe", sqlstate=_sqlstate(slot.error))
    desc = slot.result
    assert desc is not None
    names = [(desc.fname(i) or b"?column?").decode("utf-8", "replace") for i in range(desc.nfields)]
    plan_error = plan_state = None
    if desc.nparams:
        # a job runs without values for $n (its worker says 42P02)
        plan_error, plan_state = "there is no parameter $1: a job's SQL runs without parameter values", "42P02"
    elif planned is not None and planned.error is not None:
        plan_error, plan_state = _message(planned.error), _sqlstate(planned.error)
    return Shape(names, [desc.ftype(i) for i in range(desc.nfields)], [desc.fmod(i) for i in range(desc.nfields)],
                 plan_error=plan_error, plan_sqlstate=plan_state)


def _message(error: Exception) -> str:
    return str(error).strip().removeprefix("ERROR:").strip()


def _sqlstate(error: Exception) -> str | None:
    return getattr(getattr(error, "diag", None), "sqlstate", None)


def remember(conn: psycopg.Connection[Any], query: str, shape: Shape) -> None:
    """Keep what ``preflight`` found, for the ``describe`` of the same query that follows."""
    _described[conn] = (query, shape)


_described: WeakKeyDictionary[Any, tuple[str, Shape]] = WeakKeyDictionary()
