"""``pgbg init``, ``grant`` and ``revoke``: install, upgrade and open up pgbg's schema.

Install is one transaction under an advisory lock, so two concurrent runs serialize and
the second finds nothing to do. Table files apply once each (``pgbg.meta`` records the
version); function files are re-applied with CREATE OR REPLACE every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgbg_cli import extension, queries, schema
from pgbg_cli.errors import ExtensionProblem, PrivilegeProblem, SchemaMissing, UsageError

if TYPE_CHECKING:
    import psycopg

LOCK_CLASS = 1885823591  # 'pgbg': init's transaction lock (class, 0)
USER_ROLE = "pgbg_user"
ADMIN_ROLE = "pgbg_admin"
OWNER_ROLE = "pgbg_owner"  # NOLOGIN: owns the schema; its SECURITY DEFINER functions run as it
GROUP_ROLES = (USER_ROLE, ADMIN_ROLE, OWNER_ROLE, "pgbackground_role")  # never own jobs
# SECURITY DEFINER helpers that only other functions of the schema (running as pgbg_owner)
# call: no role may call them, since each trusts its arguments.
MESSAGES_NOT_KEPT = (
    "job messages (WARNING, NOTICE, INFO) are not kept: the server lacks pgbg's pgbg_messages library, "
    "or a non-superuser ran pgbg init (README: Messages)")
INTERNAL = ("pgbg._backend_alive(integer, timestamp with time zone)", "pgbg._live_worker(pgbg.job)",
            "pgbg._actor(name, text)", "pgbg._supervised_job(bigint, text[])")


@dataclass
class Status:
    installed: bool
    version: int | None
    wanted: int
    digest: str | None
    wanted_digest: str
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def current(self) -> bool:
        return self.installed and self.version == self.wanted and self.digest == self.wanted_digest

    def describe(self) -> str:
        if not self.installed:
            return "pgbg schema: not installed (run pgbg init)"
        if self.version is not None and self.version > self.wanted:
            return f"pgbg schema: version {self.version} is newer than this pgbg ({self.wanted}): upgrade pgbg"
        if not self.current and self.version == self.wanted:
            return f"pgbg schema: version {self.version}, its functions differ from this pgbg's: run pgbg init"
        if not self.current:
            return f"pgbg schema: version {self.version}, outdated (this pgbg has {self.wanted}): run pgbg init"
        return f"pgbg schema: version {self.version}, current"


# Catalog lookups, not to_regclass(): they work for roles without USAGE on the schema.
STATUS_SQL = (
    "SELECT bool_or(c.relname = 'meta') AS has_meta, bool_or(c.relname = 'job') AS has_job, "
    "bool_or(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')"
    "        AND c.relname = 'meta') AS readable "
    "FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
    "WHERE n.nspname = 'pgbg' AND c.relname IN ('meta', 'job')"
)
META_SQL = "SELECT key, value FROM pgbg.meta"
# a member of pgbg_user, with the key it proves who it is with (pgbg grant makes both;
# a superuser gets its key when it first needs it)
ALLOWED_SQL = (
    "SELECT has_schema_privilege('pgbg', 'USAGE') AND pg_has_role('pgbg_user', 'USAGE') "
    "AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
    "     OR EXISTS (SELECT 1 FROM pgbg.role_key WHERE role = current_user)) AS ok"
)


def status(conn: psycopg.Connection[Any]) -> Status:
    row = conn.execute(STATUS_SQL).fetchone()
    readable = row["has_meta"] and row["readable"]
    return status_of(conn, row, conn.execute(META_SQL).fetchall() if readable else [])


def status_of(conn: psycopg.Connection[Any], row: dict[str, Any], meta: list[dict[str, Any]]) -> Status:
    """The Status that a STATUS_SQL row and the META_SQL rows (read only when readable) tell."""
    version = digest = None
    if row["has_meta"] and not row["readable"]:
        user = conn.info.user
        raise PrivilegeProblem(f"role {user!r} may not use pgbg: ask an administrator to run pgbg grant {user}")
    if row["has_meta"]:
        values = {r["key"]: r["value"] for r in meta}
        version = int(values["schema_version"]) if "schema_version" in values else None
        digest = values.get("code_digest")
    return Status(
        installed=bool(row["has_meta"] and row["has_job"] and version),
        version=version,
        wanted=schema.schema_version(),
        digest=digest,
        wanted_digest=schema.code_digest(),
    )


def require(conn: psycopg.Connection[Any]) -> Status:
    """Raise the "run pgbg init" error unless the schema is installed and usable."""
    st = check_current(conn, status(conn))
    check_allowed(conn, conn.execute(ALLOWED_SQL).fetchone()["ok"])
    return st


def check_current(conn: psycopg.Connection[Any], st: Status) -> Status:
    """Raise the "run pgbg init" error unless the schema is installed and current."""
    if not st.installed:
        raise SchemaMissing(
            f"pgbg's schema is not installed in database {conn.info.dbname!r}: run pgbg init"
        )
    if st.version is not None and st.version > st.wanted:
        raise SchemaMissing(
            f"pgbg's schema is version {st.version}, newer than this pgbg knows ({st.wanted}): upgrade pgbg"
        )
    if not st.current:
        raise SchemaMissing("pgbg's schema is outdated: run pgbg init to upgrade it in place")
    return st


def check_allowed(conn: psycopg.Connection[Any], allowed: bool) -> None:
    """Raise unless ALLOWED_SQL said yes."""
    if not allowed:
        user = conn.info.user
        raise PrivilegeProblem(
            f"role {user!r} may not use pgbg: ask an administrator to run pgbg grant {user}"
        )


def _impostors(conn: psycopg.Connection[Any], ext: extension.Extension) -> None:
    """Refuse to bind pgbg's wrappers while a function of pg_background's name that is not
    pg_background's stands in its schema: the calls would be ambiguous, or bound to it."""
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text AS fn, pg_get_userbyid(p.proowner) AS owner "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.proname LIKE 'pg\\_background\\_%%' AND NOT EXISTS ("
        "  SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid "
        "  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') ORDER BY 1",
        (ext.schema,)).fetchall()
    if rows:
        named = ", ".join(f"{r['fn']} (owned by {r['owner']})" for r in rows[:3])
        named += f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        raise ExtensionProblem(
            f"schema {ext.schema!r} holds functions named like pg_background's that are not its own: {named}; "
            "they would make pgbg's calls ambiguous: drop them (and revoke CREATE on that schema), then "
            "run pgbg init again")


