"""Progress of a running job: what the worker reports through pg_background's progress
call, and what PostgreSQL's pg_stat_progress_* views say of the worker's pid."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries

if TYPE_CHECKING:
    import psycopg


# VACUUM's phases after its last pass over the heap: the block work is done.
VACUUM_LAST_PHASES = ("cleaning up indexes", "truncating heap", "performing final cleanup")
MIN_FRACTION_FOR_ESTIMATE = 0.01  # below 1% done, a time left is a guess
MIN_ELAPSED_FOR_ESTIMATE_MS = 1000


@dataclass(frozen=True)
class Progress:
    reported_pct: int | None = None
    reported_msg: str | None = None
    command: str | None = None
    phase: str | None = None
    done: int | None = None  # of the current phase, in unit
    total: int | None = None
    unit: str | None = None
    overall: float | None = None  # fraction of the whole command, across its phases (VACUUM)
    rate_bytes_per_s: float | None = None
    eta_ms: float | None = None  # time left, from the pace so far

    @property
    def percent(self) -> float | None:
        """The worker's own figure when it reports one, else the whole command's (VACUUM), else
        the current phase's done of total."""
        if self.reported_pct is not None:
            return float(max(0, min(100, self.reported_pct)))
        if self.overall is not None:
            return max(0.0, min(100.0, 100.0 * self.overall))
        if self.total and self.done is not None and self.total > 0:
            return max(0.0, min(100.0, 100.0 * self.done / self.total))
        return None

    @property
    def text(self) -> str:
        """What the job is doing (see ``describe``)."""
        return describe(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "percent": None if self.percent is None else round(self.percent, 1),
            "reported_pct": self.reported_pct,
            "message": self.reported_msg,
            "command": self.command,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "rate_bytes_per_s": None if self.rate_bytes_per_s is None else round(self.rate_bytes_per_s),
            "eta_ms": None if self.eta_ms is None else round(self.eta_ms),
        }


def describe(prog: Mapping[str, Any]) -> str:
    """``VACUUM scanning heap 120/640 blocks`` or a job's own message: what it is doing, as the
    ``progress`` field of listings holds it (no figures of pace: see ``pace``)."""
    parts = [str(prog[key]) for key in ("command", "phase") if prog.get(key)]
    if prog.get("total") and prog.get("done") is not None:
        parts.append(f"{prog['done']}/{prog['total']} {prog.get('unit') or ''}".strip())
    if prog.get("message"):
        parts.append(str(prog["message"]))
    return " ".join(parts)


def pace(prog: Mapping[str, Any]) -> str:
    """``31 MB/s``: how fast, where it can be told (a VACUUM)."""
    from pgbg_cli.numbers import spell_bytes

    return f"{spell_bytes(prog['rate_bytes_per_s'], powers_of=1000)}/s" if prog.get("rate_bytes_per_s") else ""


def left(prog: Mapping[str, Any]) -> str:
    """``1m20s left``: the time left at the pace so far, where it can be told."""
    from pgbg_cli.durations import format_ms

    if prog.get("eta_ms") is None:
        return ""
    return f"{format_ms(max(1000, prog['eta_ms']) // 1000 * 1000)} left"


