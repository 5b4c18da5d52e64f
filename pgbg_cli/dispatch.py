"""The dispatcher: pg_cron starts each role's supervisor within seconds, as that role.

Without it a role's queued jobs start only while a session of that role runs pgbg (its
supervisor is started from a session of the role itself; see fn_20_supervisor.sql). With
it, pg_cron runs ``SELECT pgbg.dispatch()`` every 5 seconds in this database for each role,
in a session whose user is that role (``cron.schedule_in_database(..., username)``): queued
jobs start within seconds of a worker slot freeing, and after a server restart.

pg_cron keeps its jobs in one database of the server (``cron.database_name``): pgbg
connects there with the same connection string and that database name. Scheduling a job
that runs as another role takes a superuser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli.errors import ExtensionProblem, PrivilegeProblem, UsageError

if TYPE_CHECKING:
    import psycopg

COMMAND = "SELECT pgbg.dispatch()"
SCHEDULE = "5 seconds"
JOB_PREFIX = "pgbg-dispatch "  # + the database: pg_cron names are unique per (name, user)
PRUNE_JOB = "pgbg-dispatch-prune"
# pg_cron keeps a row per run: the dispatcher's runs older than an hour go, every 10 minutes
PRUNE_SCHEDULE = "*/10 * * * *"
PRUNE_COMMAND = ("DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron.job "
                 "WHERE command = 'SELECT pgbg.dispatch()') AND end_time < now() - interval '1 hour'")


@dataclass
class RoleDispatch:
    """One role's dispatcher, as pgbg's schema and pg_cron see it."""

    role: str
    on: bool  # pgbg.meta says so
    last_seen_s: float | None  # since its last run was seen
    can_login: bool
    cron_job: int | None = None  # pg_cron's job id (read as a superuser)
    cron_active: bool | None = None
    last_run: str | None = None  # pg_cron's last run: status and message

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cron_database(conn: psycopg.Connection[Any]) -> str:
    """The database pg_cron keeps its jobs in; ExtensionProblem when pg_cron is not loaded."""
    name = conn.execute("SELECT pg_catalog.current_setting('cron.database_name', true) AS db").fetchone()["db"]
    if not name:
        raise ExtensionProblem(
            "pg_cron is not loaded on this server (shared_preload_libraries): without the dispatcher, a role's "
            "queued jobs start at its own next pgbg command; see README, 'Who starts a queued job'")
    return str(name)


def _superuser(conn: psycopg.Connection[Any], what: str) -> None:
    row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    if not (row and row["rolsuper"]):
        raise PrivilegeProblem(f"pgbg dispatch {what} needs a superuser: pg_cron lets only a superuser schedule "
                               "jobs that run as another role")


def _cron_conn(conn: psycopg.Connection[Any], dsn: str | None, cron_db: str) -> psycopg.Connection[Any]:
    """A connection to pg_cron's database on the server ``conn`` reached (its connection string,
    pinned to that server's host and port: a host list could lead elsewhere)."""
    from pgbg_cli import db

    cron = db.connect(db.on_same_server(conn, dsn, dbname=cron_db))
    there = cron.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'").fetchone()
    if not there:
        cron.close()
        raise ExtensionProblem(f"pg_cron is loaded but not created in database {cron_db!r}: "
                               f"CREATE EXTENSION pg_cron there (as a superuser), then run this again")
    return cron