def _api_sql(conn: psycopg.Connection[Any], ext: extension.Extension) -> Any:
    """api.sql with the calls this version of pg_background offers (see extension.py)."""
    from psycopg import sql

    needed = ("launch", "detach", "cancel", "get_progress", "result", "list", "stats", "wait")
    missing = [role for role in needed if not ext.has(role)]
    if missing:
        raise ExtensionProblem(
            f"pg_background {ext.version} lacks {', '.join(missing)}: "
            f"pgbg needs pg_background {extension.SUPPORTED_RANGE} (ALTER EXTENSION pg_background UPDATE)"
        )

    def fn(role: str) -> Any:
        return sql.Identifier(ext.schema, ext.fn(role))

    names: dict[str, Any] = {role: fn(role) for role in ("detach", "cancel", "get_progress", "result", "stats", "wait")}
    label = sql.SQL(", p_label") if ext.labels else sql.SQL("")
    names["launch_call"] = sql.SQL("{}(p_sql || '', p_queue_size{})").format(fn("launch"), label)
    if ext.list_view:
        names["list_source"] = sql.SQL("{} l").format(sql.Identifier(ext.schema, "pg_background_list"))
    else:
        # 1.8 and 1.9 list through a record function read with a column list (1.9 adds label)
        names["list_source"] = sql.SQL(
            "{}() AS l(pid pg_catalog.int4, cookie pg_catalog.int8, launched_at pg_catalog.timestamptz, "
            "user_id pg_catalog.oid, queue_size pg_catalog.int4, state pg_catalog.text, "
            "sql_preview pg_catalog.text, last_error pg_catalog.text, consumed pg_catalog.bool{})"
        ).format(fn("list"), sql.SQL(", label pg_catalog.text") if ext.labels else sql.SQL(""))
    if ext.outcome_info:
        names["error_info_query"] = sql.SQL(
            "SELECT (e).sqlstate, (e).message, (e).detail, (e).hint, (e).context "
            "FROM (SELECT {}(p_pid, p_cookie) AS e) x").format(fn("error_info"))
        times = (sql.SQL("(r).started_at, (r).finished_at") if ext.worker_times
                 else sql.SQL("NULL::pg_catalog.timestamptz, NULL::pg_catalog.timestamptz"))
        names["result_info_query"] = sql.SQL(
            "SELECT (r).row_count, (r).command_tag, (r).completed, (r).has_error, {} "
            "FROM (SELECT {}(p_pid, p_cookie) AS r) x").format(times, fn("result_info"))
    else:
        # 1.8: nothing tells an outcome short of reading the result (pgbg._finish does)
        names["error_info_query"] = sql.SQL(
            "SELECT NULL::pg_catalog.text, NULL::pg_catalog.text, NULL::pg_catalog.text, "
            "NULL::pg_catalog.text, NULL::pg_catalog.text WHERE p_pid IS NULL AND p_cookie IS NULL AND false")
        names["result_info_query"] = sql.SQL(
            "SELECT NULL::pg_catalog.int8, NULL::pg_catalog.text, NULL::pg_catalog.bool, NULL::pg_catalog.bool, "
            "NULL::pg_catalog.timestamptz, NULL::pg_catalog.timestamptz "
            "WHERE p_pid IS NULL AND p_cookie IS NULL AND false")
    names["outcome_info"] = sql.SQL("true" if ext.outcome_info else "false")
    names["names_workers"] = sql.SQL("true" if ext.version_tuple >= (2, 0) else "false")
    names["result_fname"] = sql.Literal(ext.fn("result"))
    names["worker_slots"] = sql.SQL(queries.text("worker_slots"))
    return sql.SQL(schema.read("api.sql")).format(**names)


