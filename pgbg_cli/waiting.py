"""Why queued jobs wait when no supervisor of their role runs, and what starts them.

A role's supervisor is started only from a session of that role itself (see
``fn_20_supervisor.sql``): by that role's own pgbg commands (``launch``, ``list``, ``show``,
``wait``), or by the dispatcher (``pgbg dispatch``, pg_cron running as the role). When none
of these comes, a queued job waits; ``launch`` says so with exit 75, and ``list``, ``show``
and ``capacity`` say why and what fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries

if TYPE_CHECKING:
    import psycopg

DISPATCH_EVERY_S = 5  # pgbg dispatch's pg_cron schedule
DISPATCH_STALE_S = 60  # a dispatcher not seen for this long is said to be late


@dataclass(frozen=True)
class RoleState:
    """What will start a role's queued jobs."""

    role: str
    supervised: bool
    dispatch_on: bool
    dispatch_age_s: float | None  # since its last run was seen; None: not yet
    max_worker_processes: int
    used_slots: int

    @property
    def free_slots(self) -> int:
        return max(0, self.max_worker_processes - self.used_slots)

    @property
    def will_start(self) -> bool:
        """Whether something will start its queued jobs without anyone's further command."""
        return self.supervised or self.dispatch_on

    def why(self, *, borrowed_by: str | None = None) -> str | None:
        """One phrase, why its queued jobs wait and what fixes it; None when a supervisor runs."""
        if self.supervised:
            return None
        role = self.role
        slots = f"{self.used_slots} of {self.max_worker_processes} in use"
        if self.dispatch_on:
            if self.dispatch_age_s is not None and self.dispatch_age_s > DISPATCH_STALE_S:
                return (f"no supervisor of {role} runs, and its dispatcher last ran {_age(self.dispatch_age_s)} ago "
                        f"(pg_cron needs a free worker slot too: {slots}; see pgbg dispatch status)")
            if not self.free_slots:
                return (f"no worker slot is free for {role}'s supervisor ({slots}): the dispatcher starts it "
                        "once one frees (to hurry, free slots or raise max_worker_processes)")
            return f"the dispatcher starts {role}'s supervisor within {DISPATCH_EVERY_S} s"
        dispatcher = "or an admin runs pgbg dispatch enable (pg_cron)"
        if borrowed_by:
            return (f"this session is {borrowed_by} acting as {role}, and only a session of {role} itself starts "
                    f"{role}'s supervisor: run pgbg list as {role}, {dispatcher}")
        if not self.free_slots:
            return (f"no supervisor of {role} runs and no worker slot is free for one ({slots}): free slots or "
                    f"raise max_worker_processes, then pgbg list as {role} starts it; {dispatcher}")
        return (f"no supervisor of {role} runs: pgbg list (or show, wait) as {role} starts it, {dispatcher} "
                "to have it started within seconds")


def _age(seconds: float) -> str:
    from pgbg_cli.durations import format_ms

    return format_ms(int(seconds) * 1000)


def states(conn: psycopg.Connection[Any], roles: Iterable[str]) -> dict[str, RoleState]:
    wanted = sorted(set(roles))
    if not wanted:
        return {}
    rows = conn.execute(queries.text("waiting"), {"roles": wanted}).fetchall()
    return {
        r["role"]: RoleState(
            role=r["role"], supervised=r["supervised"], dispatch_on=r["dispatch_on"],
            dispatch_age_s=None if r["dispatch_age_s"] is None else float(r["dispatch_age_s"]),
            max_worker_processes=r["max_worker_processes"], used_slots=r["used"])
        for r in rows
    }


def annotate(conn: psycopg.Connection[Any], jobs: list[dict[str, Any]], *, started: str | None = None) -> list[str]:
    """Give each queued job whose role has no live supervisor the reason it waits (its
    ``reason``); return one line per such role, for people. ``started``: a role whose
    supervisor this session has just started (it registers a moment later)."""
    owners = {j["owner"] for j in jobs if j.get("state") == "queued" and j.get("owner")} - {started}
    if not owners:
        return []
    found = states(conn, owners)
    lines = []
    for role in sorted(owners):
        why = found[role].why() if role in found else None
        if why is None:
            continue
        waiting = [j for j in jobs if j.get("state") == "queued" and j.get("owner") == role]
        for job in waiting:
            job["reason"] = f"waiting: {why}"
        lines.append(_line(role, len(waiting), why))
    return lines


def _line(role: str, n: int, why: str) -> str:
    return f"{n} queued job{'s' if n != 1 else ''} of {role} wait{'s' if n == 1 else ''}: {why}"


def queued_notes(conn: psycopg.Connection[Any]) -> list[str]:
    """One line per role whose queued jobs (those this role may see) no supervisor runs for."""
    counts = {r["owner"]: r["n"] for r in conn.execute(
        "SELECT j.owner, count(*) AS n FROM pgbg.job j WHERE j.state = 'queued' GROUP BY j.owner").fetchall()}
    found = states(conn, counts)
    lines = []
    for role in sorted(counts):
        why = found[role].why() if role in found else None
        if why is not None:
            lines.append(_line(role, counts[role], why))
    return lines


def held_why(row: dict[str, Any]) -> str | None:
    """Why a queued job waits while its role's supervisor runs (a row of queries/held.sql): its
    group's limit, its role's, no free slot; None when none of these holds it."""
    group = row["group_name"]
    if group is not None and row["group_limit"] is not None and row["group_running"] >= row["group_limit"]:
        return f"group {group} runs {row['group_running']} at once, its limit; it starts when one of them ends"
    if row["role_running"] >= row["max_running"]:
        n = row["role_running"]
        return (f"{n} job{'s' if n != 1 else ''} of {row['owner']} {'are' if n != 1 else 'is'} starting or "
                f"running, as many as max_running_per_role ({row['max_running']}) allows; it starts when one "
                "ends (pgbg settings max_running_per_role N raises the limit)")
    if row["reason"]:
        return f"{row['reason']} (pgbg capacity shows the slots)"
    return None


def held_notes(conn: psycopg.Connection[Any], jobs: list[dict[str, Any]]) -> list[str]:
    """One line per reason that keeps these queued jobs waiting under a live supervisor."""
    ids = [j["id"] for j in jobs if j.get("state") == "queued"]
    if not ids:
        return []
    by_why: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(queries.text("held"), {"ids": ids}).fetchall():
        why = held_why(row)
        if why is not None:
            by_why.setdefault(why, []).append(row)
    lines = []
    for why, rows in by_why.items():
        if len(rows) == 1:
            lines.append(f"job {rows[0]['id']} is still queued: {why}")
        else:
            lines.append(f"{len(rows)} jobs are still queued ({', '.join(str(r['id']) for r in rows[:5])}"
                         f"{', ...' if len(rows) > 5 else ''}): {why}")
    return lines
