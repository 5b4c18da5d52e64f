"""A live progress display on stderr while ``launch --wait`` / ``wait`` runs (terminals only).

One line per live job, fitted to the terminal: the bar, its percent and the time since the
job started always come first, then the time left and the pace where they can be told, then
what the job is doing (cut first when the line is too long). Waiting on several jobs
adds a first line, ``23/30 done (22 succeeded, 1 failed), 5 running, 2 queued``, and lists the
running jobs before the queued ones, as many as the terminal's height holds. The clocks tick
between refreshes and count from each job's start (read on the server's clock), not from when
pgbg began to wait.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from typing import Any

from pgbg_cli import jobs as jobs_mod
from pgbg_cli import progress
from pgbg_cli.durations import format_ms
from pgbg_cli.output import bar, printable

CLOCK_WIDTH = 6  # "59s", "4m05s", "2h03m": right-aligned so that the line does not shift


@dataclass(frozen=True)
class Seen:
    """A job as the last refresh read it."""

    job: dict[str, Any]
    progress: dict[str, Any] | None


def _since(job: dict[str, Any]) -> dt.datetime | None:
    """When the job's clock starts: its start, or when it was queued while it waits."""
    return job.get("started_at") or job.get("queued_at")


def _clock(job: dict[str, Any], now: dt.datetime) -> str:
    since = _since(job)
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    return format_ms(seconds * 1000) if seconds else "0s"


def _order(job: dict[str, Any]) -> tuple[int, Any]:
    """Running jobs first (longest running first), then queued ones (in queue order)."""
    if job["state"] in ("running", "starting"):
        return 0, job.get("started_at") or job.get("queued_at") or dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return 1, job["id"]


def job_line(seen: Seen, now: dt.datetime, width: int) -> str:
    """``job 12 [##--------]  21%    14s  52s left  31 MB/s  VACUUM scanning heap 120/640 blocks``: the
    bar, its percent and the job's clock, then the time left and the pace, then what it does
    (cut first when the line is too long)."""
    job, prog = seen.job, seen.progress or {}
    head = f"job {job['id']} "
    pct = prog.get("percent")
    clock = _clock(job, now).rjust(CLOCK_WIDTH)
    bar_width = 20 if width >= 100 else 10 if width >= 50 else 4
    figure = job["state"] if pct is None else bar(pct, bar_width)
    line = f"{head}{figure}  {clock}"
    doing = progress.describe(prog) if prog else job.get("reason") or ""
    tail = [part for part in (progress.left(prog), progress.pace(prog), doing) if part]
    if tail:
        line += "  " + printable("  ".join(tail))
    return line


def summary_line(all_jobs: list[dict[str, Any]]) -> str:
    """``23/30 done (22 succeeded, 1 failed), 5 running, 2 queued``."""
    ended: dict[str, int] = {}
    for job in all_jobs:
        if jobs_mod.is_final(job):
            ended[job["state"]] = ended.get(job["state"], 0) + 1
    done = sum(ended.values())
    text = f"{done}/{len(all_jobs)} done"
    if ended:
        text += " (" + ", ".join(f"{n} {state}" for state, n in sorted(ended.items(),
                                                                     key=lambda kv: jobs_mod.FINAL.index(kv[0]))) + ")"
    running = sum(1 for j in all_jobs if j["state"] in ("running", "starting"))
    queued = sum(1 for j in all_jobs if j["state"] == "queued")
    return f"{text}, {running} running, {queued} queued"


def frame(seen: list[Seen], now: dt.datetime, width: int, height: int) -> list[str]:
    """The lines of one refresh, at most ``height - 1`` (the cursor keeps its line), each cut
    to ``width`` by the caller."""
    if not seen:
        return []  # nothing read yet
    room = max(1, height - 1)
    live = sorted((s for s in seen if not jobs_mod.is_final(s.job)), key=lambda s: _order(s.job))
    if len(seen) == 1:
        return [job_line(live[0], now, width)] if live else []
    lines = [summary_line([s.job for s in seen])]
    fit = room - 1
    shown = live if len(live) <= fit else live[: max(0, fit - 1)]
    lines += [job_line(s, now, width) for s in shown]
    if len(shown) < len(live):
        rest = live[len(shown):]
        running = sum(1 for s in rest if s.job["state"] in ("running", "starting"))
        lines.append(f"+{len(rest)} more ({running} running, {len(rest) - running} queued)")
    return lines


class LiveBar:
    """The live display, fed by the job rows and the pg_stat_progress_* rows of their workers."""

    def __init__(self, conn: Any, enabled: bool | None = None) -> None:
        self.conn = conn
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._live: Any = None
        self._console: Any = None
        self._seen: list[Seen] = []
        self._offset = dt.timedelta(0)  # the server's clock minus this machine's

    def __enter__(self) -> LiveBar:
        if self.enabled:
            from rich.live import Live

            from pgbg_cli.output import stderr_console

            server_now = self.conn.execute("SELECT pg_catalog.clock_timestamp() AS now").fetchone()["now"]
            self._offset = server_now - dt.datetime.now(dt.timezone.utc)
            self._console = stderr_console()
            self._live = Live(console=self._console, transient=True, auto_refresh=True, refresh_per_second=4,
                              redirect_stdout=False, redirect_stderr=False, vertical_overflow="crop",
                              get_renderable=self._render)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, lines: list[str]) -> None:
        """Lines for people on stderr (``pgbg: ...``): above the live display while it runs."""
        from pgbg_cli.output import say

        for line in lines:
            if self._live is not None:
                self._console.print(printable(f"pgbg: {line}"), markup=False, highlight=False, soft_wrap=True)
            else:
                say(f"pgbg: {line}")

    def _now(self) -> dt.datetime:
        """The server's time now, on this machine's clock (so it ticks between refreshes)."""
        return dt.datetime.now(dt.timezone.utc) + self._offset

    def update(self, rows: list[dict[str, Any]]) -> None:
        if self._live is None:
            return
        views = progress.by_pid(self.conn, [j.get("worker_pid") for j in rows if j["state"] == "running"])
        now = self._now()
        seen = []
        for job in rows:
            since = _since(job)
            elapsed = None if since is None else (now - since).total_seconds() * 1000
            prog = progress.for_job(job, views, elapsed_ms=elapsed)
            seen.append(Seen(job, prog.as_dict() if prog else None))
        self._seen = seen  # one assignment: the refresh thread reads whole lists only
        self._live.refresh()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        from pgbg_cli.watch import terminal_size

        width, height = terminal_size(self._console, sys.stderr)
        self._console.size = (width, height)
        lines = frame(self._seen, self._now(), width, height)
        return Group(*[Text(line, no_wrap=True, overflow="ellipsis") for line in lines])