def vacuum_work(view: dict[str, Any]) -> tuple[float, float] | None:
    """Blocks of work a VACUUM has done, and has to do in all, across its phases; None when
    the view does not tell yet (no table size).

    The model, in blocks: one scan of the heap (``heap_blks_total``). On a table with indexes
    where the scan has found dead rows, also a pass over every index (their size, from the
    catalog) each time the dead rows are removed from them (``index_vacuum_count`` passes done,
    one more to come while the heap is not all scanned or while a pass runs; PostgreSQL 17
    and later tell how many indexes the running pass has done), and a second visit of the heap
    (``heap_blks_vacuumed`` is the block it has reached). So the figure may step back when the
    first dead rows turn up late in a scan, or when memory for dead rows runs out and another
    index pass is needed. The last phases (index cleanup, truncation) count as done.
    """
    total = view.get("heap_blks_total")
    if not total or total <= 0:
        return None
    phase = view.get("phase") or ""
    scanned = min(total, view.get("heap_blks_scanned") or 0)
    vacuumed = min(total, view.get("heap_blks_vacuumed") or 0)
    passes_done = view.get("index_vacuum_count") or 0
    index_blks = view.get("index_blks") or 0
    dead_rows = passes_done > 0 or (view.get("dead_items") or 0) > 0 or phase in ("vacuuming indexes",
                                                                                    "vacuuming heap")
    if (view.get("indexes") or 0) == 0 or not dead_rows:
        work, done = float(total), float(scanned)  # one pass (without indexes, pages are cleaned as scanned)
    else:
        more = phase in ("scanning heap", "vacuuming indexes") or (phase == "vacuuming heap" and scanned < total)
        running_pass = 0.0
        if phase == "vacuuming indexes" and view.get("indexes_total"):
            running_pass = min(1.0, (view.get("indexes_processed") or 0) / view["indexes_total"])
        work = 2.0 * total + (passes_done + (1 if more else 0)) * index_blks
        done = float(scanned + vacuumed) + (passes_done + running_pass) * index_blks
    if phase in VACUUM_LAST_PHASES:
        return work, work
    if phase == "initializing":
        return 0.0, work
    return min(done, work), work


def time_left_ms(fraction: float | None, elapsed_ms: float | None) -> float | None:
    """Time left at the pace so far; None while too little is done to tell, or when done."""
    if fraction is None or elapsed_ms is None:
        return None
    if fraction < MIN_FRACTION_FOR_ESTIMATE or fraction >= 1 or elapsed_ms < MIN_ELAPSED_FOR_ESTIMATE_MS:
        return None
    return elapsed_ms * (1 - fraction) / fraction


def by_pid(conn: psycopg.Connection[Any], pids: list[int]) -> dict[int, dict[str, Any]]:
    """pg_stat_progress_* rows of these backends, keyed by pid."""
    pids = [p for p in pids if p]
    if not pids:
        return {}
    rows = conn.execute(queries.text("progress_by_pid"), {"pids": pids}).fetchall()
    return {row["pid"]: row for row in rows}


def for_job(job: dict[str, Any], views: dict[int, dict[str, Any]], *,
            elapsed_ms: float | None = None) -> Progress | None:
    """Combine a job's reported progress with its worker's progress-view row; ``elapsed_ms``
    (how long the job has run) gives the pace and the time left where the figure is the
    whole job's (a reported percent, or a VACUUM's)."""
    if job.get("state") not in ("running", "starting"):
        return None
    view = views.get(job.get("worker_pid") or 0) or {}
    if job.get("progress_pct") is None and not job.get("progress_msg") and not view:
        return None
    overall = rate = None
    if view.get("command") == "VACUUM":
        work = vacuum_work(view)
        if work is not None:
            overall = work[0] / work[1]
            if elapsed_ms and elapsed_ms >= MIN_ELAPSED_FOR_ESTIMATE_MS and view.get("block_size"):
                rate = work[0] * view["block_size"] / (elapsed_ms / 1000)
    prog = Progress(
        reported_pct=job.get("progress_pct"),
        reported_msg=job.get("progress_msg"),
        command=view.get("command"),
        phase=view.get("phase"),
        done=view.get("done"),
        total=view.get("total"),
        unit=view.get("unit"),
        overall=overall,
        rate_bytes_per_s=rate,
    )
    whole = job.get("progress_pct") is not None or overall is not None  # not a phase's figure
    if whole and prog.percent is not None:
        prog = dataclasses.replace(prog, eta_ms=time_left_ms(prog.percent / 100, elapsed_ms))
    return prog


def enriched(conn: psycopg.Connection[Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Job rows as listings show them: derived fields, and the progress of running ones."""
    from pgbg_cli import jobview

    views = by_pid(conn, [j.get("worker_pid") for j in jobs if j["state"] == "running"])
    out = []
    for job in jobs:
        row = jobview.enrich(job)
        prog = for_job(job, views, elapsed_ms=row.get("elapsed_ms"))
        row["progress"] = prog.as_dict() if prog else None
        out.append(row)
    return out