# The functions of rebind.sql live in schema pgbg_bind, owned by the superuser who ran init;
# event triggers run them as whoever changes the extension.
BIND_SCHEMA = "pgbg_bind"
PLACEHOLDER_SCHEMA = "pgbg_ext_schema_placeholder"
EVENT_TRIGGERS = (("pgbg_extension_ddl_start", "ddl_command_start", "('ALTER EXTENSION', 'DROP EXTENSION')",
                   "pgbg_bind.on_ddl_start"),
                  ("pgbg_extension_ddl_end", "ddl_command_end",
                   "('ALTER EXTENSION', 'CREATE EXTENSION', 'DROP EXTENSION')", "pgbg_bind.on_ddl_end"))
# The triggers pgbg makes on its own tables (fn_95_triggers.sql); init refuses any other, since
# it writes those tables with a superuser's rights.
OWN_TRIGGERS = {("pgbg.settings", "settings_guard"), ("pgbg.job", "job_guard"), ("pgbg.job", "job_audit")}


def _level_extension(level: str) -> extension.Extension:
    """pg_background as version ``level`` has it, in a placeholder schema: what rebind.sql
    makes pgbg's wrappers for when the extension changes under pgbg."""
    names: set[str] = set()
    for canonical, legacy in extension._NAMES.values():
        names.update(n for n in (canonical, legacy) if n)
    if extension.parse_version(level) < (1, 9):
        names -= {"pg_background_error_info_v2", "pg_background_result_info_v2", "pg_background_outcome_v2"}
    elif extension.parse_version(level) < (1, 10):
        names -= {"pg_background_outcome_v2"}
    return extension.Extension(schema=PLACEHOLDER_SCHEMA, version=level,
                               functions=extension.choose_functions(level, names),
                               server_version_num=0, current_user="", is_superuser=True)


def _rebind_sql(conn: psycopg.Connection[Any]) -> Any:
    from psycopg import sql

    rendered = {f"api_{level.replace('.', '')}": sql.Literal(_api_sql(conn, _level_extension(level)).as_string(conn))
                for level in ("1.8", "1.9", "1.10", "2.0")}
    return sql.SQL(schema.read("rebind.sql")).format(
        placeholder_ident=sql.Literal(sql.Identifier(PLACEHOLDER_SCHEMA).as_string(conn)), **rendered)


def _event_triggers(conn: psycopg.Connection[Any]) -> None:
    for name, event, tags, fn in EVENT_TRIGGERS:
        row = conn.execute("SELECT p.oid::regprocedure::text AS fn FROM pg_event_trigger t "
                           "JOIN pg_proc p ON p.oid = t.evtfoid WHERE t.evtname = %s", (name,)).fetchone()
        if row and row["fn"] != f"{fn}()":
            conn.execute(f"DROP EVENT TRIGGER {name}")  # made by an earlier pgbg: replaced
            row = None
        if row is None:
            conn.execute(f"CREATE EVENT TRIGGER {name} ON {event} WHEN TAG IN {tags} EXECUTE FUNCTION {fn}()")
    for old in ("_rebind()", "_unbind()", "_extension_ddl_start()", "_extension_ddl_end()"):
        conn.execute(f"DROP FUNCTION IF EXISTS pgbg.{old}")
    conn.execute("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgbg_bind FROM PUBLIC")