def granted_roles(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Roles with a pgbg key here that use pgbg_user, whether each may log in (a superuser's view)."""
    return conn.execute(
        "SELECT k.role, r.rolcanlogin AS can_login FROM pgbg.role_key k "
        "JOIN pg_catalog.pg_roles r ON r.rolname = k.role "
        "WHERE pg_catalog.pg_has_role(k.role, 'pgbg_user', 'USAGE') ORDER BY k.role").fetchall()


def enable(conn: psycopg.Connection[Any], dsn: str | None, roles: list[str] | None) -> tuple[list[str], list[str]]:
    """Schedule the dispatcher for ``roles`` (default: every granted role that may log in).
    Returns (the roles it runs for now, notes)."""
    _superuser(conn, "enable")
    cron_db = cron_database(conn)
    granted = {r["role"]: r["can_login"] for r in granted_roles(conn)}
    notes: list[str] = []
    if roles:
        for role in roles:
            if role not in granted:
                raise UsageError(f"role {role!r} may not use pgbg in this database: pgbg grant {role} first")
            if not granted[role]:
                raise UsageError(f"role {role!r} cannot log in, so pg_cron cannot run as it")
        chosen = list(dict.fromkeys(roles))
    else:
        chosen = [r for r, login in granted.items() if login]
        notes += [f"{r} cannot log in: no dispatcher for it" for r, login in granted.items() if not login]
        if not chosen:
            raise UsageError("no role may use pgbg in this database yet (pgbg grant ROLE first)")
    dbname = conn.info.dbname
    cron = conn if dbname == cron_db else _cron_conn(conn, dsn, cron_db)
    try:
        with cron.transaction():
            for role in chosen:
                # every value a parameter: the job's name, schedule, command, database and role
                cron.execute("SELECT cron.schedule_in_database(%s, %s, %s, %s, %s)",
                             (JOB_PREFIX + dbname, SCHEDULE, COMMAND, dbname, role))
            cron.execute("SELECT cron.schedule(%s, %s, %s)", (PRUNE_JOB, PRUNE_SCHEDULE, PRUNE_COMMAND))
        background = cron.execute(
            "SELECT pg_catalog.current_setting('cron.use_background_workers', true) AS bg").fetchone()["bg"]
    finally:
        if cron is not conn:
            cron.close()
    conn.execute("SELECT * FROM pgbg.dispatch_mark(%s::name[], true)", (chosen,))
    if background != "on":
        notes.append("pg_cron connects over the network as each role (cron.use_background_workers is off): "
                     "each needs a way in without a password prompt (.pgpass of the server's OS user, or trust); "
                     "cron.use_background_workers = on avoids it")
    return chosen, notes


def dispatched_roles(conn: psycopg.Connection[Any]) -> list[str]:
    """The roles the dispatcher is marked on for in this database (pgbg.meta, dispatch:<role>)."""
    return [r["key"][len("dispatch:"):] for r in conn.execute(
        "SELECT key FROM pgbg.meta WHERE key LIKE 'dispatch:%'").fetchall()]


def follow_grant(conn: psycopg.Connection[Any], dsn: str | None, role: str) -> str | None:
    """After ``pgbg grant ROLE``: where the dispatcher runs for other roles of this database,
    run it for ROLE too (a superuser may; otherwise say who can). What was done, or None."""
    marked = dispatched_roles(conn)
    if not marked or role in marked:
        return None
    login = conn.execute("SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not (login and login["rolcanlogin"]):
        return f"{role} cannot log in: the dispatcher, which runs for {', '.join(marked)} here, cannot run as it"
    try:
        enable(conn, dsn, [role])
    except (PrivilegeProblem, ExtensionProblem) as exc:
        return (f"the dispatcher runs for {', '.join(marked)} here but could not be turned on for {role} "
                f"({exc.message}): a superuser runs pgbg dispatch enable {role}")
    return f"the dispatcher now runs every {SCHEDULE} for {role} too"


def disable(conn: psycopg.Connection[Any], dsn: str | None, roles: list[str] | None) -> list[str]:
    """Unschedule the dispatcher of ``roles`` (default: all) in this database; the roles it stopped for."""
    _superuser(conn, "disable")
    cron_db = cron_database(conn)
    dbname = conn.info.dbname
    marked = dispatched_roles(conn)
    wanted = list(dict.fromkeys(roles)) if roles else marked
    if wanted:
        conn.execute("SELECT * FROM pgbg.dispatch_mark(%s::name[], false)", (wanted,))
    cron = conn if dbname == cron_db else _cron_conn(conn, dsn, cron_db)
    try:
        with cron.transaction():
            gone = [r["username"] for r in cron.execute(
                "SELECT j.username, cron.unschedule(j.jobid) FROM cron.job j "
                "WHERE j.database = %s AND j.command = %s AND (%s::name[] IS NULL OR j.username = ANY(%s::name[]))",
                (dbname, COMMAND, roles or None, roles or None)).fetchall()]
            left = cron.execute("SELECT count(*) AS n FROM cron.job WHERE command = %s", (COMMAND,)).fetchone()["n"]
            if not left:
                cron.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (PRUNE_JOB,))
    finally:
        if cron is not conn:
            cron.close()
    return sorted(set(gone) | set(wanted))


def status(conn: psycopg.Connection[Any], dsn: str | None) -> list[RoleDispatch]:
    """Every role the dispatcher is on for here, or that may use pgbg (as far as this role sees)."""
    rows = conn.execute(
        "WITH marked AS (SELECT substr(m.key, 10) AS role, m.value FROM pgbg.meta m WHERE m.key LIKE 'dispatch:%'), "
        "granted AS (SELECT k.role FROM pgbg.role_key k "
        "            WHERE pg_catalog.pg_has_role(k.role, 'pgbg_user', 'USAGE')) "
        "SELECT coalesce(mk.role, g.role) AS role, mk.role IS NOT NULL AS on, "
        "       CASE WHEN mk.value ~ '^[0-9]{1,12}$' "
        "            THEN EXTRACT(epoch FROM pg_catalog.clock_timestamp()) - mk.value::bigint END AS age, "
        "       coalesce(r.rolcanlogin, false) AS can_login "
        "  FROM marked mk FULL JOIN granted g ON g.role = mk.role "
        "  LEFT JOIN pg_catalog.pg_roles r ON r.rolname = coalesce(mk.role, g.role) ORDER BY 1").fetchall()
    out = [RoleDispatch(r["role"], r["on"], None if r["age"] is None else float(r["age"]), r["can_login"])
           for r in rows]
    is_super = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    if not (is_super and is_super["rolsuper"]):
        return out  # pg_cron's jobs and its settings are a superuser's to read
    cron_db = conn.execute("SELECT pg_catalog.current_setting('cron.database_name', true) AS db").fetchone()["db"]
    if not cron_db:
        return out
    dbname = conn.info.dbname
    cron = conn if dbname == cron_db else _cron_conn(conn, dsn, cron_db)
    try:
        jobs = {r["username"]: r for r in cron.execute(
            "SELECT j.jobid, j.username, j.active, "
            "       (SELECT d.status || coalesce(': ' || split_part(d.return_message, E'\\n', 1), '') "
            "          FROM cron.job_run_details d WHERE d.jobid = j.jobid ORDER BY d.runid DESC LIMIT 1) AS last_run "
            "  FROM cron.job j WHERE j.database = %s AND j.command = %s", (dbname, COMMAND)).fetchall()}
    finally:
        if cron is not conn:
            cron.close()
    known = {d.role for d in out}
    out += [RoleDispatch(u, False, None, False) for u in jobs if u not in known]
    for d in out:
        job = jobs.get(d.role)
        if job:
            d.cron_job, d.cron_active, d.last_run = job["jobid"], job["active"], job["last_run"]
    return sorted(out, key=lambda d: d.role)
