"""Worker slots, who holds them, and how many more background jobs fit right now.

Every pg_background worker (and every pgbg supervisor) holds one of the server's
``max_worker_processes`` slots, shared with parallel query, logical replication and
other extensions' workers. pgbg keeps ``reserve_slots`` of them free for those and runs
at most ``max_running_per_role`` jobs per role; pg_background itself lets one session
have ``pg_background.max_workers`` workers at a time (a pgbg supervisor is one session).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries
from pgbg_cli.output import Column

if TYPE_CHECKING:
    import psycopg

    from pgbg_cli.extension import Extension

DEFAULT_RESERVE = 2  # reserve_slots' default before pgbg is installed (schema/fn_00_common.sql, _setting_spec)
DEFAULT_MAX_WORKERS = 16  # pg_background.max_workers' default


@dataclass
class Capacity:
    """One look at the server's worker slots and, when installed, pgbg's budget."""

    role: str
    max_worker_processes: int
    max_parallel_workers: int
    used_slots: int
    pgbg_job_workers: int
    pgbg_supervisors: int
    other_pg_background: int
    parallel_workers: int
    replication_workers: int
    other_workers: int
    hidden_processes: int
    pg_background_max_workers: int
    schema: str  # installed | outdated | not installed | no access
    reserve_slots: int = DEFAULT_RESERVE
    max_running_per_role: int | None = None
    queued_jobs: int | None = None
    running_jobs: int | None = None
    jobs_seen: str | None = None  # "all roles" | "own jobs" (row-level security)
    role_queued_jobs: int = 0
    role_running_jobs: int = 0
    live_supervisors: int | None = None
    supervisor_running: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def supervised(self) -> bool:
        """Whether jobs would go through pgbg's queue and supervisor."""
        return self.max_running_per_role is not None

    @property
    def free_slots(self) -> int:
        return max(0, self.max_worker_processes - self.used_slots)

    @property
    def supervisor_slot(self) -> int:
        """1 when this role's first job must also start its supervisor."""
        return 1 if self.supervised and not self.supervisor_running else 0

    @property
    def role_cap(self) -> int:
        """Jobs of this role that may run at once: pgbg's cap and the supervisor session's."""
        if self.max_running_per_role is None:
            return self.pg_background_max_workers
        return min(self.max_running_per_role, self.pg_background_max_workers)

    @property
    def slot_room(self) -> int:
        return self.max_worker_processes - self.used_slots - self.reserve_slots - self.supervisor_slot

    @property
    def role_room(self) -> int:
        return self.role_cap - self.role_running_jobs

    @property
    def safe_to_launch(self) -> int:
        """Jobs that would start at once (this role's queued jobs go first)."""
        return max(0, min(self.slot_room, self.role_room) - self.role_queued_jobs)

    @property
    def limited_by(self) -> str:
        if self.slot_room <= self.role_room:
            return "worker slots"
        if self.max_running_per_role is not None and self.max_running_per_role <= self.pg_background_max_workers:
            return "max_running_per_role"
        return "pg_background.max_workers"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            free_slots=self.free_slots,
            supervisor_slot=self.supervisor_slot,
            safe_to_launch=self.safe_to_launch,
            limited_by=self.limited_by,
        )
        return data


@dataclass
class Plan:
    """Whether ``wanted`` more jobs fit now and, if not, what would make them fit."""

    wanted: int
    fits: bool
    verdict: str  # whole: says the first change too
    changes: list[str]
    short: str = ""  # the verdict without the change (people see the changes under it)


def _schema_state(conn: psycopg.Connection[Any]) -> str:
    from pgbg_cli import install

    row = conn.execute(queries.text("capacity_schema_access")).fetchone()
    if row is None or not row["present"]:
        return "not installed"
    if not row["usable"]:
        return "no access"
    return "installed" if install.status(conn).current else "outdated"