def _foreign_triggers(conn: psycopg.Connection[Any]) -> None:
    """Refuse to write pgbg's tables with a superuser's rights while a trigger or rule that pgbg
    did not make sits on them (the owner of the schema, pgbg_owner, could have put it there)."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text AS rel, t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = 'pgbg'::regnamespace AND NOT t.tgisinternal "
        "UNION ALL SELECT c.oid::regclass::text, r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class "
        "WHERE c.relnamespace = 'pgbg'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1, 2").fetchall()
    odd = [f"{r['name']} on {r['rel']}" for r in rows if (r["rel"], r["name"]) not in OWN_TRIGGERS]
    if odd:
        raise ExtensionProblem(
            f"pgbg's tables carry triggers or rules that pgbg did not make: {', '.join(odd)}; a superuser's "
            "pgbg init would run them: drop them (see docs/security.md), then run pgbg init again")


def install(conn: psycopg.Connection[Any], ext: extension.Extension) -> Status:
    """Install or upgrade in place; returns the status with what was done."""
    from psycopg import sql

    actions: list[str] = []
    try:
        with conn.transaction():
            # Once the schema is there, its meta table is the lock (roles may only read it, so
            # none can hold a lock that blocks this one); before, an advisory lock.
            if conn.execute("SELECT to_regclass('pgbg.meta') IS NOT NULL AS there").fetchone()["there"]:
                conn.execute("LOCK TABLE pgbg.meta IN SHARE ROW EXCLUSIVE MODE")
            else:
                conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
            # Read what is there only once the lock is held: a concurrent init that got the
            # lock first has committed by now, and this one then has nothing to do.
            if conn.execute("SELECT to_regnamespace('pgbg') IS NOT NULL AS there").fetchone()["there"]:
                _foreign_triggers(conn)
            before = status(conn)
            conn.execute("SET LOCAL check_function_bodies = off")  # files name routines of later files
            for role in (OWNER_ROLE, USER_ROLE, ADMIN_ROLE):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                    actions.append(f"created role {role}")
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(USER_ROLE), sql.Identifier(ADMIN_ROLE)))
            conn.execute("CREATE SCHEMA IF NOT EXISTS pgbg")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pgbg.meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            row = conn.execute("SELECT value FROM pgbg.meta WHERE key = 'schema_version'").fetchone()
            current = int(row["value"]) if row else 0
            if current > schema.schema_version():
                raise UsageError(
                    f"pgbg's schema is version {current}, newer than this pgbg ({schema.schema_version()})"
                )
            if 0 < current < schema.schema_version():
                _lock_tables(conn)
            for version, name in schema.migrations():
                if version > current:
                    conn.execute(schema.read(name))
                    actions.append(f"applied {name}")
            _impostors(conn, ext)
            for name in schema.function_files():
                conn.execute(_api_sql(conn, ext) if name == "api.sql" else schema.read(name))
            if ext.is_superuser:
                conn.execute(_rebind_sql(conn))
                _event_triggers(conn)
                _message_functions(conn)

            conn.execute("SELECT pgbg._settings_repair()")
            _own(conn)
            conn.execute(
                "INSERT INTO pgbg.meta (key, value) VALUES ('schema_version', %s), ('code_digest', %s),"
                " ('extension_schema', %s), ('extension_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(schema.schema_version()), schema.code_digest(), ext.schema, ext.version),
            )
            _grants(conn, ext)
            if before.digest != schema.code_digest():
                actions.append("installed functions" if not before.installed else "updated functions")
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            raise PrivilegeProblem(
                f"pgbg init needs a role that may create schemas and roles (a superuser, or "
                f"CREATE on the database plus CREATEROLE): {str(exc).splitlines()[0]}"
            ) from None
        raise
    after = status(conn)
    after.actions = actions
    after.warnings = _warnings(conn, ext)
    return after


def _message_functions(conn: psycopg.Connection[Any]) -> None:
    """The C functions that keep a job's messages (ext/pgbg_messages), when the server has the
    library; a superuser's init only. Without it they are dropped, and messages are not kept."""
    import psycopg

    try:
        with conn.transaction():  # a savepoint: a missing library leaves nothing behind
            conn.execute(schema.read("messages_c.sql"))
    except (psycopg.errors.UndefinedFile, psycopg.errors.UndefinedFunction):
        conn.execute("DROP FUNCTION IF EXISTS pgbg._messages_begin(integer, integer)")
        conn.execute("DROP FUNCTION IF EXISTS pgbg._messages_take()")


