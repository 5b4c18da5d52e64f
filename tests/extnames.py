"""The installed pg_background's own function names, for tests that call it directly.

1.8 to 1.10 have the cookie API only under ``_v2`` names (and a v1 int4 API under the plain
ones); 2.0 made the plain names canonical. Tests ask pgbg's own discovery which to call.
"""

from __future__ import annotations

from functools import cache

from pgbg_cli import extension


@cache
def ext(dsn: str) -> extension.Extension:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return extension.discover(conn)


def fn(dsn: str, role: str) -> str:
    """The schema-qualified, quoted name of the function playing ``role`` (see extension._NAMES)."""
    e = ext(dsn)
    return f'"{e.schema}"."{e.fn(role)}"'
