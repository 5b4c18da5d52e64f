"""Live views for ``pgbg list --watch`` and ``pgbg stats --watch``.

On a terminal the view is drawn with ``rich.live.Live`` on the alternate screen (as top
and watch do: the terminal comes back as it was on exit), one whole frame per refresh
and no refresh thread, so nothing flickers; it is cut to the terminal's height with a
"+N more" line. Elsewhere (a pipe, a file, a log) each refresh prints one summary line,
or one JSON object per line with ``--format json``. Ctrl-C ends either cleanly with exit
status 0.

One refresh costs the server a few small queries whose cost follows the live jobs and the
window, not the history (``bench/bench_watch.py`` measures each one).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pgbg_cli import jobs, jobview, output, progress, stats
from pgbg_cli.durations import format_ms
from pgbg_cli.output import Format

if TYPE_CHECKING:
    import psycopg
    from rich.console import RenderableType

_SPACES = re.compile(r"\s+")


@dataclass
class Snapshot:
    """What one refresh read."""

    at: dt.datetime
    slots: stats.Slots
    jobs: list[dict[str, Any]] = field(default_factory=list)  # enriched, with progress
    counts: dict[str, int] = field(default_factory=dict)  # list view: jobs per state
    groups: list[dict[str, Any]] = field(default_factory=list)  # stats view: stats rows
    hidden_jobs: int = 0  # live jobs not read (stats view: it reads the newest LIVE_JOBS_SHOWN)


class View(Protocol):
    def fetch(self) -> Snapshot: ...

    def line(self, snap: Snapshot) -> list[str]: ...

    def record(self, snap: Snapshot) -> dict[str, Any]: ...

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType: ...


def _one_line(text: Any, limit: int = 200) -> str:
    """A preview (query, progress): runs of white space as one space, cut, escaped."""
    return output.printable(_SPACES.sub(" ", str(text or "")).strip()[:limit])


def _cell(text: Any, limit: int) -> str:
    """A name (label, role): cut and escaped, white space kept as the plain format shows it."""
    return output.printable(str(text or "")[:limit])


def progress_text(prog: dict[str, Any] | None) -> str:
    """``[####------]  42% halfway`` or ``[##--------]  18% VACUUM scanning heap 120/640 blocks``."""
    if not prog:
        return ""
    parts = []
    bar = output.bar(prog["percent"]) if prog.get("percent") is not None else ""
    if prog.get("command"):
        parts.append(prog["command"])
    if prog.get("phase"):
        parts.append(prog["phase"])
    if prog.get("total") and prog.get("done") is not None:
        parts.append(f"{prog['done']}/{prog['total']} {prog.get('unit') or ''}".strip())
    if prog.get("message"):
        parts.append(prog["message"])
    return f"{bar} {_one_line(' '.join(str(p) for p in parts))}".strip()


def _slots_text(slots: stats.Slots) -> str:
    return f"slots {slots.used}/{slots.max_worker_processes}"


class ListView:
    """``pgbg list --watch``: live and recent jobs, with progress."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        states: list[str] | None = None,
        label: str | None = None,
        include_all: bool = False,
        limit: int = 50,
        foreign: bool = True,
    ) -> None:
        self.conn = conn
        self.states = states or None
        self.label = label
        self.include_all = include_all
        self.limit = limit
        self.foreign = foreign and not states and not label
        self.window = stats.Window(3600 * 1000)  # the counts: live jobs and the last hour's

    def fetch(self) -> Snapshot:
        conn = self.conn
        jobs.reconcile(conn)
        rows = jobs.list_jobs(conn, states=self.states, label=self.label, include_all=self.include_all,
                              limit=self.limit)
        if self.foreign:
            rows = [jobview.foreign_row(w) for w in jobs.foreign_workers(conn)] + rows
        self.window.refresh(conn)
        return Snapshot(
            at=dt.datetime.now(dt.timezone.utc),
            slots=stats.worker_slots(conn),
            jobs=progress.enriched(conn, rows),
            counts=self.window.counts(states=self.states, label_glob=self.label),
        )

    def line(self, snap: Snapshot) -> list[str]:
        c = dict(snap.counts)
        c["running"] = c.get("running", 0) + c.pop("starting", 0)
        counts = " ".join(f"{state}={c.get(state, 0)}" for state in LINE_STATES)
        return [f"{stats.utc_stamp(snap.at)} {counts} slots={snap.slots.used}/{snap.slots.max_worker_processes}"]

    def record(self, snap: Snapshot) -> dict[str, Any]:
        return {"at": snap.at, "counts": snap.counts, **snap.slots.as_dict(),
                "jobs": [{key: j.get(key) for key in JSON_JOB_KEYS} for j in snap.jobs]}

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        c = snap.counts
        running = c.get("running", 0) + c.get("starting", 0)
        head = (f"{snap.at.astimezone():%H:%M:%S} · running {running} · queued {c.get('queued', 0)} · 1h:"
                f" {c.get('succeeded', 0)} ok, {c.get('failed', 0) + c.get('lost', 0)} failed,"
                f" {c.get('canceled', 0) + c.get('timed_out', 0)} canceled · {_slots_text(snap.slots)}")
        parts: list[RenderableType] = [Text(head, no_wrap=True, overflow="ellipsis", style="bold")]
        parts += jobs_table(snap.jobs, width, height - 1)
        return Group(*parts)


class StatsView:
    """``pgbg stats --watch``: the stats of a window, worker slots, and live jobs' progress."""

    def __init__(self, conn: psycopg.Connection[Any], *, window_ms: int, window_text: str,
                 by: str | None = None) -> None:
        self.conn = conn
        self.window_ms = window_ms
        self.window_text = window_text
        self.by = by
        self.window = stats.Window(window_ms)

    def fetch(self) -> Snapshot:
        conn = self.conn
        jobs.reconcile(conn)
        live = jobs.list_jobs(conn, states=list(jobs.ACTIVE), limit=LIVE_JOBS_SHOWN)
        self.window.refresh(conn)
        return Snapshot(
            at=dt.datetime.now(dt.timezone.utc),
            slots=stats.worker_slots(conn),
            groups=self.window.figures(by=self.by),
            jobs=progress.enriched(conn, live),
            hidden_jobs=max(0, len(self.window.live) - len(live)),
        )

    def line(self, snap: Snapshot) -> list[str]:
        slots = f"slots={snap.slots.used}/{snap.slots.max_worker_processes}"
        lines = []
        for row in snap.groups:
            group = f" {self.by}={_one_line(row['group']) or '-'}" if self.by else ""
            figures = " ".join(f"{short}={_figure(row.get(key))}" for key, short in LINE_FIELDS)
            lines.append(f"{stats.utc_stamp(snap.at)}{group} window={self.window_text} {figures} {slots}")
        if not lines:
            lines.append(f"{stats.utc_stamp(snap.at)} window={self.window_text} (no jobs) {slots}")
        return lines

    def record(self, snap: Snapshot) -> dict[str, Any]:
        groups = [dict(r) for r in snap.groups]
        if not self.by:
            for r in groups:
                r.pop("group", None)
        return {"at": snap.at, "window_s": self.window_ms / 1000, **snap.slots.as_dict(),
                ("groups" if self.by else "stats"): groups if self.by else groups[0]}

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        head = (f"{snap.at.astimezone():%H:%M:%S} · last {self.window_text} · {_slots_text(snap.slots)}, "
                f"{snap.slots.pg_background} pg_background · "
                f"max_workers {snap.groups[0]['max_workers'] if snap.groups else '?'}")
        parts: list[RenderableType] = [Text(head, no_wrap=True, overflow="ellipsis", style="bold")]
        room = height - 1
        groups = snap.groups
        fit = max(1, room - 2)
        shown = groups if len(groups) <= fit else groups[: max(0, fit - 1)]
        headers = [(self.by or "").upper()] + [h for _, h in STATS_COLUMNS]
        cells = []
        for row in shown:  # without --by, no first column (the window is in the head line)
            name = "" if not self.by else "(none)" if row["group"] is None else _cell(row["group"], 40)
            cells.append([name] + [_human_stat(key, row.get(key)) for key, _ in STATS_COLUMNS])
        col = {h: i for i, h in enumerate(headers)}
        if self.by:
            steps = [(col["MAX"], 0), (col["P50"], 0), (0, 14), (col["AVG"], 0), (0, 6)]
        else:
            steps = [(col["MAX"], 0), (col["P50"], 0), (col["AVG"], 0)]
        widths = _widths(cells, headers, width, steps)
        table = _table()
        keep = [i for i, w in enumerate(widths) if w > 0]
        for i in keep:
            table.add_column(headers[i], width=widths[i], no_wrap=True, overflow="ellipsis",
                             justify="left" if i == 0 else "right")
        for line in cells:
            table.add_row(*[Text(line[i]) for i in keep])
        parts.append(table)
        room -= 2 + len(shown)
        if len(shown) < len(groups):
            parts.append(Text(f"+{len(groups) - len(shown)} more", style="dim"))
            room -= 1
        if snap.jobs and room >= 5:  # a blank line, the header and its rule, two jobs
            parts.append(Text(""))
            parts += jobs_table(snap.jobs, width, room - 1, hidden=snap.hidden_jobs)
        return Group(*parts)


# (key, short name) of the stats view's summary line and table.
LINE_FIELDS = (
    ("workers_launched", "launched"), ("workers_completed", "completed"), ("workers_failed", "failed"),
    ("workers_canceled", "canceled"), ("workers_timed_out", "timed_out"), ("workers_active", "active"),
    ("queued", "queued"), ("avg_execution_ms", "avg_ms"), ("p50_ms", "p50_ms"), ("p95_ms", "p95_ms"),
    ("max_ms", "max_ms"),
)
STATS_COLUMNS = (
    ("workers_launched", "LAUNCHED"), ("workers_completed", "OK"), ("workers_failed", "FAILED"),
    ("workers_canceled", "CANCELED"), ("workers_timed_out", "T/OUT"), ("workers_active", "ACTIVE"),
    ("queued", "QUEUED"), ("avg_execution_ms", "AVG"), ("p50_ms", "P50"), ("p95_ms", "P95"),
    ("max_ms", "MAX"),
)
LIVE_JOBS_SHOWN = 100
# A job in the JSON lines: the columns of `pgbg list`, and why it ended (as `list -F json` has).
JSON_JOB_KEYS = tuple(c.key for c in jobview.LIST_COLUMNS) + ("sqlstate", "message", "reason")
LINE_STATES = ("running", "queued", "succeeded", "failed", "canceled", "timed_out", "lost", "detached")


def _figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _human_stat(key: str, value: Any) -> str:
    if key.endswith("_ms"):
        return format_ms(value) if value is not None else "-"
    return "-" if value is None else str(value)


def _table(**kw: Any) -> Any:
    """A borderless table: a header, a rule under it, one line per row, two spaces between columns."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                 header_style="bold", **kw)


def _widths(cells: list[list[str]], headers: list[str], width: int, steps: list[tuple[int, int]]) -> list[int]:
    """Column widths that fit ``width``: each column as wide as its content, then narrowed
    step by step while too wide: ``(column, floor)`` narrows that column down to ``floor``,
    and a floor of 0 drops it."""
    natural = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    widths = list(natural)

    def over() -> int:
        return sum(widths) + 2 * (sum(1 for w in widths if w) - 1) - width

    for i, floor in steps:
        if over() <= 0:
            break
        widths[i] = 0 if floor == 0 else max(min(widths[i], floor), widths[i] - over())
    for i, _ in reversed(steps):  # room left by a dropped column goes back to the narrowed ones
        if 0 < widths[i] < natural[i] and over() < 0:
            widths[i] = min(natural[i], widths[i] - over())
    return widths


def _clock(value: Any) -> str:
    """A timestamp as local ``MM-DD HH:MM:SS``."""
    import datetime as dt

    return value.astimezone().strftime("%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else ""


def jobs_table(rows: list[dict[str, Any]], width: int, room: int, *, hidden: int = 0,
               keep_handles: bool = False) -> list[RenderableType]:
    """Jobs in one line each, at most ``room`` lines with the header (and a "+N more" line).

    ``keep_handles`` (one-shot listings, whose handles people copy) narrows and drops other
    columns rather than show job ids in place of handles."""
    from rich.text import Text

    wide = width >= 110
    timed = keep_handles and width >= 150  # a one-shot listing on a wide terminal: when it was queued/started
    headers = (["HANDLE", "LABEL", "STATE"] + (["ROLE"] if wide else []) + (["QUEUED", "STARTED"] if timed else [])
               + ["ELAPSED", "PROGRESS", "QUERY"])
    total = len(rows) + hidden
    fit = max(0, room - 2)  # the header and its rule
    shown = rows if total <= fit else rows[: max(0, fit - 1)]
    cells = []
    for row in shown:
        line = [str(row.get("handle") or row.get("id") or ""), _cell(row.get("label"), 60),
                str(row.get("state") or "")]
        if wide:
            line.append(_cell(row.get("owner"), 63))
        if timed:
            line += [_clock(row.get("queued_at")), _clock(row.get("started_at"))]
        line += [format_ms(row.get("elapsed_ms")), progress_text(row.get("progress")),
                 _one_line(row.get("query"), 200)]
        cells.append(line)
    query, prog, label = len(headers) - 1, len(headers) - 2, 1
    widths = _widths(cells, headers, width, [(query, 16), (query, 0)])
    if keep_handles:
        widths = _widths(cells, headers, width, [(query, 16), (query, 0), (label, 14), (prog, 24), (label, 8),
                                                 (prog, 17), (label, 0), (prog, 0)])
    elif sum(widths) + 2 * (sum(1 for w in widths if w) - 1) > width:
        # too narrow for handles (up to 23 characters): the job id says which job it is, and
        # leaves the room to the progress (pgbg list, or a wider terminal, shows handles)
        headers[0] = "ID"
        for line, row in zip(cells, shown, strict=True):
            line[0] = str(row.get("id") or "")
        widths = _widths(cells, headers, width, [(query, 16), (query, 0), (label, 14), (prog, 24), (label, 8),
                                                 (prog, 17), (label, 0)])
    table = _table()
    keep = [i for i, w in enumerate(widths) if w > 0]
    for i in keep:
        table.add_column(headers[i], width=widths[i], no_wrap=True, overflow="ellipsis",
                         justify="right" if headers[i] == "ELAPSED" else "left")
    for line in cells:
        table.add_row(*[Text(line[i]) for i in keep])
    parts: list[RenderableType] = [table]
    if len(shown) < total:
        parts.append(Text(f"+{total - len(shown)} more", style="dim"))
    if not rows:
        parts.append(Text("(no jobs)", style="dim"))
    return parts


def run(
    view: View,
    *,
    interval: float,
    count: int | None = None,
    fmt: Format | str | None = Format.auto,
    live: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    reconnect: Callable[[], Any] | None = None,
) -> int:
    """Refresh ``view`` every ``interval`` seconds, ``count`` times or until Ctrl-C; returns 0.

    ``live`` (default: stdout is a terminal and the format is auto or table) draws the
    Rich view in place; otherwise each refresh prints its summary line (or JSON line).
    With ``reconnect``, a connection the server drops is made again (see jobs.wait).
    """
    if reconnect is not None:
        view = _Reconnecting(view, reconnect)
    fmt = Format(fmt or Format.auto)
    if live is None:
        live = sys.stdout.isatty() and fmt in (Format.auto, Format.table)
    try:
        if live:
            _run_live(view, interval, count, sleep)
        else:
            _run_lines(view, interval, count, fmt is Format.json, sleep)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _quiet_stdout()
    return 0


class _Reconnecting:
    """A view whose fetch survives a dropped connection: made again, then fetched again."""

    def __init__(self, view: Any, reconnect: Callable[[], Any]) -> None:
        self._view = view
        self._reconnect = reconnect

    def fetch(self) -> Any:
        import psycopg

        try:
            return self._view.fetch()
        except psycopg.OperationalError as exc:
            if not jobs.dropped(self._view.conn):
                raise
            self._view.conn = jobs.reconnected(self._reconnect, exc)
            return self._view.fetch()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


def _ticks(interval: float, count: int | None, sleep: Callable[[float], None]) -> Any:
    """Yield once per refresh: every ``interval`` seconds from the start of the last one."""
    n = 0
    while True:
        began = time.monotonic()
        yield n
        n += 1
        if count is not None and n >= count:
            return
        sleep(max(0.0, began + interval - time.monotonic()))


def _run_live(view: View, interval: float, count: int | None, sleep: Callable[[float], None]) -> None:
    from rich.live import Live

    console = output.stdout_console()
    with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
              redirect_stderr=False) as live:
        for _ in _ticks(interval, count, sleep):
            snap = view.fetch()
            width, height = terminal_size(console)
            console.size = (width, height)
            live.update(view.render(snap, width, height), refresh=True)


def terminal_size(console: Any) -> tuple[int, int]:
    """The terminal's own size, read again at each refresh (it may be resized); the COLUMNS
    and LINES variables, which Rich prefers, may be stale or set for something else."""
    import os

    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.columns, size.lines
    except (OSError, ValueError):
        return console.size.width, console.size.height


def _run_lines(view: View, interval: float, count: int | None, as_json: bool,
               sleep: Callable[[float], None]) -> None:
    for _ in _ticks(interval, count, sleep):
        snap = view.fetch()
        if as_json:
            text = json.dumps(output.jsonable(view.record(snap)), ensure_ascii=False, separators=(",", ":"))
            sys.stdout.write(text + "\n")
        else:
            sys.stdout.write("".join(line + "\n" for line in view.line(snap)))
        sys.stdout.flush()


def _quiet_stdout() -> None:
    """The reader went away (``| head``): stop writing, and let the exit be quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