def _warnings(conn: psycopg.Connection[Any], ext: extension.Extension) -> list[str]:
    """What makes the install less safe than it could be, in one line each."""
    found = []
    if not conn.execute("SELECT pgbg._messages_available() AS ok").fetchone()["ok"]:
        found.append(MESSAGES_NOT_KEPT)
    if conn.execute("SELECT to_regnamespace('pgbg_bind') IS NULL AS none").fetchone()["none"]:
        found.append("no event triggers were made (only a superuser can): after CREATE, DROP or ALTER EXTENSION "
                     "pg_background, run pgbg init again")
    writers = [r["rolname"] for r in conn.execute(
        "SELECT r.rolname FROM pg_roles r, pg_namespace n "
        "WHERE n.nspname = %s AND r.oid <> n.nspowner AND NOT r.rolsuper AND r.rolcanlogin "
        "AND has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1", (ext.schema,)).fetchall()]
    if not writers:
        return found
    named = ", ".join(writers[:5]) + (f" and {len(writers) - 5} more" if len(writers) > 5 else "")
    return found + [
        f"roles other than its owner may create objects in schema {ext.schema!r}, where pg_background lives "
        f"({named}): one of them can make --result reads fail by overloading its functions, and keep pgbg "
        f"from binding to the extension again after it changes; REVOKE CREATE ON SCHEMA {ext.schema} FROM them, "
        "or keep pg_background in a schema of its own"]


def _lock_tables(conn: psycopg.Connection[Any]) -> None:
    """Before a migration: every table of the schema, all at once or none, retried until
    lock_timeout. Supervisors of the older version may be running; they hold such locks
    for a few milliseconds at a time. Taking them one by one while one of those waits for
    another would be a deadlock, which ends the supervisor."""
    import time

    import psycopg

    from pgbg_cli.db import LOCK_TIMEOUT_MS

    tables = ", ".join(
        r["rel"] for r in conn.execute(
            "SELECT c.oid::regclass::text AS rel FROM pg_class c "
            "WHERE c.relnamespace = 'pgbg'::regnamespace AND c.relkind = 'r' ORDER BY c.relname"
        ).fetchall()
    )
    deadline = time.monotonic() + LOCK_TIMEOUT_MS / 1000
    while True:
        try:
            with conn.transaction():  # a savepoint: a refusal releases whatever it got
                conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE NOWAIT")
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _own(conn: psycopg.Connection[Any]) -> None:
    """Give the schema and everything in it to pgbg_owner, so that its SECURITY DEFINER
    functions run with the rights of a role that owns pgbg's tables and nothing else."""
    conn.execute(
        """
        DO $$
        DECLARE
            r record;
        BEGIN
            IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pgbg')
               <> 'pgbg_owner'::regrole THEN
                ALTER SCHEMA pgbg OWNER TO pgbg_owner;
            END IF;
            FOR r IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
                      WHERE c.relnamespace = 'pgbg'::regnamespace AND c.relkind IN ('r', 'p')
                        AND c.relowner <> 'pgbg_owner'::regrole
            LOOP
                EXECUTE format('ALTER TABLE %s OWNER TO pgbg_owner', r.rel);
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS fn, p.prokind FROM pg_catalog.pg_proc p
                      WHERE p.pronamespace = 'pgbg'::regnamespace AND p.proowner <> 'pgbg_owner'::regrole

            LOOP
                EXECUTE format('ALTER %s %s OWNER TO pgbg_owner',
                               CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.fn);
            END LOOP;
        END
        $$
        """
    )


