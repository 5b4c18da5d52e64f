"""What a command checks before it works, in one round trip after connecting.

The search_path is read and pinned, pg_background is found (``extension.discover``'s
query), pgbg's schema is checked (``install.require``'s queries) and, for a launch, the job's
SQL is described (``describe``): all sent together (``pipeline.Batch``), then judged in
that order, so a missing extension, schema or privilege gets the same one-line message as
when each was asked alone.

The SQL is described first, before the pin, under the search_path the user's session
starts with: it is parsed as the user's session would parse it (what ``describe`` does by
setting that path). pgbg's own statements all come after the pin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from pgbg_cli.extension import Extension


def check(conn: psycopg.Connection[Any], *, need_schema: bool = True, sql: str | None = None) -> Extension:
    """Pin the search_path, find pg_background, check pgbg's schema (unless ``need_schema``
    is false) and describe ``sql`` (for ``describe.describe``); raise the first problem found."""
    from pgbg_cli import db, describe, extension, install, queries
    from pgbg_cli.pipeline import Batch

    batch = Batch(conn)
    described = None
    if sql is not None and sql.strip() and "\x00" not in sql:  # else jobs.register says what is wrong
        described = describe.queue(batch, sql)
    pin = batch.query(db.PIN_SQL, (db.PINNED_PATH,))
    ext = batch.query(queries.text("discover_extension"))
    status = batch.query(install.STATUS_SQL) if need_schema else None
    batch.sync()
    if need_schema:  # these fail when the schema is missing or not readable: their own transaction
        meta = batch.query(install.META_SQL)
        allowed = batch.query(install.ALLOWED_SQL)
    batch.run()

    db.pinned(conn, pin.one())
    found = extension.found(conn, ext.one())
    if status is not None:
        row = status.one()
        assert row is not None
        st = install.status_of(conn, row, meta.rows() if row["has_meta"] and row["readable"] else [])
        install.check_current(conn, st)
        ok = allowed.one()
        install.check_allowed(conn, bool(ok and ok["ok"]))
    if described is not None and sql is not None:
        describe.remember(conn, sql, describe.shape_of(*described))
    return found
