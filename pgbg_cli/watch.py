"""Live views for ``pgbg list --watch`` and ``pgbg stats --watch``.

On a terminal the view is drawn with ``rich.live.Live`` on the alternate screen (as top
and watch do: the terminal comes back as it was on exit), one whole frame per refresh
and no refresh thread, so nothing flickers; it is cut to the terminal's height with a
"+N more" line. What matters comes first: running jobs, then queued ones, then those that
ended; the columns shown depend on the terminal's width only, never on what the rows hold,
so they do not come and go between refreshes. Elsewhere (a pipe, a file, a log) each
refresh prints one summary line, one JSON object per line with ``--format json``, or one
CSV row (after a header) with ``--format csv``. Ctrl-C ends either cleanly with exit status 0.

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
    group: Any = None  # list view of a group: group_progress.Status (all its jobs, whenever they ended)


class View(Protocol):
    def fetch(self) -> Snapshot: ...

    def line(self, snap: Snapshot) -> list[str]: ...

    def record(self, snap: Snapshot) -> dict[str, Any]: ...

    def csv_rows(self, snap: Snapshot) -> list[dict[str, Any]]: ...

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType: ...


def _one_line(text: Any, limit: int = 200) -> str:
    """A preview (query, progress): runs of white space as one space, cut, escaped."""
    return output.printable(_SPACES.sub(" ", str(text or "")).strip()[:limit])


def _cell(text: Any, limit: int) -> str:
    """A name (label, role): escaped, white space kept as the plain format shows it, and
    cut from the middle to ``limit`` cells (see ``middle``)."""
    return middle(output.printable(str(text or "")), limit)


def middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells, cut from the middle (``batch-2026-…-10``)
    so that both the start and the end, where labels such as ``batch-1`` and ``batch-10``
    differ, stay readable."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep = width - 1
    head, tail = "", ""
    for ch in text:  # the head takes the larger half
        if cell_len(head + ch) > (keep + 1) // 2:
            break
        head += ch
    for ch in reversed(text):
        if cell_len(head) + cell_len(ch + tail) > keep:
            break
        tail = ch + tail
    return f"{head}…{tail}"


def progress_text(prog: dict[str, Any] | None) -> str:
    """``[####------]  42% 1m20s left VACUUM scanning heap 120/640 blocks`` (the bar, the time
    left where it can be told, what the job is doing)."""
    if not prog:
        return ""
    parts = [output.bar(prog["percent"]) if prog.get("percent") is not None else "",
             progress.left(prog), _one_line(progress.describe(prog))]
    return " ".join(p for p in parts if p)


def _slots_text(slots: stats.Slots) -> str:
    return f"slots {slots.used}/{slots.max_worker_processes}"


def by_importance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Running jobs first (the longest running first), then queued ones (in queue order), then
    those that ended (the last to end first): what a watcher looks for comes first."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        state = row.get("state")
        if state in ("running", "starting"):
            return 0, row.get("started_at") or far, str(row.get("id"))
        if state == "queued":
            return 1, row.get("queued_at") or far, str(row.get("id"))
        ended = row.get("finished_at")
        return 2, -(ended.timestamp() if isinstance(ended, dt.datetime) else 0), str(row.get("id"))

    return sorted(rows, key=key)


class ListView:
    """``pgbg list --watch``: live and recent jobs, with progress."""

    command = "pgbg list --watch"  # to run again when the connection cannot be made again

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        states: list[str] | None = None,
        label: str | None = None,
        include_all: bool = False,
        limit: int = 50,
        foreign: bool = True,
        group: str | None = None,
    ) -> None:
        self.conn = conn
        self.states = states or None
        self.label = label
        self.group = group
        self.include_all = include_all
        self.progress = None
        if group is not None:
            from pgbg_cli.group_progress import GroupProgress

            self.progress = GroupProgress(group, include_all=include_all)
        self.limit = limit
        self.foreign = foreign and not states and not label and group is None
        self.window = stats.Window(3600 * 1000)  # the counts: live jobs and the last hour's

    def fetch(self) -> Snapshot:
        conn = self.conn
        jobs.reconcile(conn)
        rows = jobs.list_jobs(conn, states=self.states, label=self.label, include_all=self.include_all,
                              limit=self.limit, live_first=True, group=self.group)
        if self.foreign:
            rows = [jobview.foreign_row(w) for w in jobs.foreign_workers(conn)] + rows
        self.window.refresh(conn)
        return Snapshot(
            at=dt.datetime.now(dt.timezone.utc),
            slots=stats.worker_slots(conn),
            jobs=by_importance(progress.enriched(conn, rows)),
            counts=self.window.counts(states=self.states, label_glob=self.label, group=self.group),
            group=self.progress.refresh(conn) if self.progress is not None else None,
        )

    def line(self, snap: Snapshot) -> list[str]:
        c = _counts(snap)
        counts = " ".join(f"{state}={c[state]}" for state in LINE_STATES)
        done = ""
        if snap.group is not None:
            done = f" done={snap.group.done}/{snap.group.total}"
            if snap.group.bytes_total is not None:
                done += f" bytes_done={snap.group.bytes_done}/{snap.group.bytes_total}"
        return [f"{stats.utc_stamp(snap.at)} {counts}{done} slots={snap.slots.used}/{snap.slots.max_worker_processes}"]

    def csv_rows(self, snap: Snapshot) -> list[dict[str, Any]]:
        return [{"at": stats.utc_stamp(snap.at), **_counts(snap), "slots_used": snap.slots.used,
                 "max_worker_processes": snap.slots.max_worker_processes}]

    def record(self, snap: Snapshot) -> dict[str, Any]:
        rec: dict[str, Any] = {"at": snap.at, "counts": snap.counts}
        if snap.group is not None:
            g = snap.group
            rec["group"] = {"name": self.group, "done": g.done, "total": g.total, "counts": g.counts,
                            "bytes_done": g.bytes_done, "bytes_total": g.bytes_total}
        return {**rec, **snap.slots.as_dict(),
                "jobs": [jobview.record(j, now=snap.at) for j in snap.jobs]}  # as `list -F json` has them

    def head(self, snap: Snapshot) -> list[str]:
        """Two lines: what runs now, and every state's count over the last hour."""
        c = _counts(snap)
        now = f"{snap.at.astimezone():%H:%M:%S}  {c['running']} running, {c['queued']} queued"
        now += f" · {_slots_text(snap.slots)}"
        ended = ", ".join(f"{c[state]} {state}" for state in LINE_STATES[2:])
        if snap.group is not None:  # a group's night may be longer than an hour: all of it
            g = snap.group.counts
            failed = sum(g.get(s, 0) for s in ("failed", "canceled", "timed_out", "lost"))
            text = (f"group {self.group}: {snap.group.done} of {snap.group.total} done ({g.get('succeeded', 0)} "
                    f"succeeded, {failed} not), {g.get('detached', 0)} detached")
            if snap.group.bytes_total is not None:
                from pgbg_cli.numbers import spell_bytes

                text += f"; {spell_bytes(snap.group.bytes_done or 0)} of {spell_bytes(snap.group.bytes_total)}"
            return [now, text]
        return [now, f"last 1h: {ended}"]

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        head = self.head(snap)
        parts: list[RenderableType] = [Text(output.printable(line), no_wrap=True, overflow="ellipsis",
                                            style="bold" if i == 0 else None) for i, line in enumerate(head)]
        parts += jobs_table(snap.jobs, width, height - len(head))
        return Group(*parts)


