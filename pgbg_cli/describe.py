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

    from pgbg_cli.pipeline import Slot


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
    """Parse and describe ``query`` on the server with the user's search_path; nothing is executed.

    One round trip; none when ``preflight`` described this query on this connection already.
    """
    done = _described.pop(conn, None)
    if done is not None and done[0] == query:
        return done[1]
    from pgbg_cli.db import PINNED_PATH, user_search_path
    from pgbg_cli.pipeline import Batch

    batch = Batch(conn)
    # parsed as the user's session would parse it: with the user's search_path
    batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (user_search_path(conn),))
    slot = batch.describe(query)
    batch.sync()
    pin = batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (PINNED_PATH,))
    batch.run()
    pin.rows()  # the pinned path is back, or this raises
    return shape_of(slot)


def shape_of(slot: Slot) -> Shape:
    """The Shape that a described statement's slot tells (``Batch.describe``)."""
    if slot.error is not None:
        message = str(slot.error).strip()
        return Shape([], [], [], error=message.removeprefix("ERROR:").strip() or "cannot describe",
                     sqlstate=getattr(getattr(slot.error, "diag", None), "sqlstate", None))
    desc = slot.result
    assert desc is not None
    names = [(desc.fname(i) or b"?column?").decode("utf-8", "replace") for i in range(desc.nfields)]
    return Shape(names, [desc.ftype(i) for i in range(desc.nfields)], [desc.fmod(i) for i in range(desc.nfields)])


def remember(conn: psycopg.Connection[Any], query: str, shape: Shape) -> None:
    """Keep what ``preflight`` found, for the ``describe`` of the same query that follows."""
    _described[conn] = (query, shape)


_described: WeakKeyDictionary[Any, tuple[str, Shape]] = WeakKeyDictionary()