def _grants(conn: psycopg.Connection[Any], ext: extension.Extension) -> None:
    from psycopg import sql

    # pg_background grants EXECUTE to pgbackground_role, but a schema of its own (it is
    # relocatable) also takes USAGE: pgbg's users get it through pgbg_user.
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO pgbg_user").format(sql.Identifier(ext.schema)))
    conn.execute(
        """
        REVOKE ALL ON ALL TABLES IN SCHEMA pgbg FROM PUBLIC, pgbg_user, pgbg_admin;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgbg FROM PUBLIC, pgbg_user, pgbg_admin;
        REVOKE ALL ON ALL ROUTINES IN SCHEMA pgbg FROM PUBLIC;
        REVOKE ALL ON SCHEMA pgbg FROM PUBLIC;
        GRANT USAGE ON SCHEMA pgbg TO pgbg_user;
        GRANT SELECT ON pgbg.job, pgbg.job_event, pgbg.settings, pgbg.meta TO pgbg_user;
        GRANT EXECUTE ON ALL ROUTINES IN SCHEMA pgbg TO pgbg_user;
        GRANT SELECT ON pgbg.role_key TO pgbg_user;
        """
    )
    for routine in INTERNAL:
        conn.execute(f"REVOKE EXECUTE ON FUNCTION {routine} FROM pgbg_user")
    # pgbg_owner reads every backend's type and start time (worker slots, liveness of
    # supervisors and workers): pg_read_all_stats.
    conn.execute(
        """
        DO $$
        BEGIN
            GRANT pg_read_all_stats TO pgbg_owner;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgbg_owner was not granted pg_read_all_stats';
        END
        $$
        """
    )
    # pgbg_admin cancels orphaned workers of other roles by pid: that takes pg_signal_backend.
    # It reads their pg_stat_progress_* figures (VACUUM, CREATE INDEX, ...): pg_read_all_stats.
    conn.execute(
        """
        DO $$
        BEGIN
            GRANT pg_signal_backend TO pgbg_admin;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgbg_admin was not granted pg_signal_backend';
        END
        $$
        """
    )
    conn.execute(
        """
        DO $$
        BEGIN
            GRANT pg_read_all_stats TO pgbg_admin;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgbg_admin was not granted pg_read_all_stats';
        END
        $$
        """
    )


def _role_exists(conn: psycopg.Connection[Any], role: str) -> None:
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        raise UsageError(f"no role named {role!r}")


def grant(conn: psycopg.Connection[Any], role: str, *, admin: bool = False) -> list[str]:
    """Give ``role`` what it needs to use pgbg; returns the statements run. A membership of
    pgbackground_role the role had before is left alone (and kept by ``revoke``)."""
    from psycopg import sql

    _role_exists(conn, role)
    if role in GROUP_ROLES:
        raise UsageError(f"{role} is one of pgbg's group roles: grant pgbg to the roles that log in")
    groups = [USER_ROLE] + ([ADMIN_ROLE] if admin else [])
    done = []
    with conn.transaction():
        had_extension_role = _direct_member(conn, "pgbackground_role", role)
        if not had_extension_role:
            groups.insert(0, "pgbackground_role")
        for group in groups:
            stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role))
            conn.execute(stmt)
            done.append(stmt.as_string(conn))
        # the key it proves who it is with (pgbg._proof()), readable by that role alone, new
        # at every grant; whether it is an admin in this database; whether pgbg gave it
        # pgbackground_role (then revoke takes it back)
        conn.execute(
            "INSERT INTO pgbg.role_key AS k (role, admin, granted_extension_role) VALUES (%s, %s, %s) "
            "ON CONFLICT (role) DO UPDATE SET secret = EXCLUDED.secret, admin = k.admin OR EXCLUDED.admin, "
            "granted_extension_role = k.granted_extension_role OR EXCLUDED.granted_extension_role",
            (role, admin, not had_extension_role))
    return done


def _direct_member(conn: psycopg.Connection[Any], group: str, role: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid "
        "JOIN pg_catalog.pg_roles r ON r.oid = m.member WHERE g.rolname = %s AND r.rolname = %s",
        (group, role)).fetchone() is not None


def revoke(conn: psycopg.Connection[Any], role: str) -> tuple[list[str], list[str]]:
    """Take back what ``grant`` gave; returns the statements run, and notes: pgbackground_role
    is taken back only where pgbg's grant gave it."""
    from psycopg import sql

    _role_exists(conn, role)
    done: list[str] = []
    notes: list[str] = []
    with conn.transaction():
        key = conn.execute("SELECT granted_extension_role FROM pgbg.role_key WHERE role = %s", (role,)).fetchone()
        gave_extension_role = bool(key and (key["granted_extension_role"] if isinstance(key, dict) else key[0]))
        for group in (ADMIN_ROLE, USER_ROLE, "pgbackground_role"):
            if not _direct_member(conn, group, role):
                continue
            if group == "pgbackground_role" and not gave_extension_role:
                notes.append(f"{role} keeps pgbackground_role: pgbg did not grant it (REVOKE pgbackground_role "
                             f"FROM {role} takes it away from pg_background too)")
                continue
            stmt = sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(role))
            conn.execute(stmt)
            done.append(stmt.as_string(conn))
        conn.execute("DELETE FROM pgbg.role_key WHERE role = %s", (role,))
    return done, notes
