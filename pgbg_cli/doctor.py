"""What pgbg finds on a server: versions, features, and what stands in the way.

`pgbg doctor` prints this; nothing here changes the server. Each problem comes with the
one fix that removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgbg_cli import __version__
from pgbg_cli.errors import LIBRARY_MISMATCH, UNBOUND, PgbgError

if TYPE_CHECKING:
    import psycopg


@dataclass
class Report:
    pgbg: str = __version__
    server: str | None = None
    server_version_num: int | None = None
    extension_version: str | None = None
    extension_schema: str | None = None
    features: dict[str, bool] = field(default_factory=dict)
    schema_version: int | None = None
    schema_wanted: int | None = None
    schema_state: str | None = None
    bound_to: str | None = None
    role: str | None = None
    supervisor_pid: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pgbg": self.pgbg, "server": self.server, "server_version_num": self.server_version_num,
            "extension_version": self.extension_version, "extension_schema": self.extension_schema,
            "features": dict(self.features), "schema_version": self.schema_version,
            "schema_wanted": self.schema_wanted, "schema_state": self.schema_state,
            "bound_to": self.bound_to, "role": self.role, "supervisor_pid": self.supervisor_pid,
            "problems": list(self.problems),
        }


def library_matches(conn: psycopg.Connection[Any], schema: str, stats_fn: str) -> bool | None:
    """Call a harmless C function of the extension: False when its library lacks it (a
    package of another version installed over the extension), None when it cannot be told."""
    import psycopg
    from psycopg import sql

    try:
        with conn.transaction():
            conn.execute(sql.SQL("SELECT 1 FROM {}()").format(sql.Identifier(schema, stats_fn)))
    except psycopg.errors.UndefinedFunction as exc:
        if "could not find function" in str(exc):
            return False
        return None
    except psycopg.errors.InsufficientPrivilege:
        return None
    return True


def examine(conn: psycopg.Connection[Any]) -> Report:
    from pgbg_cli import extension, install, schema

    rep = Report(schema_wanted=schema.schema_version())
    row = conn.execute(
        "SELECT pg_catalog.current_setting('server_version') AS v, "
        "pg_catalog.current_setting('server_version_num')::int AS n, current_user AS u").fetchone()
    rep.server, rep.server_version_num, rep.role = f"PostgreSQL {row['v']}", row["n"], row["u"]
    try:
        ext = extension.discover(conn)
    except PgbgError as exc:
        rep.problems.append(str(exc))
        found = conn.execute(
            "SELECT e.extversion, n.nspname FROM pg_catalog.pg_extension e "
            "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_background'").fetchone()
        if found:
            rep.extension_version, rep.extension_schema = found["extversion"], found["nspname"]
        return rep
    rep.extension_version, rep.extension_schema = ext.version, ext.schema
    rep.features = ext.features()
    if library_matches(conn, ext.schema, ext.fn("stats")) is False:
        rep.problems.append(LIBRARY_MISMATCH)
    try:
        st = install.status(conn)
    except PgbgError as exc:
        rep.problems.append(str(exc))
        return rep
    rep.schema_version = st.version
    rep.schema_state = st.describe().removeprefix("pgbg schema: ")
    if not st.current:
        rep.problems.append(st.describe())
        return rep
    meta = dict((r["key"], r["value"]) for r in conn.execute(
        "SELECT key, value FROM pgbg.meta WHERE key IN ('extension_schema', 'extension_version')").fetchall())
    rep.bound_to = f"pg_background {meta.get('extension_version')} in schema {meta.get('extension_schema')}"
    if not conn.execute("SELECT to_regprocedure('pgbg._bg_launch(text, integer, text, text)') IS NOT NULL AS b"
                        ).fetchone()["b"]:
        rep.bound_to = None
        rep.problems.append(UNBOUND)
        return rep
    if (meta.get("extension_version"), meta.get("extension_schema")) != (ext.version, ext.schema):
        rep.problems.append(
            f"pgbg is bound to {rep.bound_to}, but pg_background {ext.version} is in schema {ext.schema}: "
            "run pgbg init")
    rep.supervisor_pid = conn.execute("SELECT pgbg.supervisor_pid() AS p").fetchone()["p"]
    return rep
