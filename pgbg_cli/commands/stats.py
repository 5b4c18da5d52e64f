"""``pgbg stats | prune | settings``: how the database's jobs fare, and how much history is kept."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

from pgbg_cli.commands.common import (
    AllDatabasesOpt,
    DsnOpt,
    FormatOpt,
    ServiceOpt,
    TargetsFileOpt,
    chosen_targets,
    database,
    exit_of_targets,
    group_option,
    renewable,
    report,
)
from pgbg_cli.output import Format


class By(str, enum.Enum):
    label = "label"
    role = "role"
    group = "group"


StatsGroupOpt = group_option("Count the jobs of group NAME only (pgbg launch --group).")
WatchOpt = Annotated[
    bool, typer.Option("--watch", "-w", help="Keep the view on screen, refreshed every --interval (Ctrl-C ends it).")
]
IntervalOpt = Annotated[
    str,
    typer.Option("--interval", "-i", metavar="DURATION",
                 help="With --watch: time between refreshes (e.g. 500ms, 2s, 1m; 50ms to 1d)."),
]
CountOpt = Annotated[
    str | None,
    typer.Option("--count", "-c", metavar="N", help="With --watch: stop after this many refreshes (1 to 1000000)."),
]


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_)
    app.command("prune")(prune)
    app.command("settings")(settings)


def watch_options(interval: str, count: str | None, watch: bool) -> tuple[float, int | None]:
    """--interval in seconds and --count as a number, after checking that --count goes with --watch."""
    from pgbg_cli import numbers
    from pgbg_cli.durations import INTERVAL_MAX_MS, INTERVAL_MIN_MS, parse_ms
    from pgbg_cli.errors import UsageError

    if count is not None and not watch:
        raise UsageError("--count goes with --watch")
    seconds = parse_ms(interval, what="--interval", lo=INTERVAL_MIN_MS, hi=INTERVAL_MAX_MS) / 1000
    return seconds, None if count is None else numbers.parse_count(count, "--count", 1, numbers.COUNT_MAX)


# What people read for each figure of plain `pgbg stats` (JSON and CSV use the keys): no unit
# in a name, since the values are written with theirs ("p50 208ms", "window 24h").
HUMAN_TITLES = {"avg_execution_ms": "avg_execution", "p50_ms": "p50", "p95_ms": "p95", "max_ms": "max"}


def _stat_columns(by: By | None, fmt: Format) -> list[Any]:
    from pgbg_cli import stats, watch
    from pgbg_cli.durations import format_ms
    from pgbg_cli.output import Column, resolve

    def ms(value: Any, row: dict[str, Any]) -> str:
        return format_ms(value) if value is not None else "-"

    human = resolve(fmt) in (Format.table, Format.plain)
    if by and human:  # the columns of the table on a terminal (watch.stats_table), every one
        return [Column("group", by.value.upper(), lambda v, r: "(none)" if v is None else str(v))] + [
            Column(key, title, ms if key.endswith("_ms") else None, justify="right")
            for key, title in watch.STATS_COLUMNS]
    columns = [Column("group", by.value)] if by else []
    if not by:
        columns.append(Column("window_s", "window" if human else "window_s",
                              (lambda v, r: format_ms(v * 1000)) if human else None))
    for key in stats.EXTENSION_COLUMNS + stats.EXTRA_COLUMNS:
        title = HUMAN_TITLES.get(key, key) if human else key
        columns.append(Column(key, title, ms if key.endswith("_ms") else None))
    return columns + [Column(key, key) for key in stats.SLOT_COLUMNS]


def _by_table(rows: list[dict[str, Any]], by: By) -> None:
    """``stats --by`` on a terminal: the table of ``stats --watch``, fitted to the width, labels
    whole or cut from the middle (never wrapped)."""
    from pgbg_cli import output, watch

    console = output.stdout_console()
    parts, _ = watch.stats_table(rows, by.value, console.width)
    for part in parts:
        console.print(part)


def stats_(
    since: Annotated[
        str,
        typer.Option("--since", metavar="DURATION",
                     help="The window: jobs that ended this long ago or later (e.g. 1h, 7d; 1ms to 36525d)."),
    ] = "24h",
    by: Annotated[
        By | None,
        typer.Option("--by", "-b", metavar="|".join(b.value for b in By), show_default=False,
                     help="One row per label, per role or per group (launch --group)."),
    ] = None,
    group: StatsGroupOpt = None,
    session: Annotated[
        bool,
        typer.Option("--session", help="Show pg_background_stats() of pgbg's own session instead (see below)."),
    ] = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = "2s",
    count: CountOpt = None,
    fmt: FormatOpt = Format.auto,
    targets_file: TargetsFileOpt = None,
    service: ServiceOpt = None,
    all_databases: AllDatabasesOpt = False,
    dsn: DsnOpt = None,
) -> None:
    """Statistics of the database's pgbg jobs over a window (default: the last 24 hours).

    The columns of pg_background's own stats (workers launched, completed, failed,
    canceled, timed out, active, average run time, max_workers), counted from pgbg's job
    registry so they cover every session: your own jobs, or every role's for pgbg_admin.
    workers_failed includes lost jobs. Also the queue, the median, 95th percentile and
    longest run times, and the worker slots in use against max_worker_processes.

    --session prints pg_background_stats() itself instead: the extension counts only the
    workers of the session that asks, and each pgbg command is a new session, so it is
    almost always zero. It is there to compare.

    With several targets (-d repeated, --service, --targets-file, --all-databases) there is
    one row per target, and --watch reads them all at each refresh; --session takes one.

    Examples:
      pgbg stats
      pgbg stats --since 1h --by label
      pgbg stats --since 7d -F json
      pgbg stats --watch --by role
      pgbg stats --group nightly-vacuum --since 7d
      pgbg stats --all-databases --since 1h
    """
    from pgbg_cli import output
    from pgbg_cli import stats as core
    from pgbg_cli.durations import parse_ms
    from pgbg_cli.errors import UsageError

    seconds, refreshes = watch_options(interval, count, watch)
    window_ms = parse_ms(since, what="--since", lo=1)
    if session and (by or watch or group is not None):
        raise UsageError("--session shows one row of this session: it goes without --by, --group and --watch")
    chosen = chosen_targets(targets_file, service, all_databases)
    if chosen is not None:
        if session:
            raise UsageError("--session shows this session on one database: give one target")
        if watch:
            _watch_several(chosen, window_ms, since.strip(), by, seconds, refreshes, fmt, group)
        _stats_several(chosen, window_ms, by, fmt, group)
    with database(dsn) as conn:
        if session:
            row = core.session_stats(conn)
            output.emit_record(row, [output.Column(k, k) for k in row], fmt)
            return
        if watch:
            from pgbg_cli import watch as watch_mod

            view = watch_mod.StatsView(conn, window_ms=window_ms, window_text=since.strip(),
                                       by=by.value if by else None, group=group)
            with renewable(conn, dsn) as live:
                raise typer.Exit(watch_mod.run(view, interval=seconds, count=refreshes, fmt=fmt,
                                               reconnect=live.renew()))
        rows = core.job_stats(conn, window_ms=window_ms, by=by.value if by else None, group=group)
        slots = core.worker_slots(conn).as_dict()
    columns = _stat_columns(by, fmt)
    if by and output.resolve(fmt) is Format.table:
        _by_table(rows, by)
    elif by:
        output.emit_rows([{**r, **slots} for r in rows], columns, fmt)
    else:
        record = {"window_s": window_ms / 1000, **{k: v for k, v in rows[0].items() if k != "group"}, **slots}
        output.emit_record(record, columns, fmt)


def _watch_several(chosen: Any, window_ms: int, window_text: str, by: By | None, seconds: float,
                   refreshes: int | None, fmt: Format, group: str | None = None) -> None:
    """stats --watch of several targets: every refresh reads them all at once; exit 3 when a
    target could not be read (or used) at some refresh, the others shown all the same."""
    from pgbg_cli import output
    from pgbg_cli import watch as watch_mod
    from pgbg_cli.errors import ENVIRONMENT
    from pgbg_cli.watch_targets import ManyStatsView

    for skipped in chosen.failed:
        output.say(f"pgbg: {skipped.target.name}: {skipped.error}")
    view = ManyStatsView(chosen.targets, window_ms=window_ms, window_text=window_text, by=by.value if by else None,
                         group=group)
    try:
        code = watch_mod.run(view, interval=seconds, count=refreshes, fmt=fmt)
    finally:
        view.close()
    if chosen.failed:
        raise typer.Exit(exit_of_targets(chosen.failed, code))
    raise typer.Exit(ENVIRONMENT if view.unread_ever else code)


def _stats_several(chosen: Any, window_ms: int, by: By | None, fmt: Format, group: str | None = None) -> None:
    """stats of several targets at once: one row per target (per target and group with --by)."""
    from pgbg_cli import output, preflight, targets
    from pgbg_cli import stats as core

    def work(_: Any, conn: Any) -> list[dict[str, Any]]:
        rows = core.job_stats(conn, window_ms=window_ms, by=by.value if by else None, group=group)
        slots = core.worker_slots(conn).as_dict()
        if by:
            return [{**r, **slots} for r in rows]
        return [{"window_s": window_ms / 1000, **{k: v for k, v in rows[0].items() if k != "group"}, **slots}]

    outcomes = chosen.failed + targets.each(chosen.targets, work, prepare=lambda _, conn: preflight.check(conn))
    _, failed = report(outcomes)
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome in failed:
            rows.append({"target": outcome.target.name, "window_s": window_ms / 1000, "error": outcome.error})
        elif outcome.ok:
            rows += [{"target": outcome.target.name, **row} for row in outcome.value]
    columns = [output.Column("target", "TARGET"), *_stat_columns(by, Format.plain if by else fmt),
               output.Column("error", "ERROR")]
    output.emit_rows(rows, columns, fmt)
    raise typer.Exit(exit_of_targets(failed))


def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", "-o", metavar="DURATION",
                     help="Delete finished jobs that ended longer ago than this (e.g. 7d; 0 to 36525d)."),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Delete finished jobs from the history: your own, or every role's for pgbg_admin.

    Live jobs are never deleted. pgbg also bounds the history by itself: each role's
    supervisor keeps at most history_keep finished jobs of its role and none older than
    history_max_age, about once a minute (see pgbg settings).

    Examples:
      pgbg prune --older-than 7d --dry-run
      pgbg prune --older-than 30d
    """
    from pgbg_cli import output
    from pgbg_cli import stats as core
    from pgbg_cli.durations import format_ms, parse_ms

    older_ms = parse_ms(older_than, what="--older-than")
    with database(dsn) as conn:
        n = core.prune(conn, older_than_ms=older_ms, dry_run=dry_run)
    key = "would_delete" if dry_run else "deleted"
    output.emit_record({key: n, "older_than_s": older_ms / 1000},
                       [output.Column(key, key.replace("_", " ")),
                        output.Column("older_than_s", "older than", lambda v, r: format_ms(v * 1000))], fmt)


