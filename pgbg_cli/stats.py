"""Statistics of pgbg's jobs, state counts for the watch views, pruning and settings.

``job_stats`` gives, per window, the columns of pg_background's own ``pg_background_stats()``
computed from the registry (so they cover every session, not only the caller's), plus the
queue, the spread of run times and the worker slots in use. Rows follow RLS: a role sees
its own jobs, pgbg_admin all. ``session_stats`` is the extension's raw row, which only
ever describes the calling session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries
from pgbg_cli.errors import PrivilegeProblem, UsageError

if TYPE_CHECKING:
    import psycopg

GROUPINGS = ("label", "role")

# The columns of pg_background_stats() (2.0), in its order.
EXTENSION_COLUMNS = (
    "workers_launched", "workers_completed", "workers_failed", "workers_canceled",
    "workers_timed_out", "workers_active", "avg_execution_ms", "max_workers",
)
EXTRA_COLUMNS = ("queued", "lost", "detached", "p50_ms", "p95_ms", "max_ms")
SLOT_COLUMNS = ("slots_used", "max_worker_processes", "pg_background_workers")

STATE_ORDER = ("running", "starting", "queued", "succeeded", "failed", "canceled", "timed_out", "lost",
               "detached")


@dataclass(frozen=True)
class Slots:
    used: int
    max_worker_processes: int
    pg_background: int

    @property
    def free(self) -> int:
        return max(0, self.max_worker_processes - self.used)

    def as_dict(self) -> dict[str, int]:
        return {"slots_used": self.used, "max_worker_processes": self.max_worker_processes,
                "pg_background_workers": self.pg_background}


def worker_slots(conn: psycopg.Connection[Any]) -> Slots:
    """Slots of max_worker_processes in use now (``pgbg.worker_slots()``)."""
    row = conn.execute("SELECT * FROM pgbg.worker_slots()").fetchone()
    return Slots(used=row["used"], max_worker_processes=row["max_worker_processes"],
                 pg_background=row["pg_background"])


def job_stats(
    conn: psycopg.Connection[Any], *, window_ms: int, by: str | None = None
) -> list[dict[str, Any]]:
    """One row (``by=None``) or one row per label or role, over live jobs and the window.

    A window with no job still gives its row (of zeros) when ``by`` is None.
    """
    if by is not None and by not in GROUPINGS:
        raise UsageError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")
    return conn.execute(queries.text("stats_jobs"), {"window_s": window_ms / 1000, "by": by}).fetchall()


def state_counts(
    conn: psycopg.Connection[Any], *, states: list[str] | None = None, label_like: str | None = None
) -> dict[str, int]:
    """Jobs per state among the live ones and those that ended in the last hour."""
    rows = conn.execute(queries.text("stats_counts"), {"states": states or None, "label": label_like}).fetchall()
    counts = {s: 0 for s in STATE_ORDER}
    for row in rows:
        counts[row["state"]] = int(row["n"])
    return counts


def session_stats(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """pg_background's raw ``pg_background_stats()`` row: the calling session's workers only."""
    from psycopg import sql

    from pgbg_cli import extension

    ext = extension.discover(conn)
    query = sql.SQL(queries.text("stats_session")).format(stats=sql.Identifier(ext.schema, ext.fn("stats")))
    return dict(conn.execute(query).fetchone())


def prune(conn: psycopg.Connection[Any], *, older_than_ms: int, dry_run: bool = False) -> int:
    """Delete (or, with ``dry_run``, count) finished jobs older than that; returns how many."""
    name = "prune_count" if dry_run else "prune_jobs"
    row = conn.execute(queries.text(name), {"older_than_s": older_than_ms / 1000}).fetchone()
    return int(row["deleted"])


# The settings pgbg.settings holds, and what each value must look like.
SETTING_KINDS = {
    "max_running_per_role": "count",
    "reserve_slots": "count",
    "poll_ms": "positive",
    "supervisor_idle_ms": "count",
    "history_keep": "count",
    "history_max_age": "interval",
}


def settings(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(queries.text("settings_list")).fetchall()


def set_setting(conn: psycopg.Connection[Any], name: str, value: str) -> dict[str, Any]:
    """Change one setting after checking its value; pgbg_admin only."""
    import psycopg as pg

    kind = SETTING_KINDS.get(name)
    if kind is None:
        raise UsageError(f"unknown setting {name!r}: one of {', '.join(SETTING_KINDS)}")
    value = value.strip()
    if kind in ("count", "positive"):
        if not value.isdigit() or (kind == "positive" and int(value) == 0):
            least = "1" if kind == "positive" else "0"
            raise UsageError(f"{name} takes a whole number of {least} or more, not {value!r}")
        value = str(int(value))
    else:
        try:
            with conn.transaction():
                conn.execute("SELECT %s::interval", (value,))
        except pg.errors.DataError:
            raise UsageError(f"{name} takes a PostgreSQL interval such as '30 days', not {value!r}") from None
    try:
        row = conn.execute(queries.text("settings_set"), {"name": name, "value": value}).fetchone()
    except pg.errors.InsufficientPrivilege:
        raise PrivilegeProblem(
            f"only members of pgbg_admin may change pgbg's settings (ask for pgbg grant --admin "
            f"{conn.info.user})"
        ) from None
    if row is None:
        raise UsageError(f"setting {name!r} is missing from pgbg.settings: run pgbg init")
    return row


def utc_stamp(now: dt.datetime | None = None) -> str:
    """``2026-11-25T14:00:00Z``: the time stamp that starts each watch line."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