def _session_limit(conn: psycopg.Connection[Any], ext: Extension) -> int:
    from psycopg import sql

    stmt = sql.SQL(queries.text("capacity_session_limit")).format(
        stats=sql.Identifier(ext.schema, ext.fn("stats"))
    )
    row = conn.execute(stmt).fetchone()
    setting = (row or {}).get("setting")
    if setting not in (None, ""):
        return int(setting)
    if row and row.get("max_workers") is not None:
        return int(row["max_workers"])
    return DEFAULT_MAX_WORKERS


def measure(conn: psycopg.Connection[Any], ext: Extension) -> Capacity:
    """Read the slots, the session limit and (if installed and readable) pgbg's budget."""
    state = _schema_state(conn)
    if state == "installed":
        slots = conn.execute("SELECT * FROM pgbg.worker_slots()").fetchone()
    else:
        slots = conn.execute(queries.text("worker_slots")).fetchone()
    cap = Capacity(
        role=ext.current_user,
        max_worker_processes=slots["max_worker_processes"],
        max_parallel_workers=slots["max_parallel_workers"],
        used_slots=slots["used"],
        pgbg_job_workers=slots["pgbg_jobs"],
        pgbg_supervisors=slots["pgbg_supervisors"],
        other_pg_background=slots["pg_background_other"],
        parallel_workers=slots["parallel"],
        replication_workers=slots["replication"],
        other_workers=slots["other"],
        hidden_processes=slots["hidden"],
        pg_background_max_workers=_session_limit(conn, ext),
        schema=state,
    )
    if state in ("installed", "outdated"):
        budget = conn.execute(queries.text("capacity_budget")).fetchone()
        cap.max_running_per_role = budget["max_running_per_role"]
        cap.reserve_slots = budget["reserve_slots"]
        cap.queued_jobs = budget["queued_jobs"]
        cap.running_jobs = budget["running_jobs"]
        cap.jobs_seen = "all roles" if budget["sees_all_jobs"] else "own jobs"
        cap.role_queued_jobs = budget["role_queued_jobs"]
        cap.role_running_jobs = budget["role_running_jobs"]
        cap.live_supervisors = budget["live_supervisors"]
        cap.supervisor_running = budget["supervisor_pid"] is not None
        if state == "installed":
            from pgbg_cli import waiting

            cap.notes.extend(waiting.queued_notes(conn))  # queued jobs nothing starts: why, the fix
    if state == "not installed":
        cap.notes.append(
            f"pgbg's schema is not installed in database {conn.info.dbname!r} (pgbg init): "
            f"no job budget; {DEFAULT_RESERVE} slots kept in reserve by default"
        )
    elif state == "no access":
        cap.notes.append(
            f"role {cap.role!r} may not read pgbg's schema (pgbg grant {cap.role}): "
            f"no job budget; {DEFAULT_RESERVE} slots kept in reserve by default"
        )
    elif state == "outdated":
        cap.notes.append("pgbg's schema is outdated: run pgbg init (slots counted with this role's view)")
    if cap.hidden_processes:
        these = "1 other process" if cap.hidden_processes == 1 else f"{cap.hidden_processes} other processes"
        cap.notes.append(
            f"role {cap.role!r} may not see what {these} run as, so slots in use may be more than counted "
            "(pgbg init installs pgbg.worker_slots(), which sees them all; or GRANT pg_read_all_stats)"
        )
    return cap


