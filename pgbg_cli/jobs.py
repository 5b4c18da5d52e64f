"""Durable jobs: submit, look up, wait for, cancel and detach jobs in pgbg's registry.

Every operation works from any session: the registry (``pgbg.job``) and the per-role
supervisor inside the server hold what pg_background keeps only per session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import describe, precheck, queries, waiting
from pgbg_cli.errors import PgbgError, UsageError, WaitTimedOut
from pgbg_cli.handles import Handle

if TYPE_CHECKING:
    import psycopg

    from pgbg_cli.pipeline import Slot

ACTIVE = ("queued", "starting", "running")
FINAL = ("succeeded", "failed", "canceled", "timed_out", "lost", "detached")
STATES = ACTIVE + FINAL
CHANNEL = "pgbg_jobs"


class UnknownHandle(UsageError):
    """A handle that names no job, or names one with another cookie: both read the same."""


def is_final(job: dict[str, Any]) -> bool:
    return job["state"] in FINAL


def succeeded(job: dict[str, Any]) -> bool:
    return job["state"] == "succeeded"


def handle_of(job: dict[str, Any]) -> Handle:
    return Handle(job["id"], job["cookie"])


# who runs the statement (a session that borrows a role, SET ROLE, cannot start its
# supervisor), and whether one is alive (registered) once ensure_supervisor() has run
_WHO = ("session_user <> current_user AS borrowed, session_user AS session, current_user AS role, "
        "pgbg.supervisor_pid() IS NOT NULL AS alive")
ENSURE_SQL = "SELECT pgbg.ensure_supervisor() AS pid, true AS queued, " + _WHO
# the same, only when a job of this role waits (so nothing starts after a submit that failed)
ENSURE_IF_QUEUED_SQL = (
    "SELECT CASE WHEN q.queued THEN pgbg.ensure_supervisor() END AS pid, q.queued, " + _WHO + " FROM (SELECT "
    "EXISTS (SELECT 1 FROM pgbg.job WHERE owner = current_user AND state = 'queued') AS queued) AS q"
)
SUBMIT_SQL = ("SELECT * FROM pgbg.submit(%s, %s, %s, %s, %s, %s::oid[], %s::int[], %s::text[], "
              "p_search_path => %s, p_group_name => %s, p_group_limit => %s)")
# pseudo types cannot be named in a column list; types made after initdb (oid 16384 and up:
# domains, enums, composites) are not read, since reading a value runs its type's code with
# the job owner's rights. pgbg.submit refuses them too (and types it cannot find).
ODD_TYPE_SQL = ("SELECT pg_catalog.format_type(t.oid, NULL) AS t FROM pg_catalog.pg_type t "
                "WHERE t.oid = ANY(%s::oid[]) AND (t.typtype = 'p' OR t.oid >= 16384) LIMIT 1")


def check_sql(sql_text: str, where: str | None = None) -> None:
    """What no job may be queued with, checked before anything is sent: no SQL at all, or a NUL
    byte (which libpq would cut the text at). ``where`` names the piece (a file and line)."""
    prefix = f"{where}: " if where else ""
    if not sql_text.strip():
        raise UsageError(f"{prefix}no SQL given")
    if "\x00" in sql_text:
        raise UsageError(f"{prefix}the SQL contains a NUL byte")


def register(
    conn: psycopg.Connection[Any],
    sql_text: str,
    *,
    label: str | None = None,
    timeout_ms: int | None = None,
    queue_size: int = 0,
    want_result: bool = False,
    group: str | None = None,
    group_limit: int | None = None,
) -> tuple[dict[str, Any], Start | None]:
    """Register a job (queued) and start this role's supervisor if none is alive.

    Returns the job row and what starting the supervisor found. The SQL is described
    first (no round trip when the preflight did it); the submit and the supervisor's start
    then go together, in one round trip, each its own transaction.
    """
    from pgbg_cli.db import check_dates
    from pgbg_cli.pipeline import Batch

    check_sql(sql_text)
    check_dates(conn)
    shape = describe.describe(conn, sql_text)
    # what the server can tell now (a syntax error, an unknown table, a missing privilege, a
    # statement that must run alone among others) fails here, not when the job runs
    precheck.check(conn, sql_text, shape)
    if want_result and precheck.is_multiple(shape):
        raise UsageError("--result needs a single statement (pg_background returns the rows of one query)")
    types, typmods, names = columns_of(shape)
    from pgbg_cli.db import user_search_path

    batch = Batch(conn)
    odd = None
    if want_result and shape.returns_rows:
        # sent ahead of the submit, which refuses the same types: when one is found, nothing is queued
        odd = batch.query(ODD_TYPE_SQL, (shape.types,))
        batch.sync()
    submitted = batch.query(SUBMIT_SQL, (sql_text, label, timeout_ms, queue_size, want_result, types, typmods,
                                         names, user_search_path(conn), group, group_limit))
    batch.sync()
    started = batch.query(ENSURE_IF_QUEUED_SQL)  # after the submit committed, so its supervisor sees the job
    batch.run()
    found = odd.one() if odd is not None else None
    if found:
        raise UsageError(f"--result cannot return a column of type {found['t']}: cast it to a built-in "
                         "type (e.g. ::text)")
    job = submitted.one()
    assert job is not None
    try:
        start = start_of(started, conn.info.user)
    except PgbgError:
        raise
    except Exception as exc:  # psycopg's, from the supervisor's start
        problem = start_trouble(job, exc)
        if problem is exc:
            raise
        raise problem from None
    return job, start


def columns_of(shape: describe.Shape) -> tuple[list[int] | None, list[int] | None, list[str] | None]:
    """The result columns pgbg.submit is told of: a statement's; '{}' for one statement without
    rows; NULL for several statements (whose last one may return rows: on pg_background 1.8
    pgbg then reads their command tags instead)."""
    if shape.returns_rows:
        return shape.types, shape.typmods, shape.names
    if "multiple commands" not in (shape.error or ""):
        return [], [], []
    return None, None, None


def start_trouble(job: dict[str, Any], exc: Exception) -> Exception:
    """What to raise when starting the supervisor failed after ``job`` was queued."""
    from pgbg_cli.errors import ExtensionProblem, extension_trouble

    trouble = extension_trouble(getattr(getattr(exc, "diag", None), "sqlstate", None), str(exc))
    if trouble:
        return ExtensionProblem(f"job {job['id']}:{job['cookie']} is queued, but {trouble}")
    return exc


@dataclass(frozen=True)
class Start:
    """What starting this role's supervisor found: one alive (or just started), or why not."""

    alive: bool
    no_slot: bool = False
    borrowed_by: str | None = None  # this session's user, when it only borrows the role
    role: str = ""


