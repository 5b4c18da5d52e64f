"""Statistics of pgbg's jobs, state counts for the watch views, pruning and settings.

``job_stats`` gives, per window, the columns of pg_background's own ``pg_background_stats()``
computed from the registry (so they cover every session, not only the caller's), plus the
queue, the spread of run times and the worker slots in use. Rows follow RLS: a role sees
its own jobs, pgbg_admin all. ``session_stats`` is the extension's raw row, which only
ever describes the calling session.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries
from pgbg_cli.errors import PrivilegeProblem, UsageError

if TYPE_CHECKING:
    import psycopg

GROUPINGS = ("label", "role", "group")

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
    conn: psycopg.Connection[Any], *, window_ms: int, by: str | None = None, group: str | None = None
) -> list[dict[str, Any]]:
    """One row (``by=None``) or one row per label, role or group, over live jobs and the window;
    ``group``: the jobs of that group only.

    A window with no job still gives its row (of zeros) when ``by`` is None.
    """
    if by is not None and by not in GROUPINGS:
        raise UsageError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")
    return conn.execute(queries.text("stats_jobs"),
                        {"window_s": window_ms / 1000, "by": by, "group": group}).fetchall()


@dataclass(frozen=True)
class Ended:
    """A job that ended, as a window keeps it."""

    owner: str
    label: str | None
    state: str
    started_at: dt.datetime | None
    finished_at: dt.datetime
    run_ms: decimal.Decimal | None
    group_name: str | None = None


class Window:
    """The jobs of a window (live ones, and those that ended in the last ``window_ms``),
    kept current by reading only what changed: each ``refresh`` reads every live job and
    the jobs that ended since the previous refresh (``stats_delta.sql``), and forgets
    those that left the window. So a refresh costs what the live jobs and the jobs ending
    cost, however many jobs the window or the history holds; ``figures`` then computes
    the same columns as ``job_stats`` (tests hold them equal).

    A job's end is read again for ``OVERLAP`` after it: its outcome is committed a little
    after its ``finished_at``. One recorded later than that (a stalled supervisor) is
    counted by ``pgbg stats``, and here only from the next start.
    """

    OVERLAP = dt.timedelta(seconds=30)

    def __init__(self, window_ms: int) -> None:
        self.window = dt.timedelta(milliseconds=window_ms)
        self.ended: dict[int, Ended] = {}
        self.live: list[dict[str, Any]] = []
        self.now: dt.datetime | None = None
        self.max_workers: int | None = None
        self._high: dt.datetime | None = None

    @property
    def since(self) -> dt.datetime:
        return (self.now or dt.datetime.now(dt.timezone.utc)) - self.window

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        after = None if self._high is None else self._high - self.OVERLAP
        rows = conn.execute(queries.text("stats_delta"),
                            {"after": after, "window_s": self.window.total_seconds()}).fetchall()
        live = []
        for row in rows:
            kind = row["kind"]
            if kind == "now":
                self.now, self.max_workers = row["now"], row["max_workers"]
            elif kind == "live":
                live.append(row)
            else:
                self.ended[row["id"]] = Ended(row["owner"], row["label"], row["state"], row["started_at"],
                                              row["finished_at"], row["run_ms"], row["group_name"])
                if self._high is None or row["finished_at"] > self._high:
                    self._high = row["finished_at"]
        if self._high is None:
            self._high = self.since
        self.live = live
        since = self.since
        for key in [k for k, e in self.ended.items() if e.finished_at < since]:
            del self.ended[key]

    def _matching(self, states: list[str] | None, label_glob: str | None,
                  group: str | None = None) -> tuple[list[Ended], list[dict[str, Any]]]:
        match = glob_matcher(label_glob)
        ended = [e for e in self.ended.values()
                 if (not states or e.state in states) and match(e.label) and group in (None, e.group_name)]
        live = [r for r in self.live if (not states or r["state"] in states) and match(r["label"])
                and group in (None, r["group_name"])]
        return ended, live

    def counts(self, *, states: list[str] | None = None, label_glob: str | None = None,
               group: str | None = None) -> dict[str, int]:
        """Jobs per state (every state, zeros included), optionally filtered as ``pgbg list`` does."""
        ended, live = self._matching(states, label_glob, group)
        counts = {s: 0 for s in STATE_ORDER}
        for item in ended:
            counts[item.state] = counts.get(item.state, 0) + 1
        for row in live:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts

    def figures(self, *, by: str | None = None, only_group: str | None = None) -> list[dict[str, Any]]:
        """The rows of ``job_stats`` for this window, computed from what the window holds
        (``only_group``: as ``job_stats(group=...)``)."""
        since = self.since
        groups: dict[Any, dict[str, Any]] = {}

        def group(owner: str, label: str | None, name: str | None) -> dict[str, Any]:
            key = label if by == "label" else owner if by == "role" else name if by == "group" else "all"
            if key not in groups:
                groups[key] = {"launched": 0, "states": {}, "runs": []}
            return groups[key]

        if by is None:
            group("", None, None)
        for e in self.ended.values():
            if only_group is not None and e.group_name != only_group:
                continue
            g = group(e.owner, e.label, e.group_name)
            g["states"][e.state] = g["states"].get(e.state, 0) + 1
            g["launched"] += e.started_at is not None and e.started_at >= since
            if e.run_ms is not None:
                g["runs"].append(e.run_ms)
        for r in self.live:
            if only_group is not None and r["group_name"] != only_group:
                continue
            g = group(r["owner"], r["label"], r["group_name"])
            g["states"][r["state"]] = g["states"].get(r["state"], 0) + 1
            g["launched"] += r["started_at"] is not None and r["started_at"] >= since
        out = []
        for key in sorted(groups, key=lambda k: (k is None, k or "")):
            g = groups[key]
            st = g["states"]
            runs = sorted(g["runs"])
            floats = [float(x) for x in runs]
            out.append({
                "group": key,
                "workers_launched": g["launched"],
                "workers_completed": st.get("succeeded", 0),
                "workers_failed": st.get("failed", 0) + st.get("lost", 0),
                "workers_canceled": st.get("canceled", 0),
                "workers_timed_out": st.get("timed_out", 0),
                "workers_active": st.get("starting", 0) + st.get("running", 0),
                "avg_execution_ms": _round1(sum(runs) / len(runs)) if runs else None,
                "max_workers": self.max_workers,
                "queued": st.get("queued", 0),
                "lost": st.get("lost", 0),
                "detached": st.get("detached", 0),
                "p50_ms": _round1(percentile_cont(floats, 0.5)),
                "p95_ms": _round1(percentile_cont(floats, 0.95)),
                "max_ms": _round1(runs[-1]) if runs else None,
            })
        return out


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation over sorted ``values``."""
    if not values:
        return None
    pos = fraction * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _round1(value: Any) -> float | None:
    """``round(x::numeric, 1)::float8`` as PostgreSQL does it (halves away from zero)."""
    if value is None:
        return None
    # a float8 becomes numeric through its 15 significant digits, as PostgreSQL casts it
    exact = decimal.Decimal(format(value, ".15g")) if isinstance(value, float) else decimal.Decimal(value)
    return float(exact.quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP))


