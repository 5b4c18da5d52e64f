"""How jobs look: the job record of JSON and CSV (the contract), and for people the columns of
``list`` and the fields of ``show`` and of an outcome."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgbg_cli import output
from pgbg_cli.durations import format_ms
from pgbg_cli.output import Column, Format, bar


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


def _preview(value: Any, row: dict[str, Any]) -> str:
    """The SQL as a table shows it: white space as single spaces, cut to PREVIEW characters."""
    return preview(value)


PREVIEW = 80


def preview(sql: Any, limit: int = PREVIEW) -> str:
    """``sql`` on one line (runs of white space as one space), cut to ``limit`` characters."""
    return " ".join(str(sql or "")[: limit * 10].split())[:limit]


# The job record: one per job, the same in every command's JSON and CSV (list, show, wait,
# cancel, detach, launch and list --watch's JSON lines); README "JSON contract" documents each
# field. Within one CONTRACT_VERSION fields keep their names, types and meanings and are never
# removed; new ones are added at the end only.
CONTRACT = "pgbg_job"
CONTRACT_VERSION = 1
CONTRACT_FIELDS = (
    CONTRACT, "id", "handle", "source", "state", "label", "group", "owner", "sql",
    "queued_at", "started_at", "finished_at", "duration_ms", "timeout_ms", "worker_pid", "client_addr",
    "sqlstate", "message", "detail", "hint", "context", "command_tag", "row_count", "reason",
    "progress", "messages", "messages_dropped", "target",
)
CONTRACT_COLUMNS = [Column(key) for key in CONTRACT_FIELDS]
# the states of a row that stands for a target of several that answered no jobs (``message`` says why)
UNREACHED = ("unreachable", "unavailable")
_TIMES = ("queued_at", "started_at", "finished_at")
# Linux's PID_MAX_LIMIT: no process has a larger pid (nor one below 1). pg_background hands back
# such numbers now and then for a job that ended at once (1.8 and 2.0.3 alike: the facts
# document); pgbg keeps them to read the outcome, and shows no pid for them.
PID_MAX_LIMIT = 4194304


def possible_pid(value: Any) -> int | None:
    """``value`` when a process can have it as its pid, else None."""
    return value if isinstance(value, int) and 1 <= value <= PID_MAX_LIMIT else None


def _pid(value: Any, row: dict[str, Any]) -> str:
    pid = possible_pid(value)
    return "" if pid is None else str(pid)


def _utc(value: Any) -> Any:
    return value.astimezone(dt.timezone.utc) if isinstance(value, dt.datetime) else value


def record(row: dict[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """A job row (from the registry, ``enrich``ed, a ``foreign_row`` or a target's that could not
    be used) as the contract's record: CONTRACT_FIELDS in order, timestamps in UTC, the whole SQL."""
    other = row.get("source") == "other"
    source = "other" if other else None if row.get("state") in UNREACHED else "pgbg"
    ours = source == "pgbg"
    started, finished = row.get("started_at"), row.get("finished_at")
    duration = None
    if isinstance(started, dt.datetime):
        end = finished if isinstance(finished, dt.datetime) else now or dt.datetime.now(dt.timezone.utc)
        duration = max(0, round((end - started).total_seconds() * 1000))
    out: dict[str, Any] = {}
    for key in CONTRACT_FIELDS:
        if key == CONTRACT:
            out[key] = CONTRACT_VERSION
        elif key == "id":
            out[key] = row.get("id") if ours else None
        elif key == "handle":
            out[key] = (row.get("handle") or f"{row['id']}:{row['cookie']}") if ours else None
        elif key == "source":
            out[key] = source
        elif key == "group":
            out[key] = row.get("group_name")
        elif key == "duration_ms":
            out[key] = duration
        elif key == "messages_dropped":
            out[key] = (row.get("messages_dropped") or 0) if ours else None
        elif key in _TIMES:
            out[key] = _utc(row.get(key))
        elif key == "worker_pid":
            out[key] = possible_pid(row.get(key))
        else:
            out[key] = row.get(key)
    return out


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
    Column("sql", "QUERY", _preview),
]

RECORD_FIELDS = [
    Column("handle", "handle"),
    Column("label", "label"),
    Column("group_name", "group"),
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
    Column("worker_pid", "worker pid", _pid),
    Column("progress", "progress", _progress),
    Column("reason", "reason"),
    # what the job said: for people, its lines (messages.for_people)
    Column("messages", "messages", _lines),
    Column("messages_dropped", "messages dropped"),
    Column("client_addr", "launched from"),
    Column("sql", "sql"),
]


def for_scripts(fmt: Format | str | None) -> bool:
    """Whether ``fmt`` is one of the formats that print job records (JSON, CSV)."""
    return output.resolve(fmt) in (Format.json, Format.csv)


def emit_job(row: dict[str, Any], fmt: Format | str | None) -> None:
    """One job (an ``enrich``ed row): its record in JSON (an object) or CSV; for people, the
    fields it has (RECORD_FIELDS)."""
    if for_scripts(fmt):
        output.emit_record(record(row), CONTRACT_COLUMNS, fmt)
    else:
        output.emit_record(row, RECORD_FIELDS, fmt, compact=True)


def emit_jobs(rows: list[dict[str, Any]], fmt: Format | str | None) -> None:
    """Several jobs: an array of records in JSON (even of one or none), CSV rows under one
    header; for people, LIST_COLUMNS (the plain table; watch.jobs_table draws Rich's)."""
    if for_scripts(fmt):
        output.emit_rows([record(row) for row in rows], CONTRACT_COLUMNS, fmt)
    else:
        output.emit_rows(rows, LIST_COLUMNS, fmt)


def enrich(job: dict[str, Any], progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add the derived fields (handle, elapsed, progress) that listings show."""
    out = dict(job)
    out.setdefault("handle", f"{job['id']}:{job['cookie']}")
    out.setdefault("source", "pgbg")
    if "elapsed_ms" not in out or out["elapsed_ms"] is None:
        start = job.get("started_at") or job.get("queued_at")
        end = job.get("finished_at") or dt.datetime.now(dt.timezone.utc)
        out["elapsed_ms"] = None if start is None else round((end - start).total_seconds() * 1000)
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
        "sql": worker["query"],
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
        # a reason may begin with the state it explains ("detached: pgbg stopped tracking it"),
        # which the head of the line says already
        details.append(job["reason"].removeprefix(f"{job['state']}: "))
    elapsed = enrich(job).get("elapsed_ms")
    if elapsed is not None and job["state"] not in ("queued", "starting", "running"):
        details.append(f"in {format_ms(elapsed)}")
    from pgbg_cli.messages import state_text

    head = f"job {job['id']}:{job['cookie']} {state_text(job)}"
    return head + (": " + "; ".join(details) if details else "")
