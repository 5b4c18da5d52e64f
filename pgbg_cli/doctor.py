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
    messages: str | None = None  # are a job's WARNING/NOTICE/INFO kept (pgbg_messages)?
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pgbg": self.pgbg, "server": self.server, "server_version_num": self.server_version_num,
            "extension_version": self.extension_version, "extension_schema": self.extension_schema,
            "features": dict(self.features), "schema_version": self.schema_version,
            "schema_wanted": self.schema_wanted, "schema_state": self.schema_state,
            "bound_to": self.bound_to, "role": self.role, "supervisor_pid": self.supervisor_pid,
            "messages": self.messages, "problems": list(self.problems),
        }


# Is pgbg bound to the pg_background installed now: does its launch wrapper depend on one of
# the extension's objects? (As pgbg_bind.bound(), which only a superuser may call.)
BOUND_SQL = """
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_proc w ON w.oid = d.objid AND w.proname = '_bg_launch'
                               AND w.pronamespace = 'pgbg'::pg_catalog.regnamespace
      JOIN pg_catalog.pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid AND x.deptype = 'e'
      JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid AND e.extname = 'pg_background'
     WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass) AS b
"""


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
    if not conn.execute(BOUND_SQL).fetchone()["b"]:
        rep.problems.append(UNBOUND)
        return rep
    rep.bound_to = f"pg_background {ext.version} in schema {ext.schema}"
    if conn.execute("SELECT pgbg._bg_outcome_info() AS o").fetchone()["o"] != ext.outcome_info:
        rep.problems.append(f"pgbg's functions were made for another version of pg_background than {ext.version}: "
                            "run pgbg init")
    rep.supervisor_pid = conn.execute("SELECT pgbg.supervisor_pid() AS p").fetchone()["p"]
    kept = conn.execute("SELECT pgbg._messages_available() AS k").fetchone()["k"]
    rep.messages = MESSAGES_KEPT if kept else MESSAGES_NOT_KEPT
    return rep


MESSAGES_KEPT = "kept with each job's outcome (pgbg_messages)"
MESSAGES_NOT_KEPT = ("not kept: the server has no pgbg_messages library, or pgbg init was not run by a superuser "
                     "(README: Messages)")