def ensure_supervisor(conn: psycopg.Connection[Any]) -> Start:
    """Start this role's supervisor if none is alive (from a session of the role itself)."""
    from pgbg_cli.pipeline import Batch

    batch = Batch(conn)
    slot = batch.query(ENSURE_SQL)
    batch.run()
    start = start_of(slot, conn.info.user)
    assert start is not None
    return start


def start_of(slot: Slot, user: str) -> Start | None:
    """What an ENSURE_SQL (or ENSURE_IF_QUEUED_SQL) answer means: None when nothing was queued
    (no supervisor needed); PgbgError when the role may not start one. ``user``: the session's."""
    import psycopg

    try:
        row = slot.one()
    except psycopg.errors.InsufficientResources:
        # only a session of the role itself tries to launch one (ensure_supervisor() starts none
        # from a session that borrows the role), so the role is the session's user
        return Start(alive=False, no_slot=True, role=user)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PgbgError(f"cannot start pgbg's supervisor: {str(exc).splitlines()[0]}") from None
    if row is None or not row["queued"]:
        return None
    if row["pid"] is None and not row["alive"]:
        return Start(alive=False, borrowed_by=row["session"] if row["borrowed"] else None, role=row["role"])
    return Start(alive=True, role=row["role"])


def await_start(conn: psycopg.Connection[Any], job: dict[str, Any], first: Start, *,
                timeout_s: float) -> tuple[Start, waiting.RoleState | None]:
    """After a launch whose supervisor could not start: try again for up to ``timeout_s``,
    until a supervisor runs, the dispatcher is on for the role, or the job is no longer
    queued. Returns the last try and what will start the job (None: it no longer waits)."""
    deadline = time.monotonic() + timeout_s
    start = first
    while True:
        if start.alive:
            return start, None
        state = waiting.states(conn, [job["owner"]]).get(job["owner"])
        if state is None or state.will_start:
            return start, state
        if get(conn, handle_of(job))["state"] != "queued":
            return start, None
        if time.monotonic() >= deadline:
            return start, state
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        start = ensure_supervisor(conn)