def plan(cap: Capacity, wanted: int) -> Plan:
    """Whether ``wanted`` more jobs would start now; if not, the changes that would let them."""
    safe = cap.safe_to_launch
    if wanted <= safe:
        verdict = f"{_jobs(wanted)} fit now: {safe} can start at once ({_why(cap)})"
        return Plan(wanted, True, verdict, [], verdict)

    changes: list[str] = []
    ahead = cap.role_queued_jobs
    # Slots: everything in use now, this role's queued jobs, its supervisor, the new jobs, the reserve.
    slots_needed = cap.used_slots + ahead + cap.supervisor_slot + wanted + cap.reserve_slots
    if slots_needed > cap.max_worker_processes:
        idle_needed = slots_needed - cap.used_slots
        change = (
            f"raise max_worker_processes from {cap.max_worker_processes} to {slots_needed}: "
            "needs a server restart (ALTER SYSTEM SET max_worker_processes = "
            f"{slots_needed}, then restart PostgreSQL)"
        )
        if idle_needed <= cap.max_worker_processes and cap.used_slots:
            change += f", or wait until enough of the {cap.used_slots} slots in use now are free"
        changes.append(change)
        if cap.supervised and cap.reserve_slots and slots_needed - cap.reserve_slots <= cap.max_worker_processes:
            keep = cap.reserve_slots - (slots_needed - cap.max_worker_processes)
            changes.append(
                f"or lower pgbg's reserve_slots from {cap.reserve_slots} to {keep} (as pgbg_admin: "
                f"pgbg settings reserve_slots {keep}), leaving less room "
                "for parallel query and replication"
            )
    per_role = cap.role_running_jobs + ahead + wanted
    if cap.max_running_per_role is not None and per_role > cap.max_running_per_role:
        changes.append(
            f"raise pgbg's max_running_per_role from {cap.max_running_per_role} to {per_role} "
            f"(as pgbg_admin: pgbg settings max_running_per_role {per_role})"
        )
    if per_role > cap.pg_background_max_workers:
        who = "the supervisor's session" if cap.supervised else "one session"
        changes.append(
            f"pg_background.max_workers (per session) is {cap.pg_background_max_workers}, "
            f"so {who} may have only that many workers: raise it to {per_role} "
            f"(ALTER ROLE {cap.role} SET pg_background.max_workers = {per_role}, or in postgresql.conf)"
        )
    short = f"only {safe} can start at once" if safe else "none can start at once"
    tail = ""
    if cap.supervised:
        tail = f"; pgbg launch queues the other {wanted - safe} until there is room"
    first = changes[0]
    verdict = f"{_jobs(wanted)} do not fit now: {short} ({_why(cap)}); {first}{tail}"
    return Plan(wanted, False, verdict, changes, f"{_jobs(wanted)} do not fit now: {short} ({_why(cap)}){tail}")


def _jobs(n: int) -> str:
    return f"{n} more job" if n == 1 else f"{n} more jobs"


def _why(cap: Capacity) -> str:
    parts = [f"{cap.free_slots} of {cap.max_worker_processes} slots free", f"{cap.reserve_slots} in reserve"]
    if cap.supervisor_slot:
        parts.append("1 for this role's supervisor")
    if cap.supervised:
        parts.append(f"{cap.role_running_jobs} of {cap.role_cap} jobs of {cap.role} running")
    if cap.role_queued_jobs:
        parts.append(f"{cap.role_queued_jobs} queued")
    return ", ".join(parts)


def _yes_no(value: Any, row: dict[str, Any]) -> str:
    return "" if value is None else ("yes" if value else "no")


def _lines(value: Any, row: dict[str, Any]) -> list[str]:
    return [str(line) for line in value or []]  # one line each (the output layer escapes them)


FIELDS = [
    Column("max_worker_processes", "max_worker_processes"),
    Column("used_slots", "slots in use"),
    Column("pgbg_job_workers", "  pgbg job workers"),
    Column("pgbg_supervisors", "  pgbg supervisors"),
    Column("other_pg_background", "  other pg_background"),
    Column("parallel_workers", "  parallel workers"),
    Column("replication_workers", "  logical replication"),
    Column("other_workers", "  other workers"),
    Column("hidden_processes", "not visible to this role"),
    Column("free_slots", "free slots"),
    Column("max_parallel_workers", "max_parallel_workers"),
    Column("pg_background_max_workers", "pg_background.max_workers"),
    Column("schema", "pgbg schema"),
    Column("reserve_slots", "reserve_slots"),
    Column("max_running_per_role", "max_running_per_role"),
    Column("queued_jobs", "queued jobs"),
    Column("running_jobs", "running jobs"),
    Column("jobs_seen", "jobs counted"),
    Column("live_supervisors", "live supervisors"),
    Column("role", "role"),
    Column("role_running_jobs", "role's running jobs"),
    Column("role_queued_jobs", "role's queued jobs"),
    Column("supervisor_running", "role's supervisor running", _yes_no),
    Column("supervisor_slot", "slot for a supervisor"),
    Column("safe_to_launch", "safe to launch now"),
    Column("limited_by", "limited by"),
]
NOTES = Column("notes", "notes", _lines)