def glob_matcher(pattern: str | None) -> Any:
    """A test of labels against a ``*``/``?`` pattern, as ``pgbg list --label`` matches them."""
    if not pattern:
        return lambda label: True
    regex = re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern),
                       re.DOTALL)
    return lambda label: label is not None and regex.fullmatch(label) is not None


def session_stats(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """pg_background's raw ``pg_background_stats()`` row: the calling session's workers only."""
    from psycopg import sql

    from pgbg_cli import extension

    ext = extension.discover(conn)
    query = sql.SQL(queries.text("stats_session")).format(stats=sql.Identifier(ext.schema, ext.fn("stats")))
    row = dict(conn.execute(query).fetchone())
    # the same keys on every version: a counter this version lacks (1.8 has no
    # workers_timed_out) is null, never missing
    return {**{c: row.get(c) for c in EXTENSION_COLUMNS}, **row}


def prune(conn: psycopg.Connection[Any], *, older_than_ms: int, dry_run: bool = False) -> int:
    """Delete (or, with ``dry_run``, count) finished jobs older than that; returns how many."""
    name = "prune_count" if dry_run else "prune_jobs"
    row = conn.execute(queries.text(name), {"older_than_s": older_than_ms / 1000}).fetchone()
    return int(row["deleted"])


def settings(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(queries.text("settings_list")).fetchall()


# The form of each setting's value, checked before anything is sent (a test holds this equal
# to the schema's pgbg._setting_spec(); the database checks the ranges and names them).
SETTING_KINDS = {
    "history_keep": "integer",
    "history_max_age": "interval",
    "lock_timeout_ms": "integer",
    "max_running_per_role": "integer",
    "poll_ms": "integer",
    "reserve_slots": "integer",
    "supervisor_idle_ms": "integer",
}


def check_setting(name: str, value: str) -> str:
    """The value, stripped, if it has the form its setting takes; UsageError otherwise."""
    import re

    kind = SETTING_KINDS.get(name)
    if kind is None:
        raise UsageError(f"unknown setting {name!r}: one of {', '.join(sorted(SETTING_KINDS))}")
    value = value.strip()
    if not value.isascii() or not value.isprintable():
        raise UsageError(f"{name}: a setting's value is plain ASCII (a whole number, or an interval "
                         f"such as '30 days'), not {value!r}")
    if kind == "integer" and not re.fullmatch(r"[0-9]{1,10}", value):
        raise UsageError(f"{name} takes a whole number (ASCII digits, no sign), not {value!r}")
    if kind == "interval" and not re.fullmatch(r"[0-9A-Za-z :.]{1,60}", value):
        raise UsageError(f"{name} takes a PostgreSQL interval such as '30 days', not {value!r}")
    if kind == "interval" and is_bare_number(value):
        # PostgreSQL reads seconds; beside settings in milliseconds a user may mean those
        raise UsageError(f"{name} takes an interval with its unit, not a bare number ({value!r}): such as "
                         f"'10 minutes', '12 hours' or '30 days' (units: {INTERVAL_UNITS})")
    return value


INTERVAL_UNITS = "ms, s, min, h, d, weeks, months, years"  # as PostgreSQL's interval reads them


def is_bare_number(value: str) -> bool:
    """Whether an interval's text is a number alone (``600000``), which PostgreSQL reads as seconds."""
    return re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", value.strip()) is not None


def shown_setting(value: Any, row: dict[str, Any]) -> str:
    """A setting's value as table and plain output show it: an interval stored as a bare number
    (by SQL, or by a pgbg that took one) with the unit the server reads it in."""
    text = "" if value is None else str(value)
    if SETTING_KINDS.get(row.get("name", "")) == "interval" and is_bare_number(text):
        return f"{text.strip()} seconds"
    return text


def set_setting(conn: psycopg.Connection[Any], name: str, value: str) -> dict[str, Any]:
    """Change one setting; pgbg_admin only. The database checks the value's type and range
    (``pgbg._setting_spec()``) and names them when it refuses one."""
    import psycopg as pg

    from pgbg_cli.db import first_line

    value = check_setting(name, value)
    try:
        row = conn.execute(queries.text("settings_set"), {"name": name, "value": value}).fetchone()
    except pg.errors.InsufficientPrivilege:
        raise PrivilegeProblem(
            f"only members of pgbg_admin may change pgbg's settings (ask for pgbg grant --admin "
            f"{conn.info.user})"
        ) from None
    except pg.errors.InvalidParameterValue as exc:
        raise UsageError(first_line(exc).removeprefix("pgbg: ")) from None
    if row is None:
        raise UsageError(f"setting {name!r} is missing from pgbg.settings: run pgbg init")
    return row


def say_if_nothing_can_start(conn: psycopg.Connection[Any], reserve_slots: int) -> None:
    """Warn when ``reserve_slots`` leaves no worker slot for a job beside its supervisor's, with the
    slots other workers hold now (pgbg.worker_slots(), what ``pgbg capacity`` counts): queued jobs
    would wait until the setting is lowered, or max_worker_processes raised."""
    from pgbg_cli import output

    s = conn.execute("SELECT * FROM pgbg.worker_slots()").fetchone()
    others = s["used"] - s["pgbg_jobs"] - s["pgbg_supervisors"]
    room = s["max_worker_processes"] - others - 1  # a supervisor's slot, then the jobs'
    if reserve_slots >= room:
        output.say(f"pgbg: warning: reserve_slots {reserve_slots} leaves no slot for a job: of "
                   f"max_worker_processes {s['max_worker_processes']}, other workers hold {others} now and a "
                   f"supervisor takes 1; queued jobs wait until it is at most {max(room - 1, 0)}")


def utc_stamp(now: dt.datetime | None = None) -> str:
    """``2026-11-25T14:00:00Z``: the time stamp that starts each watch line."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