def reconcile(conn: psycopg.Connection[Any], *then: tuple[str, Any]) -> list[Slot]:
    """Make active jobs tell the truth, and restart this role's supervisor if it has work.

    The statements ``then`` (text, parameters) run right after, in the same round trip;
    their answers are returned, in order.
    """
    return reconcile_and_start(conn, *then)[1]


def reconcile_and_start(conn: psycopg.Connection[Any], *then: tuple[str, Any]) -> tuple[Start | None, list[Slot]]:
    """``reconcile``, and what starting this role's supervisor found (None: nothing queued)."""
    from pgbg_cli.pipeline import Batch

    batch = Batch(conn)
    done = batch.query("SELECT pgbg.reconcile()")
    batch.sync()
    started = batch.query(ENSURE_IF_QUEUED_SQL)
    batch.sync()
    slots = [batch.query(text, params) for text, params in then]
    batch.run()
    done.rows()
    # when none can start, list, show and capacity say why (waiting)
    return start_of(started, conn.info.user), slots


def fetch(conn: psycopg.Connection[Any], handles: Sequence[Handle]) -> dict[Handle, dict[str, Any]]:
    rows = conn.execute(*fetch_query(handles)).fetchall()
    return {handle_of(row): row for row in rows}


def fetch_query(handles: Sequence[Handle]) -> tuple[str, tuple[list[int], list[int]]]:
    """The statement ``fetch`` runs, and its parameters (to send it with others)."""
    return ("SELECT j.* FROM pgbg.job j JOIN unnest(%s::bigint[], %s::bigint[]) AS h(id, cookie) "
            "ON j.id = h.id AND j.cookie = h.cookie", ([h.id for h in handles], [h.cookie for h in handles]))