PLAN_FIELDS = [
    Column("plan", "plan"),
    Column("fits", "fits", _yes_no),
    Column("verdict", "verdict"),
    Column("changes", "changes", _lines),
]


# What people see without --verbose: the answer first, then one line each for the slots,
# the role's budget and pgbg's schema (every field is in JSON and CSV, and with --verbose).
SUMMARY_FIELDS = [
    Column("can_start", "can start now"),
    Column("slots_text", "worker slots"),
    Column("role_text", "role"),
    Column("schema", "pgbg schema"),
]
def _bullets(value: Any, row: dict[str, Any]) -> list[str]:
    return [f"- {line}" for line in value or []]


SHORT_PLAN_FIELDS = [
    Column("short_verdict", "verdict"),
    Column("changes", "to make room", _bullets),
]


def record(cap: Capacity, verdict: Plan | None = None) -> dict[str, Any]:
    """The fields of ``FIELDS`` (and ``PLAN_FIELDS`` with a plan) as one record, and those
    of ``SUMMARY_FIELDS`` (``SHORT_PLAN_FIELDS``)."""
    data = cap.as_dict()
    if verdict is not None:
        data.update(plan=verdict.wanted, fits=verdict.fits, verdict=verdict.verdict, changes=verdict.changes,
                    short_verdict=verdict.short)
    data.update(can_start=_can_start(cap), slots_text=_slots(cap), role_text=_role(cap))
    return data


def _can_start(cap: Capacity) -> str:
    n = cap.safe_to_launch
    what = "no more jobs" if n == 0 else _jobs(n)
    return f"{what} (limited by {cap.limited_by})"


def _slots(cap: Capacity) -> str:
    """``11 of 24 in use (9 pgbg jobs, 1 pgbg supervisor, 1 logical replication), 2 kept in reserve, 13 free``"""
    holders = [(cap.pgbg_job_workers, "pgbg job", "pgbg jobs"),
               (cap.pgbg_supervisors, "pgbg supervisor", "pgbg supervisors"),
               (cap.other_pg_background, "other pg_background", "other pg_background"),
               (cap.parallel_workers, "parallel worker", "parallel workers"),
               (cap.replication_workers, "logical replication", "logical replication"),
               (cap.other_workers, "other", "other")]
    held = [f"{n} {one if n == 1 else many}" for n, one, many in holders if n]
    text = f"{cap.used_slots} of {cap.max_worker_processes} in use"
    if held:
        text += f" ({', '.join(held)})"
    text += f", {cap.reserve_slots} kept in reserve, {cap.free_slots} free"
    if cap.hidden_processes:
        text += f"; {cap.hidden_processes} more not visible to {cap.role}"
    return text


def _role(cap: Capacity) -> str:
    """``pgbg_app: 0 running, 0 queued, at most 8 at once (max_running_per_role); no supervisor yet ...``"""
    if not cap.supervised:
        return (f"{cap.role}: at most {cap.role_cap} workers of one session "
                f"(pg_background.max_workers); no pgbg budget")
    limit = "max_running_per_role" if cap.role_cap == cap.max_running_per_role else "pg_background.max_workers"
    text = (f"{cap.role}: {cap.role_running_jobs} running, {cap.role_queued_jobs} queued, "
            f"at most {cap.role_cap} at once ({limit})")
    if cap.supervisor_running:
        return text + "; its supervisor runs"
    return text + "; no supervisor yet (its first job starts one, in a slot of its own)"
