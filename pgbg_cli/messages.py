"""What a job said: the WARNING, NOTICE and INFO messages kept with its outcome.

The supervisor keeps them where the server has pgbg's C module pgbg_messages
(ext/pgbg_messages; fn_45_messages.sql): at most ``KEPT_MAX`` messages and ``KEPT_BYTES``
bytes of them per job, the rest counted in ``messages_dropped``. ``messages`` is None when
none were kept (no module on the server, or no outcome was read), [] when the job said
nothing.
"""

from __future__ import annotations

from typing import Any

KEPT_MAX = 100  # as pgbg._messages_start() asks pgbg_messages for
KEPT_BYTES = 65536
NOT_KEPT = "not kept on this server (see README: Messages)"
# states whose outcome the supervisor read (and so whose messages it could keep)
READ_STATES = ("succeeded", "failed", "timed_out", "canceled")


def warning_count(job: dict[str, Any]) -> int:
    """How many of the kept messages are WARNINGs."""
    return sum(1 for m in job.get("messages") or [] if isinstance(m, dict) and m.get("severity") == "WARNING")


def with_warnings(job: dict[str, Any]) -> bool:
    """A success that said WARNING: `--strict` makes it exit WARNED."""
    return job.get("state") == "succeeded" and warning_count(job) > 0


def state_text(job: dict[str, Any]) -> str:
    """The state for people: ``succeeded with 2 warnings`` tells a success that warned apart."""
    state = str(job.get("state") or "")
    n = warning_count(job) if state == "succeeded" else 0
    return f"{state} with {n} warning{'s' if n != 1 else ''}" if n else state


def line(message: dict[str, Any]) -> str:
    """One message as one line: ``WARNING: text (detail: ...; hint: ...)`` (not yet escaped)."""
    text = f"{message.get('severity') or 'NOTICE'}: {message.get('message') or ''}"
    extra = [f"{key}: {message[key]}" for key in ("detail", "hint") if message.get(key)]
    if extra:
        text += " (" + "; ".join(extra) + ")"
    if message.get("truncated"):
        text += " [cut at 4 kB]"
    return text


def lines(job: dict[str, Any]) -> list[str]:
    """Every kept message, one line each, then a line for those left out beyond the bound."""
    kept = job.get("messages")
    if kept is None:
        return [NOT_KEPT] if job.get("state") in READ_STATES and "messages" in job else []
    out = [line(m) for m in kept if isinstance(m, dict)]
    dropped = job.get("messages_dropped") or 0
    if dropped:
        out.append(f"... {dropped} more message{'s' if dropped != 1 else ''} not kept "
                   f"(pgbg keeps at most {KEPT_MAX} messages, {KEPT_BYTES // 1024} kB, per job)")
    return out


def for_people(record: dict[str, Any], fmt: Any) -> dict[str, Any]:
    """The record as a human format shows it: the state with its warnings counted, the messages
    as lines ("not kept" said; the count left out as a line of its own). JSON and CSV keep
    the fields as they are."""
    from pgbg_cli import output
    from pgbg_cli.output import Format

    if output.resolve(fmt) in (Format.json, Format.csv):
        return record
    out = dict(record)
    out["state"] = state_text(record)
    out["messages"] = lines(record) or None
    out["messages_dropped"] = None
    return out


def say_all(jobs: list[dict[str, Any]]) -> None:
    """Each job's messages on stderr (prefixed by the job when several); a message of several
    lines (VACUUM VERBOSE's report) as that many lines, the later ones indented, each escaped."""
    from pgbg_cli import output

    for job in jobs:
        kept = job.get("messages")
        if not kept and not job.get("messages_dropped"):
            continue
        prefix = f"job {job['id']}:{job['cookie']}: " if len(jobs) > 1 else ""
        for text in lines(job):
            first, *more = text.split("\n")
            output.say(prefix + first)
            for rest in more:
                output.say(prefix + "  " + rest)