def found_all(handles: Sequence[Handle], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``fetch_query``'s rows in the order of ``handles``; UnknownHandle for one it did not find."""
    found = {handle_of(row): row for row in rows}
    for h in handles:
        if h not in found:
            raise UnknownHandle(f"no job with handle {h} (unknown id, wrong cookie, or not yours)")
    return [found[h] for h in handles]


def get_many(conn: psycopg.Connection[Any], handles: Sequence[Handle]) -> list[dict[str, Any]]:
    return found_all(handles, conn.execute(*fetch_query(handles)).fetchall())


def get(conn: psycopg.Connection[Any], handle: Handle) -> dict[str, Any]:
    return get_many(conn, [handle])[0]


def cancel(
    conn: psycopg.Connection[Any], handles: Sequence[Handle], *, grace_ms: int = 0
) -> list[dict[str, Any]]:
    """Ask for the jobs to stop. Queued jobs are canceled at once; running ones by their supervisor."""
    get_many(conn, handles)
    conn.execute(
        queries.text("cancel_jobs"),
        {"ids": [h.id for h in handles], "cookies": [h.cookie for h in handles], "grace_ms": grace_ms},
    )
    conn.execute("SELECT pgbg.reconcile()")
    return get_many(conn, handles)


def handles_by_label(conn: psycopg.Connection[Any], pattern: str, *, active_only: bool = True) -> list[Handle]:
    """Jobs whose label matches a shell-style pattern (``*`` and ``?``)."""
    rows = conn.execute(
        "SELECT id, cookie FROM pgbg.job WHERE label LIKE %s ESCAPE '\\' AND (NOT %s OR state = ANY(%s)) "
        "ORDER BY id",
        (glob_to_like(pattern), active_only, list(ACTIVE)),
    ).fetchall()
    return [handle_of(r) for r in rows]


def handles_by_group(conn: psycopg.Connection[Any], group: str, *, active_only: bool = True) -> list[Handle]:
    """The jobs of a group (those of any role that the caller sees: its own; every role's for
    pgbg_admin), in the order they were queued."""
    rows = conn.execute(
        "SELECT id, cookie FROM pgbg.job WHERE group_name = %s AND (NOT %s OR state = ANY(%s)) ORDER BY id",
        (group, active_only, list(ACTIVE)),
    ).fetchall()
    return [handle_of(r) for r in rows]


def glob_to_like(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def detach(conn: psycopg.Connection[Any], handles: Sequence[Handle]) -> list[dict[str, Any]]:
    """Stop tracking the jobs; their workers go on (pg_background's detach)."""
    jobs = get_many(conn, handles)
    for job in jobs:
        if job["state"] == "queued":
            raise UsageError(
                f"job {handle_of(job)} is still queued: no worker runs yet to detach from (cancel it instead)"
            )
    conn.execute(
        queries.text("detach_jobs"), {"ids": [h.id for h in handles], "cookies": [h.cookie for h in handles]}
    )
    conn.execute("SELECT pgbg.reconcile()")
    return get_many(conn, handles)


# How long a wait tries to get its connection back when the server drops it (a network blip,
# an idle-session timeout, a restart) before it gives up with exit 3; the jobs go on.
RECONNECT_S = 60.0
HELD_AFTER_S = 5.0  # a wait says why its jobs wait when none has started after this long


def wait(
    conn: psycopg.Connection[Any],
    handles: Sequence[Handle],
    *,
    timeout_s: float | None = None,
    any_: bool = False,
    tick: Callable[[list[dict[str, Any]]], None] | None = None,
    tick_interval: float = 1.0,
    reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
    unlisten: bool = True,
    on_held: Callable[[list[str]], None] | None = None,
) -> list[dict[str, Any]]:
    """Block until every job (or, with ``any_``, one job) has ended.

    Sleeps on LISTEN pgbg_jobs, which the supervisor notifies after it records an
    outcome; every second it also reconciles, so a job whose supervisor died ends too.
    Raises WaitTimedOut after ``timeout_s``. With ``reconnect``, a connection the server
    drops is made again (backing off, for up to RECONNECT_S) and the wait goes on.
    ``unlisten=False``: the caller closes the connection soon (which stops the listening)
    and spares the round trip of an UNLISTEN. ``on_held`` is told once, in lines for people,
    why the jobs wait when none of them has started after HELD_AFTER_S (a limit, a group, no
    free slot, no supervisor: ``waiting``).
    """
    import psycopg

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    held_look = time.monotonic() + HELD_AFTER_S
    started: str | None = None  # the role whose supervisor the last reconcile found or started
    last_reconcile = 0.0
    listening = False
    jobs: list[dict[str, Any]] = []
    try:
        while True:
            try:
                jobs = get_many(conn, handles)
                done = [j for j in jobs if is_final(j)]
                if done and (any_ or len(done) == len(jobs)):
                    return jobs
                if not listening:
                    # only now: jobs that have ended already cost no LISTEN; one that ends
                    # before the LISTEN is seen by the next look
                    conn.execute(f"LISTEN {CHANNEL}")
                    listening = True
                    continue
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    pending = ", ".join(str(handle_of(j)) for j in jobs if not is_final(j))
                    raise WaitTimedOut(f"timed out waiting for {pending}")
                if now - last_reconcile >= 1.0:
                    start = reconcile_and_start(conn)[0]
                    started = start.role if start is not None and start.alive else None
                    last_reconcile = now
                    continue
                if on_held is not None and now >= held_look:
                    held_look = now + HELD_AFTER_S
                    lines = held(conn, jobs, started=started)
                    if lines:
                        on_held(lines)
                        on_held = None  # said once
                if tick is not None:
                    tick(jobs)
                pause = tick_interval
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - now))
                for _ in conn.notifies(timeout=pause, stop_after=1):
                    pass
            except psycopg.OperationalError as exc:
                if reconnect is None or not dropped(conn):
                    raise  # the connection is fine (a lock timeout, say): not this handler's business
                conn = reconnected(reconnect, exc, then=going_on(handles, jobs, any_=any_))
                listening = True
    except KeyboardInterrupt:
        # Ctrl-C may have come in the middle of a statement: the connection is not fit for
        # UNLISTEN ("another command is already in progress", exit 3 instead of 130). Its owner
        # closes it, and a closed connection listens to nothing.
        listening = False
        raise
    finally:
        if listening and unlisten and not conn.closed:
            import psycopg

            try:
                conn.execute(f"UNLISTEN {CHANNEL}")
            except psycopg.Error:
                # the server dropped the connection after the last look: every outcome is read
                # already, and a dropped connection listens to nothing
                if not dropped(conn):
                    raise


def held(conn: psycopg.Connection[Any], jobs: list[dict[str, Any]], *, started: str | None = None) -> list[str]:
    """Why these jobs wait, when some are queued and none is starting or running; else nothing.
    ``started``: a role whose supervisor this session found alive or has just started."""
    if any(j["state"] in ("starting", "running") for j in jobs):
        return []
    queued = [dict(j) for j in jobs if j["state"] == "queued"]  # copies: annotate() writes reasons
    if not queued:
        return []
    import psycopg

    try:
        return waiting.annotate(conn, queued, started=started) + waiting.held_notes(conn, queued)
    except psycopg.Error:
        if dropped(conn):
            raise  # the wait connects again
        return []  # only a hint: a statement timeout, say, does not end the wait


