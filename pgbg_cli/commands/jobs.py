"""``pgbg wait | cancel | detach | show | list``: act on jobs from any session or host."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgbg_cli.commands.common import (
    AllDatabasesOpt,
    DsnOpt,
    FormatOpt,
    ServiceOpt,
    StrictOpt,
    TargetsFileOpt,
    chosen_targets,
    database,
    exit_for,
    exit_of_targets,
    group_option,
    renewable,
    report,
)
from pgbg_cli.commands.stats import CountOpt, IntervalOpt, WatchOpt, watch_options
from pgbg_cli.output import Format

HandlesArg = Annotated[
    list[str], typer.Argument(metavar="HANDLE...", help="Job handles ID:COOKIE, as printed by pgbg launch.")
]
GroupOpt = group_option("The jobs of group NAME (pgbg launch --group or --jobs).")
CancelGroupOpt = group_option("Cancel every live job of group NAME.")
# jobs.STATES, spelled here so that help needs no import of the job service (tests/test_help.py compares)
STATE_HELP = "queued, starting, running, succeeded, failed, canceled, timed_out, lost or detached"


def register(app: typer.Typer) -> None:
    app.command("wait")(wait)
    app.command("cancel")(cancel)
    app.command("detach")(detach)
    app.command("show")(show)
    app.command("list")(list_)


def _emit_jobs(conn: Any, rows: list[dict[str, Any]], fmt: Format) -> None:
    from pgbg_cli import progress

    _show_jobs(progress.enriched(conn, rows), fmt)


def _show_jobs(enriched: list[dict[str, Any]], fmt: Format, *, several: bool = False) -> None:
    """Jobs as listings show them (``progress.enriched``); ``several``: of several targets, each
    row naming its target (``target`` in JSON and CSV; TARGET/ID:COOKIE handles for people)."""
    from pgbg_cli import jobview, output

    resolved = output.resolve(fmt)
    if several and resolved in (Format.table, Format.plain):
        from pgbg_cli.targets import SEPARATOR

        enriched = [dict(row, handle=f"{row['target']}{SEPARATOR}{row.get('handle') or row.get('id') or '-'}")
                    for row in enriched]
    if resolved is Format.table:
        # one line per job, fitted to the terminal (the same layout as list --watch), handles kept
        from pgbg_cli import watch

        console = output.stdout_console()
        for part in watch.jobs_table(enriched, console.width, len(enriched) + 3, keep_handles=True):
            console.print(part)
        return
    # scripts get job records (README: JSON contract), people the columns of list
    jobview.emit_jobs(enriched, fmt)


def _unreachable(outcome: Any) -> dict[str, Any]:
    """A row for a target that could not be reached (state ``unreachable``) or was reached but
    cannot be used (``unavailable``: no pgbg there, no privilege); ``message`` says why."""
    state = "unreachable" if outcome.unreachable else "unavailable"
    return {"target": outcome.target.name, "handle": None, "id": None, "cookie": None, "label": None,
            "state": state, "source": None, "owner": None, "queued_at": None, "started_at": None,
            "finished_at": None, "elapsed_ms": None, "progress": None, "sql": None, "sqlstate": None,
            "message": outcome.error, "reason": None}


def _rows_of(outcomes: list[Any], failed: list[Any]) -> list[dict[str, Any]]:
    """Every target's rows, in the targets' order, each naming its target; a row for each failed one."""
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome in failed:
            rows.append(_unreachable(outcome))
        elif outcome.ok:
            rows += [dict(row, target=outcome.target.name) for row in outcome.value]
    return rows


def _preload_emit(fmt: Format) -> None:
    """Load what ``_emit_jobs`` needs, ahead of a wait."""
    from pgbg_cli import jobview, messages, output, progress  # noqa: F401

    output.preload(fmt)
    if output.resolve(fmt) is Format.table:
        from pgbg_cli import watch  # noqa: F401


def wait(
    handles: Annotated[
        list[str] | None,
        typer.Argument(metavar="[HANDLE...]", help="Job handles ID:COOKIE, as printed by pgbg launch.",
                       show_default=False),
    ] = None,
    group: GroupOpt = None,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", "-t", metavar="DURATION",
                     help="Give up after this long (e.g. 30s, 5m; at most 36525d): exit 124."),
    ] = None,
    any_: Annotated[bool, typer.Option("--any", help="Return as soon as one of the jobs has ended.")] = False,
    strict: StrictOpt = False,
    fmt: FormatOpt = Format.auto,
    targets_file: TargetsFileOpt = None,
    service: ServiceOpt = None,
    all_databases: AllDatabasesOpt = False,
    dsn: DsnOpt = None,
) -> None:
    """Wait for jobs to end and print their outcomes.

    The WARNING, NOTICE and INFO messages each job emitted go to stderr, one line each.
    With several targets, a handle is TARGET/ID:COOKIE, as list prints it for them.
    --group NAME waits for every job of the group (as many as it holds when the wait starts).
    Exit 0 when all succeeded, 1 when any failed, was canceled, timed out, was lost or detached,
    4 with --strict when all succeeded but one emitted a WARNING, 124 when --timeout ran
    out first, 130 on Ctrl-C. The jobs go on after a timeout or Ctrl-C.

    Examples:
      pgbg wait 42:7281990022145993216
      pgbg wait --timeout 5m 42:7281990022145993216 43:1185473021166459012
      pgbg wait --any -F json 42:7281990022145993216 43:1185473021166459012
      pgbg wait --strict 42:7281990022145993216
      pgbg wait -d shop -d sales shop/42:7281990022145993216 sales/7:1185473021
      pgbg wait --group nightly-vacuum
    """
    from pgbg_cli import handles as handles_mod
    from pgbg_cli import jobs, output
    from pgbg_cli.commands.livebar import LiveBar
    from pgbg_cli.durations import parse_ms
    from pgbg_cli.errors import UsageError

    timeout_s = parse_ms(timeout, what="--timeout") / 1000 if timeout is not None else None
    if not handles and group is None:
        raise UsageError("name the jobs to wait for: handles, or --group NAME")
    chosen = chosen_targets(targets_file, service, all_databases)
    if chosen is not None:
        if group is not None:
            raise UsageError("--group waits on one database: give one target")
        _wait_several(chosen, handles or [], timeout_s, any_, strict, fmt)
    wanted = handles_mod.parse_many(handles) if handles else []
    _preload_emit(fmt)  # printed the moment the jobs end, not after loading the renderer
    with database(dsn) as conn, renewable(conn, dsn) as live:
        if group is not None:
            wanted += [h for h in jobs.handles_by_group(conn, group, active_only=False) if h not in wanted]
            if not wanted:
                raise UsageError(f"no job in group {output.printable(group)!r} (or none you may see)")
        bar = LiveBar(conn)
        with bar:
            final = jobs.wait(conn, wanted, timeout_s=timeout_s, any_=any_, tick=bar.update,
                              tick_interval=0.25 if bar.enabled else 1.0, reconnect=live.renew(bar),
                              unlisten=False, on_held=bar.say)  # the connection closes after the output
        # what each job said is in its record (messages, messages_dropped; pgbg_cli/messages.py)
        _emit_jobs(live.conn, final, fmt)
    ended = [j for j in final if jobs.is_final(j)]
    from pgbg_cli import jobview, messages

    messages.say_all(ended)
    for job in ended:
        if job["state"] != "succeeded" or messages.with_warnings(job):
            output.say(f"pgbg: {jobview.summary(job)}")
    raise typer.Exit(exit_for(ended if any_ else final, strict=strict))


def _wait_several(chosen: Any, handles: list[str], timeout_s: float | None, any_: bool, strict: bool,
                  fmt: Format) -> None:
    """wait on several targets at once, one thread and connection each: handles TARGET/ID:COOKIE."""
    import threading

    from pgbg_cli import handles as handles_mod
    from pgbg_cli import jobs, jobview, messages, output, preflight, progress, targets
    from pgbg_cli.errors import WAIT_TIMEOUT, UsageError, WaitTimedOut

    by_name = {t.name: t for t in chosen.targets}
    wanted: dict[str, list[str]] = {}
    for text in handles:
        for piece in text.split():
            name, handle = targets.split_handle(piece)
            if name is None and len(by_name) == 1:
                name = next(iter(by_name))
            if name is None:
                raise UsageError(f"say which target {piece!r} is on: TARGET/ID:COOKIE, as list prints it "
                                 f"(targets: {', '.join(by_name)})")
            if name not in by_name:
                raise UsageError(f"no target named {name!r} (targets: {', '.join(by_name) or 'none'})")
            wanted.setdefault(name, []).append(handle)
    if not wanted:
        raise UsageError("no handle given")
    asked = [by_name[name] for name in by_name if name in wanted]
    parsed = {name: handles_mod.parse_many(texts) for name, texts in wanted.items()}

    one_ended = threading.Event()  # --any: a job of some target has ended; the others stop waiting

    class _Overtaken(Exception):
        pass

    def overtaken(_: Any) -> None:
        if one_ended.is_set():
            raise _Overtaken

    def work(target: Any, conn: Any) -> tuple[list[dict[str, Any]], bool]:
        """The target's jobs when they have ended (with --any: one of them, or one of another
        target's), or as they are when --timeout ran out (True)."""
        try:
            found = jobs.wait(conn, parsed[target.name], timeout_s=timeout_s, any_=any_,
                              tick=overtaken if any_ else None, tick_interval=0.25 if any_ else 1.0)
        except WaitTimedOut:
            return progress.enriched(conn, jobs.get_many(conn, parsed[target.name])), True
        except _Overtaken:
            found = jobs.get_many(conn, parsed[target.name])
        if any_ and any(jobs.is_final(job) for job in found):
            one_ended.set()
        return progress.enriched(conn, found), False

    outcomes = targets.each(asked, work, prepare=lambda _, conn: preflight.check(conn))
    answered, failed = report(chosen.failed + outcomes)
    late = []
    for outcome in answered:
        outcome.value, timed_out = outcome.value
        if timed_out:
            late.append(outcome.target.name)
    rows = _rows_of(chosen.failed + outcomes, failed)
    _show_jobs(rows, fmt, several=True)
    ended = [job for job in rows if job["state"] not in ("unreachable", "unavailable") and jobs.is_final(job)]
    messages.say_all(ended)
    for job in ended:
        if job["state"] != "succeeded" or messages.with_warnings(job):
            output.say(f"pgbg: {job['target']}: {jobview.summary(job)}")
    if any_ and ended:
        late = []  # one had ended: the others' --timeout running out as well is no news
    for name in late:
        output.say(f"pgbg: {name}: timed out waiting; the jobs go on")
    finals = [r for r in rows if r["state"] not in ("unreachable", "unavailable")]
    if any_:  # as on one target: the jobs that ended say how it went; none: --timeout ran out
        code = exit_for(ended, strict=strict) if ended else WAIT_TIMEOUT
    else:
        code = WAIT_TIMEOUT if late else exit_for(finals, strict=strict)
    raise typer.Exit(exit_of_targets(failed, code))


