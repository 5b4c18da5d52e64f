"""Progress of a running job: what the worker reports through pg_background's progress
call, and what PostgreSQL's pg_stat_progress_* views say of the worker's pid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Progress:
    reported_pct: int | None = None
    reported_msg: str | None = None
    command: str | None = None
    phase: str | None = None
    done: int | None = None
    total: int | None = None
    unit: str | None = None

    @property
    def percent(self) -> float | None:
        """The worker's own figure when it reports one, else done of total."""
        if self.reported_pct is not None:
            return float(max(0, min(100, self.reported_pct)))
        if self.total and self.done is not None and self.total > 0:
            return max(0.0, min(100.0, 100.0 * self.done / self.total))
        return None

    @property
    def text(self) -> str:
        parts = []
        if self.command:
            parts.append(self.command)
        if self.phase:
            parts.append(self.phase)
        if self.total and self.done is not None:
            parts.append(f"{self.done}/{self.total} {self.unit or ''}".strip())
        if self.reported_msg:
            parts.append(self.reported_msg)
        return " · ".join(parts)

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
        }


def by_pid(conn: psycopg.Connection[Any], pids: list[int]) -> dict[int, dict[str, Any]]:
    """pg_stat_progress_* rows of these backends, keyed by pid."""
    pids = [p for p in pids if p]
    if not pids:
        return {}
    rows = conn.execute(queries.text("progress_by_pid"), {"pids": pids}).fetchall()
    return {row["pid"]: row for row in rows}


def for_job(job: dict[str, Any], views: dict[int, dict[str, Any]]) -> Progress | None:
    """Combine a job's reported progress with its worker's progress-view row."""
    if job.get("state") not in ("running", "starting"):
        return None
    view = views.get(job.get("worker_pid") or 0) or {}
    if job.get("progress_pct") is None and not job.get("progress_msg") and not view:
        return None
    return Progress(
        reported_pct=job.get("progress_pct"),
        reported_msg=job.get("progress_msg"),
        command=view.get("command"),
        phase=view.get("phase"),
        done=view.get("done"),
        total=view.get("total"),
        unit=view.get("unit"),
    )


def enriched(conn: psycopg.Connection[Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Job rows as listings show them: derived fields, and the progress of running ones."""
    from pgbg_cli import jobview

    views = by_pid(conn, [j.get("worker_pid") for j in jobs if j["state"] == "running"])
    out = []
    for job in jobs:
        prog = for_job(job, views)
        out.append(jobview.enrich(job, prog.as_dict() if prog else None))
    return out