def _counts(snap: Snapshot) -> dict[str, int]:
    """Jobs per state of ``LINE_STATES`` (starting ones count as running)."""
    c = dict(snap.counts)
    c["running"] = c.get("running", 0) + c.pop("starting", 0)
    return {state: c.get(state, 0) for state in LINE_STATES}


class StatsView:
    """``pgbg stats --watch``: the stats of a window, worker slots, and live jobs' progress."""

    command = "pgbg stats --watch"  # to run again when the connection cannot be made again

    def __init__(self, conn: psycopg.Connection[Any], *, window_ms: int, window_text: str,
                 by: str | None = None, group: str | None = None) -> None:
        self.conn = conn
        self.window_ms = window_ms
        self.window_text = window_text
        self.by = by
        self.group = group
        self.window = stats.Window(window_ms)

    def fetch(self) -> Snapshot:
        conn = self.conn
        jobs.reconcile(conn)
        live = jobs.list_jobs(conn, states=list(jobs.ACTIVE), limit=LIVE_JOBS_SHOWN, group=self.group)
        self.window.refresh(conn)
        return Snapshot(
            at=dt.datetime.now(dt.timezone.utc),
            slots=stats.worker_slots(conn),
            groups=self.window.figures(by=self.by, only_group=self.group),
            jobs=progress.enriched(conn, live),
            hidden_jobs=max(0, sum(self.group in (None, r["group_name"]) for r in self.window.live) - len(live)),
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

    def csv_rows(self, snap: Snapshot) -> list[dict[str, Any]]:
        rows = []
        for row in snap.groups:
            rec: dict[str, Any] = {"at": stats.utc_stamp(snap.at)}
            if self.by:
                rec[self.by] = row.get("group")
            rec["window_s"] = self.window_ms / 1000
            rec.update({key: row.get(key) for key, _ in LINE_FIELDS})
            rec.update(slots_used=snap.slots.used, max_worker_processes=snap.slots.max_worker_processes)
            rows.append(rec)
        return rows

    def render(self, snap: Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        head = (f"{snap.at.astimezone():%H:%M:%S} · last {self.window_text} · {_slots_text(snap.slots)}, "
                f"{snap.slots.pg_background} pg_background · "
                f"max_workers {snap.groups[0]['max_workers'] if snap.groups else '?'}")
        parts: list[RenderableType] = [Text(output.printable(head), no_wrap=True, overflow="ellipsis", style="bold")]
        room = height - 1
        table, shown = stats_table(snap.groups, self.by, width, room)
        parts += table
        room -= 2 + shown + (1 if shown < len(snap.groups) else 0)
        if snap.jobs and room >= 5:  # a blank line, the header and its rule, two jobs
            parts.append(Text(""))
            parts += jobs_table(by_importance(snap.jobs), width, room - 1, hidden=snap.hidden_jobs)
        return Group(*parts)


# (key, short name) of the stats view's summary line.
LINE_FIELDS = (
    ("workers_launched", "launched"), ("workers_completed", "completed"), ("workers_failed", "failed"),
    ("workers_canceled", "canceled"), ("workers_timed_out", "timed_out"), ("workers_active", "active"),
    ("queued", "queued"), ("avg_execution_ms", "avg_ms"), ("p50_ms", "p50_ms"), ("p95_ms", "p95_ms"),
    ("max_ms", "max_ms"),
)
# (key, header) of the stats tables (`stats --by` on a terminal, `stats --watch`), in their order.
STATS_COLUMNS = (
    ("workers_launched", "LAUNCHED"), ("workers_completed", "OK"), ("workers_failed", "FAILED"),
    ("workers_canceled", "CANCELED"), ("workers_timed_out", "T/OUT"), ("workers_active", "ACTIVE"),
    ("queued", "QUEUED"), ("avg_execution_ms", "AVG"), ("p50_ms", "P50"), ("p95_ms", "P95"),
    ("max_ms", "MAX"),
)
# Which of them a narrow terminal keeps: the first ones that fit, in this order.
STATS_KEPT_FIRST = ("workers_completed", "workers_failed", "workers_active", "queued", "workers_canceled",
                    "workers_timed_out", "avg_execution_ms", "p95_ms", "workers_launched", "p50_ms", "max_ms")
DURATION_WIDTH = 6  # "12m05s", "2d03h"
LABEL_PLANNED = 14  # what the first column of a table by label or role is planned with
NAME_MIN = 8  # narrower than this, a label is no help
LIVE_JOBS_SHOWN = 100
LINE_STATES = ("running", "queued", "succeeded", "failed", "canceled", "timed_out", "lost", "detached")


def _figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def human_stat(key: str, value: Any) -> str:
    """A figure of the stats as people read it: durations as ``format_ms`` writes them."""
    if key.endswith("_ms"):
        return format_ms(value) if value is not None else "-"
    return "-" if value is None else str(value)


def _table(**kw: Any) -> Any:
    """A borderless table: a header, a rule under it, one line per row, two spaces between columns."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                 header_style="bold", **kw)


def _fill(headers: list[str], widths: list[int], cells: list[list[str]], right: set[int]) -> Any:
    from rich.text import Text

    table = _table()
    for i, header in enumerate(headers):
        table.add_column(header, width=widths[i], no_wrap=True, overflow="ellipsis",
                         justify="right" if i in right else "left")
    for line in cells:
        table.add_row(*[Text(value) for value in line])
    return table


def stats_table(groups: list[dict[str, Any]], by: str | None, width: int,
                room: int | None = None) -> tuple[list[RenderableType], int]:
    """The stats of ``groups`` as a table fitted to ``width`` (and to ``room`` lines, with a
    "+N more" line); returns the renderables and how many groups they show.

    Which figures are shown depends on the width only (``STATS_KEPT_FIRST`` says which go
    last); labels and roles are kept whole when they fit, and cut from the middle when not."""
    from rich.cells import cell_len
    from rich.text import Text

    planned = width - (LABEL_PLANNED + 2 if by else -2)
    chosen = set()
    for key in STATS_KEPT_FIRST:
        need = max(len(dict(STATS_COLUMNS)[key]), DURATION_WIDTH if key.endswith("_ms") else 0) + 2
        if need <= planned:
            chosen.add(key)
            planned -= need
    columns = [(key, header) for key, header in STATS_COLUMNS if key in chosen]
    shown = groups
    if room is not None:
        fit = max(1, room - 2)
        shown = groups if len(groups) <= fit else groups[: max(0, fit - 1)]
    cells = [[human_stat(key, row.get(key)) for key, _ in columns] for row in shown]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, (_, header) in enumerate(columns)]
    headers = [header for _, header in columns]
    right = set(range(len(columns)))
    if by:
        names = ["(none)" if row.get("group") is None else output.printable(str(row["group"])) for row in shown]
        room_for_name = width - sum(widths) - 2 * len(widths)
        name_width = max(NAME_MIN, len(by), min(room_for_name, max([cell_len(n) for n in names] + [len(by)])))
        cells = [[middle(name, name_width)] + line for name, line in zip(names, cells, strict=True)]
        headers = [by.upper()] + headers
        widths = [name_width] + widths
        right = {i + 1 for i in right}
    parts: list[RenderableType] = [_fill(headers, widths, cells, right)]
    if len(shown) < len(groups):
        parts.append(Text(f"+{len(groups) - len(shown)} more", style="dim"))
    return parts, len(shown)


def _clock(value: Any) -> str:
    """A timestamp as local ``MM-DD HH:MM:SS``."""
    return value.astimezone().strftime("%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else ""


# Widths the columns of a job table are planned with (the ID's and the handle's are planned,
# then taken from the rows; the label and the progress share what is left).
STATE_WIDTH, ROLE_WIDTH, CLOCK_WIDTH, ELAPSED_WIDTH = 9, 12, 14, 7
PROGRESS_MIN, PROGRESS_MOST, QUERY_MIN = 17, 40, 16  # "[####------]  42%" is 17 wide
LABEL_MOST, ROLE_MOST = 40, 24


def jobs_table(rows: list[dict[str, Any]], width: int, room: int, *, hidden: int = 0,
               keep_handles: bool = False) -> list[RenderableType]:
    """Jobs in one line each, at most ``room`` lines with the header (and a "+N more" line).

    The columns depend on the width only: job ids below 110 columns (handles, 20 to 24
    wide, would leave the progress no room), handles and ROLE from 110, QUERY where the
    progress has its full width beside it. ``keep_handles`` (one-shot listings, whose
    handles people copy) shows handles at any width, and QUEUED/STARTED from 150."""
    from rich.text import Text

    handles = keep_handles or width >= 110
    role = width >= 110
    timed = keep_handles and width >= 150
    total = len(rows) + hidden
    fit = max(0, room - 2)  # the header and its rule
    shown = rows if total <= fit else rows[: max(0, fit - 1)]

    ids = [str(row.get("handle") or row.get("id") or "") if handles else str(row.get("id") or "") for row in shown]
    id_header = "HANDLE" if handles else "ID"
    role_width = min(ROLE_MOST, ROLE_WIDTH + max(0, width - 150) // 5)  # 12 up to 150 columns, 24 from 210
    fixed = [23 if handles else 6, STATE_WIDTH] + ([role_width] if role else []) + [CLOCK_WIDTH] * (2 * timed) \
        + [ELAPSED_WIDTH]
    gaps = 2 * (len(fixed) + 1)  # between the fixed columns, the label and the progress
    rest = width - sum(fixed) - gaps
    label_width = min(LABEL_MOST, 16 + max(0, width - 120) // 5)  # 16 up to 120 columns, 22 at 150, 40 from 240
    progress_width = rest - label_width
    if progress_width < PROGRESS_MIN:
        label_width = max(NAME_MIN, label_width - (PROGRESS_MIN - progress_width))
        progress_width = rest - label_width
    query_width = progress_width - PROGRESS_MOST - 2
    if query_width >= QUERY_MIN:
        progress_width = PROGRESS_MOST
    else:
        query_width = 0
    # The ids and labels take what they need of their planned widths; the rest goes to the last column.
    from rich.cells import cell_len

    id_width = max([len(id_header)] + [len(i) for i in ids])
    longest_label = max([len("LABEL")] + [cell_len(output.printable(str(row.get("label") or ""))) for row in shown])
    spare = fixed[0] - id_width + max(0, label_width - longest_label)
    label_width = min(label_width, longest_label)
    if role:
        longest_role = max([len("ROLE")] + [cell_len(output.printable(str(row.get("owner") or ""))) for row in shown])
        spare += max(0, role_width - longest_role)
        role_width = min(role_width, longest_role)
    if query_width:
        query_width = max(QUERY_MIN, query_width + spare)
    else:
        progress_width = max(4, progress_width + spare)

    headers = [id_header, "LABEL", "STATE"] + (["ROLE"] if role else []) + (["QUEUED", "STARTED"] if timed else []) \
        + ["ELAPSED", "PROGRESS"] + (["QUERY"] if query_width else [])
    widths = [id_width, label_width, STATE_WIDTH] + ([role_width] if role else []) + [CLOCK_WIDTH] * (2 * timed) \
        + [ELAPSED_WIDTH, progress_width] + ([query_width] if query_width else [])
    cells = []
    for job_id, row in zip(ids, shown, strict=True):
        line = [job_id, _cell(row.get("label"), label_width), str(row.get("state") or "")]
        if role:
            line.append(_cell(row.get("owner"), role_width))
        if timed:
            line += [_clock(row.get("queued_at")), _clock(row.get("started_at"))]
        line += [format_ms(row.get("elapsed_ms")), progress_text(row.get("progress"))]
        if query_width:
            line.append(_one_line(str(row.get("sql") or "")[:1000], 200))
        cells.append(line)
    parts: list[RenderableType] = [_fill(headers, widths, cells, {headers.index("ELAPSED")})]
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
            _run_lines(view, interval, count, fmt, sleep)
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
            command = getattr(self._view, "command", "the view")
            self._view.conn = jobs.reconnected(self._reconnect, exc, then=(
                f"the view ends and the jobs go on: run {command} again once the server answers"))
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


def terminal_size(console: Any, stream: Any = None) -> tuple[int, int]:
    """The terminal's own size (of ``stream``, stdout by default), read again at each refresh
    (it may be resized); the COLUMNS and LINES variables, which Rich prefers, may be stale or
    set for something else."""
    import os

    try:
        size = os.get_terminal_size((stream or sys.stdout).fileno())
        return size.columns, size.lines
    except (OSError, ValueError):
        return console.size.width, console.size.height


def _run_lines(view: View, interval: float, count: int | None, fmt: Format,
               sleep: Callable[[float], None]) -> None:
    """One summary line per refresh (the plain form), one JSON object, or CSV rows under one header."""
    columns: list[output.Column] | None = None
    for _ in _ticks(interval, count, sleep):
        snap = view.fetch()
        if fmt is Format.json:
            text = json.dumps(output.jsonable(view.record(snap)), ensure_ascii=False, separators=(",", ":")) + "\n"
        elif fmt is Format.csv:
            rows = view.csv_rows(snap)
            text = ""
            if rows:
                first = columns is None
                columns = columns or [output.Column(key) for key in rows[0]]
                text = output.render_rows(rows, columns, Format.csv)
                if not first:
                    text = text.split("\n", 1)[1]  # the header goes once, at the top
        else:
            text = "".join(line + "\n" for line in view.line(snap))
        sys.stdout.write(text)
        sys.stdout.flush()


def _quiet_stdout() -> None:
    """The reader went away (``| head``): stop writing, and let the exit be quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