def cancel(
    handles: Annotated[
        list[str] | None, typer.Argument(metavar="[HANDLE...]", help="Job handles ID:COOKIE.", show_default=False)
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", "-l", metavar="PATTERN", show_default=False,
                     help="Cancel every live job whose label matches PATTERN (* and ? work)."),
    ] = None,
    group: CancelGroupOpt = None,
    grace: Annotated[
        str | None,
        typer.Option("--grace", "-g", metavar="DURATION",
                     help="Cancel the running statement first; stop the worker after this long (at most 24d)."),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return at once; do not wait for the jobs to stop.")
    ] = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Stop jobs: the work really stops and the state becomes canceled.

    pgbg only ever signals a worker it has verified (pid and start time); it never
    sends SIGKILL, which would restart the whole cluster.

    Examples:
      pgbg cancel 42:7281990022145993216
      pgbg cancel --label 'nightly*' --grace 30s
      pgbg cancel --no-wait 42:7281990022145993216 43:1185473021166459012
      pgbg cancel --group nightly-vacuum
    """
    from pgbg_cli import handles as handles_mod
    from pgbg_cli import jobs, output
    from pgbg_cli.durations import GRACE_MAX_MS, parse_ms
    from pgbg_cli.errors import UsageError

    grace_ms = parse_ms(grace, what="--grace", hi=GRACE_MAX_MS) if grace is not None else 0
    if not handles and not label and group is None:
        raise UsageError("name the jobs to cancel: handles, --label PATTERN or --group NAME")
    with database(dsn) as conn:
        wanted = handles_mod.parse_many(handles) if handles else []
        if label:
            wanted += [h for h in jobs.handles_by_label(conn, label) if h not in wanted]
            if not wanted:
                output.say(f"pgbg: no live job has a label matching {label!r}")
                _none_canceled(fmt)
                return
        if group is not None:
            wanted += [h for h in jobs.handles_by_group(conn, group) if h not in wanted]
            if not wanted:
                output.say(f"pgbg: no live job in group {output.printable(group)!r}")
                _none_canceled(fmt)
                return
        ended = [j for j in jobs.get_many(conn, wanted) if jobs.is_final(j)]
        jobs.cancel(conn, wanted, grace_ms=grace_ms)
        rows = jobs.get_many(conn, wanted)
        if not no_wait:
            from pgbg_cli.errors import WaitTimedOut

            patience = grace_ms / 1000 + 60
            try:
                rows = jobs.wait(conn, wanted, timeout_s=patience)
            except WaitTimedOut:
                still = [str(jobs.handle_of(j)) for j in jobs.get_many(conn, wanted) if not jobs.is_final(j)]
                raise WaitTimedOut(
                    f"cancel requested, but {', '.join(still)} still running after {patience:.0f}s: its SQL "
                    "does not give way to cancel requests (pgbg never sends SIGKILL, which would restart the cluster)"
                ) from None
        _emit_jobs(conn, rows, fmt)
    for job in ended:
        output.say(f"pgbg: job {jobs.handle_of(job)} had already ended ({job['state']}): nothing to cancel")
    if ended:
        raise typer.Exit(1)


def _none_canceled(fmt: Format) -> None:
    """No job to cancel: for scripts (JSON, CSV) the empty list of jobs, as list prints it."""
    from pgbg_cli import jobview

    if jobview.for_scripts(fmt):
        jobview.emit_jobs([], fmt)


def detach(
    handles: HandlesArg,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Stop tracking jobs; their workers go on and commit, but no outcome is recorded.

    This is pg_background's detach: it does not stop the work (use cancel for that).

    Examples:
      pgbg detach 42:7281990022145993216
    """
    from pgbg_cli import handles as handles_mod
    from pgbg_cli import jobs

    wanted = handles_mod.parse_many(handles)
    with database(dsn) as conn:
        jobs.detach(conn, wanted)
        rows = jobs.wait(conn, wanted, timeout_s=30)
        _emit_jobs(conn, rows, fmt)


