"""How jobs look: the columns of ``list``, the fields of ``show`` and of an outcome."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgbg_cli.durations import format_ms
from pgbg_cli.output import Column, bar


def _ms(value: Any, row: dict[str, Any]) -> str:
    return format_ms(value)


def _time(value: Any, row: dict[str, Any]) -> str:
    if not isinstance(value, dt.datetime):
        return "" if value is None else str(value)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _lines(value: Any, row: dict[str, Any]) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [] if value is None else [str(value)]


def _progress(value: Any, row: dict[str, Any]) -> str:
    if not value:
        return ""
    pct = value.get("percent")
    text = value.get("message") or value.get("phase") or ""
    return f"{bar(pct)} {text}".strip() if pct is not None else text




LIST_COLUMNS = [
    Column("handle", "HANDLE"),
    Column("label", "LABEL"),
    Column("state", "STATE"),
    Column("source", "BY"),
    Column("owner", "ROLE"),
    Column("queued_at", "QUEUED", _time),
    Column("started_at", "STARTED", _time),
    Column("elapsed_ms", "ELAPSED", _ms, justify="right"),
    Column("progress", "PROGRESS", _progress),
    Column("query", "QUERY"),
]

RECORD_FIELDS = [
    Column("handle", "handle"),
    Column("label", "label"),
    Column("state", "state"),
    Column("owner", "role"),
    Column("sqlstate", "sqlstate"),
    Column("message", "message"),
    Column("detail", "detail"),
    Column("hint", "hint"),
    Column("context", "context"),
    Column("command_tag", "command tag"),
    Column("row_count", "rows"),
    Column("elapsed_ms", "elapsed", _ms),
    Column("queued_at", "queued", _time),
    Column("started_at", "started", _time),
    Column("finished_at", "finished", _time),
    Column("timeout_ms", "timeout", _ms),
    Column("worker_pid", "worker pid"),
    Column("progress", "progress", _progress),
    Column("reason", "reason"),
    # what the job said: for people, its lines (messages.for_people)
    Column("messages", "messages", _lines),
    Column("messages_dropped", "messages dropped"),
    Column("client_addr", "launched from"),
    Column("sql", "sql"),
]


def enrich(job: dict[str, Any], progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add the derived fields (handle, elapsed, progress) that listings show."""
    out = dict(job)
    out.setdefault("handle", f"{job['id']}:{job['cookie']}")
    out.setdefault("source", "pgbg")
    if "elapsed_ms" not in out or out["elapsed_ms"] is None:
        start = job.get("started_at") or job.get("queued_at")
        end = job.get("finished_at") or dt.datetime.now(dt.timezone.utc)
        out["elapsed_ms"] = None if start is None else round((end - start).total_seconds() * 1000)
    if out.get("query") is None and job.get("sql") is not None:
        out["query"] = " ".join(str(job["sql"]).split())[:80]
    out["progress"] = progress
    for private in ("result", "result_types", "result_typmods", "cancel_signalled_at",
                    "cancel_terminated", "supervisor_pid", "worker_cookie", "worker_started"):
        out.pop(private, None)
    return out


def foreign_row(worker: dict[str, Any]) -> dict[str, Any]:
    """A pg_background worker that pgbg did not launch, as a row of ``list`` (it has no handle)."""
    return {
        "id": f"pid {worker['pid']}",
        "cookie": "-",
        "handle": None,
        "label": worker["application_name"],
        "state": "running",
        "source": "other",
        "owner": worker["owner"],
        "queued_at": None,
        "started_at": worker["backend_start"],
        "finished_at": None,
        "elapsed_ms": worker["elapsed_ms"],
        "worker_pid": worker["pid"],
        "query": worker["query"],
    }


def summary(job: dict[str, Any]) -> str:
    """One line for stderr, such as ``job 12:345 succeeded: VACUUM; in 3.2s``."""
    details = []
    if job.get("sqlstate"):
        details.append(f"[{job['sqlstate']}] {job.get('message') or ''}".rstrip())
    elif job.get("command_tag"):
        rows = job.get("row_count")
        details.append(job["command_tag"] + (f", {rows} rows" if rows else ""))
    if job.get("reason") and job["state"] != "succeeded":
        details.append(job["reason"])
    elapsed = enrich(job).get("elapsed_ms")
    if elapsed is not None and job["state"] not in ("queued", "starting", "running"):
        details.append(f"in {format_ms(elapsed)}")
    from pgbg_cli.messages import state_text

    head = f"job {job['id']}:{job['cookie']} {state_text(job)}"
    return head + (": " + "; ".join(details) if details else "")