def settings(
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", help="A setting to show, or to change with VALUE.", show_default=False),
    ] = None,
    value: Annotated[
        str | None, typer.Argument(metavar="[VALUE]", help="Its new value (pgbg_admin only).", show_default=False)
    ] = None,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Show pgbg's settings, or change one (members of pgbg_admin).

    history_keep and history_max_age bound the job history: each role's supervisor
    prunes that role's finished jobs beyond them about once a minute.

    Examples:
      pgbg settings
      pgbg settings history_max_age
      pgbg settings history_keep 5000
    """
    from pgbg_cli import output
    from pgbg_cli import stats as core
    from pgbg_cli.errors import UsageError

    columns = [output.Column("name", "NAME"), output.Column("value", "VALUE", core.shown_setting),
               output.Column("description", "DESCRIPTION")]
    if name is not None and value is not None:
        core.check_setting(name, value)  # before anything is sent
    with database(dsn) as conn:
        if name is not None and value is not None:
            rows = [core.set_setting(conn, name, value)]
            if name == "reserve_slots":
                core.say_if_nothing_can_start(conn, int(rows[0]["value"]))
        else:
            rows = core.settings(conn)
            if name is not None:
                rows = [r for r in rows if r["name"] == name]
                if not rows:
                    known = ", ".join(r["name"] for r in core.settings(conn))
                    raise UsageError(f"unknown setting {name!r}: one of {known}")
    output.emit_rows(rows, columns, fmt)