def dropped(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server dropped ``conn`` (it cannot be used again)."""
    from psycopg import pq

    return bool(conn.closed or conn.broken or conn.pgconn.status == pq.ConnStatus.BAD)


def going_on(handles: Sequence[Handle], seen: Sequence[dict[str, Any]] = (), *, any_: bool = False) -> str:
    """The last words of a wait that lost its server: the jobs it still waited for (those of
    ``seen``, its last look, that had not ended; all of ``handles`` before any look), named
    (``launch --wait`` printed no handle), and how to wait for them again: by their group when
    they are all of one (a batch of hundreds), else by their handles; with ``--any`` when the
    wait was for the first of them to end (``any_``)."""
    command = "pgbg wait --any" if any_ else "pgbg wait"
    pending = [job for job in seen if not is_final(job)]
    names = [str(handle_of(job)) for job in pending] or [str(handle) for handle in handles]
    groups = {job.get("group_name") for job in pending}
    if len(pending) > GOING_ON_NAMED and len(groups) == 1 and None not in groups:
        (group,) = groups
        return (f"the {len(names)} jobs of group {group} that had not ended go on: {command} --group {group} "
                "once the server answers")
    jobs = f"job {names[0]} goes" if len(names) == 1 else f"the {len(names)} jobs go"
    return f"{jobs} on: {command} {' '.join(names)} once the server answers"


GOING_ON_NAMED = 10  # more than this many of one group: named by their group


def reconnected(reconnect: Callable[[], psycopg.Connection[Any]], lost: Exception, *,
                then: str) -> psycopg.Connection[Any]:
    """A new connection, listening, within RECONNECT_S; ConnectionProblem after that, whose
    message ends with ``then``: what becomes of the jobs, and what to do, as fits the caller."""
    import psycopg

    from pgbg_cli.db import first_line
    from pgbg_cli.errors import ConnectionProblem

    give_up = time.monotonic() + RECONNECT_S
    delay = 0.2
    while True:
        try:
            conn = reconnect()
            conn.execute(f"LISTEN {CHANNEL}")
            return conn
        except (ConnectionProblem, psycopg.Error):  # a connection that cannot be had yet: retried
            if time.monotonic() + delay > give_up:
                raise ConnectionProblem(
                    f"lost the connection ({first_line(lost)}) and could not make it again within "
                    f"{RECONNECT_S:.0f} s; {then}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def list_jobs(
    conn: psycopg.Connection[Any],
    *,
    states: Sequence[str] | None = None,
    label: str | None = None,
    include_all: bool = False,
    limit: int = 50,
    live_first: bool = False,
    group: str | None = None,
) -> list[dict[str, Any]]:
    """Live jobs and recent ones (the last hour), newest first (``live_first``: live ones before
    the others); ``include_all`` for all history."""
    text, params = list_query(states=states, label=label, include_all=include_all, limit=limit,
                              live_first=live_first, group=group)
    return conn.execute(text, params).fetchall()


def list_query(
    *,
    states: Sequence[str] | None = None,
    label: str | None = None,
    include_all: bool = False,
    limit: int = 50,
    live_first: bool = False,
    group: str | None = None,
    counted: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The statement ``list_jobs`` runs, and its parameters (to send it with others). With
    ``counted``, each row's ``total`` is how many jobs match in all, the limit aside."""
    return queries.text("list_jobs"), {
        "states": list(states) if states else None,
        "label": glob_to_like(label) if label else None,
        "all": include_all,
        "limit": limit,
        "live_first": live_first,
        "group": group,
        "counted": counted,
    }


def foreign_workers(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """pg_background workers in this database that pgbg did not launch."""
    return conn.execute(queries.text("foreign_workers")).fetchall()


def result_rows(job: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The stored result of a ``--result`` job as (column names, rows keyed by those names)."""
    names = list(job.get("result_names") or [])
    unique: list[str] = []
    for i, name in enumerate(names):
        unique.append(name if name not in unique else f"{name}_{i + 1}")
    rows = []
    for raw in job.get("result") or []:
        rows.append({unique[i]: raw.get(f"c{i + 1}") for i in range(len(unique))})
    return unique, rows