def show(
    handle: Annotated[str, typer.Argument(metavar="HANDLE", help="A job handle ID:COOKIE.")],
    result: Annotated[bool, typer.Option("--result", "-r", help="Print the rows the job returned instead.")] = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Show everything pgbg recorded about one job.

    Examples:
      pgbg show 42:7281990022145993216
      pgbg show --result -F csv 42:7281990022145993216
    """
    from pgbg_cli import handles as handles_mod
    from pgbg_cli import jobs, jobview, messages, output, progress, waiting
    from pgbg_cli.errors import UsageError

    h = handles_mod.parse(handle)
    with database(dsn) as conn:
        start, (found,) = jobs.reconcile_and_start(conn, jobs.fetch_query([h]))
        job = jobs.found_all([h], found.rows())[0]
        if result:
            if not job.get("want_result"):
                raise UsageError(f"job {h} was not launched with --result: it kept no rows")
            if job["state"] != "succeeded":
                raise UsageError(f"job {h} is {job['state']}: it has no rows to show")
            names, rows = jobs.result_rows(job)
            output.emit_rows(rows, [output.Column(n) for n in names], fmt)
            return
        # queued, and nothing starts it: why, and the fix (as its reason)
        waiting.annotate(conn, [job], started=start.role if start and start.alive else None)
        row = progress.enriched(conn, [job])[0]
        jobview.emit_job(row if jobview.for_scripts(fmt) else messages.for_people(row, fmt), fmt)


def list_(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", metavar="STATE", show_default=False,
                     help=f"Only jobs in STATE: {STATE_HELP} (repeatable)."),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", "-l", metavar="PATTERN", show_default=False,
                     help="Only jobs whose label matches PATTERN (* and ? work)."),
    ] = None,
    group: GroupOpt = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="All history, not only live and last-hour jobs.")] = False,
    limit: Annotated[
        str, typer.Option("--limit", "-n", metavar="N", help="At most this many jobs (1 to 1000000).")
    ] = "50",
    watch: WatchOpt = False,
    interval: IntervalOpt = "2s",
    count: CountOpt = None,
    fmt: FormatOpt = Format.auto,
    targets_file: TargetsFileOpt = None,
    service: ServiceOpt = None,
    all_databases: AllDatabasesOpt = False,
    dsn: DsnOpt = None,
) -> None:
    """List live and recent jobs, and pg_background workers that pgbg did not launch.

    With --watch the list stays on screen, refreshed every --interval, cut to the
    terminal's height; when the output is not a terminal each refresh prints one line
    of counts per state (or one JSON object with --format json). Ctrl-C ends it (exit 0).

    Examples:
      pgbg list
      pgbg list --state running --state queued --label 'nightly*'
      pgbg list --all --state failed -n 20 -F csv
      pgbg list --watch --interval 5s
      pgbg list -h db1 -d shop -d sales
      pgbg list --all-databases --state running
      pgbg list --group nightly-vacuum
    """
    from pgbg_cli import jobs, numbers, output
    from pgbg_cli.errors import UsageError

    for s in state or []:
        if s not in jobs.STATES:
            raise UsageError(f"unknown state {numbers.shown(s)}: one of {', '.join(jobs.STATES)}")
    most = numbers.parse_count(limit, "--limit", 1, numbers.LIMIT_MAX)
    seconds, refreshes = watch_options(interval, count, watch)
    chosen = chosen_targets(targets_file, service, all_databases)
    if chosen is not None:
        if watch:
            from pgbg_cli import watch as watch_mod
            from pgbg_cli.watch_targets import ManyListView

            for skipped in chosen.failed:
                output.say(f"pgbg: {skipped.target.name}: {skipped.error}")
            view = ManyListView(chosen.targets, states=state, label=label, include_all=all_, limit=most, group=group)
            try:
                raise typer.Exit(watch_mod.run(view, interval=seconds, count=refreshes, fmt=fmt))
            finally:
                view.close()
        _list_several(chosen, state, label, all_, most, fmt, group)
    with database(dsn) as conn:
        if watch:
            from pgbg_cli import watch as watch_mod

            view = watch_mod.ListView(conn, states=state, label=label, include_all=all_, limit=most, group=group)
            with renewable(conn, dsn) as live:
                raise typer.Exit(watch_mod.run(view, interval=seconds, count=refreshes, fmt=fmt,
                                               reconnect=live.renew()))
        rows, notes, total = _listed(conn, state, label, all_, most, group)
        _show_jobs(rows, fmt)
    _say_cut(len(rows), total, all_)
    for note in notes:
        output.say(f"pgbg: {note}")


def _listed(conn: Any, state: list[str] | None, label: str | None, all_: bool,
            most: int, group: str | None = None) -> tuple[list[dict[str, Any]], list[str], int]:
    """The rows of list (enriched, at most ``most``, other pg_background workers first and
    counted), the notes on queued jobs that nothing starts, and how many rows there were in all;
    in one round trip."""
    from pgbg_cli import jobs, jobview, progress, queries, waiting

    # one round trip: reconcile, then the list (and other pg_background workers)
    foreign = not state and not label and group is None
    then = [jobs.list_query(states=state, label=label, include_all=all_, limit=most, group=group, counted=True)]
    if foreign:
        then.append((queries.text("foreign_workers"), None))
    start, slots = jobs.reconcile_and_start(conn, *then)
    rows = slots[0].rows()
    total = rows[0]["total"] if rows else 0
    if foreign:
        others = [jobview.foreign_row(w) for w in slots[1].rows()]
        rows, total = others + rows, total + len(others)
    rows = rows[:most]  # the limit counts every row, other workers too
    # queued jobs that nothing starts: why, and the fix
    notes = waiting.annotate(conn, rows, started=start.role if start and start.alive else None)
    return progress.enriched(conn, rows), notes, total


def _say_cut(shown: int, total: int, all_: bool, target: str | None = None) -> None:
    """On stderr, when the limit left rows out: how many there were, and how to see them."""
    from pgbg_cli import output

    if shown < total:
        where = f"{target}: " if target else ""
        output.say(f"pgbg: {where}showing {shown} of {total} (use -n/--limit to show more"
                   + (")" if all_ else ", --all for older jobs)"))


def _list_several(chosen: Any, state: list[str] | None, label: str | None, all_: bool, most: int,
                  fmt: Format, group: str | None = None) -> None:
    """list on several targets at once: one combined listing, each row naming its target."""
    from pgbg_cli import output, preflight, targets

    outcomes = chosen.failed + targets.each(chosen.targets,
                                            lambda _, conn: _listed(conn, state, label, all_, most, group),
                                            prepare=lambda _, conn: preflight.check(conn))
    answered, failed = report(outcomes)
    for outcome in answered:
        outcome.value, notes, total = outcome.value
        _say_cut(len(outcome.value), total, all_, outcome.target.name)  # the limit is each target's
        for note in notes:
            output.say(f"pgbg: {outcome.target.name}: {note}")
    _show_jobs(_rows_of(outcomes, failed), fmt, several=True)
    raise typer.Exit(exit_of_targets(failed))
