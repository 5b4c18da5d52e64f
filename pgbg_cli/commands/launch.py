"""``pgbg launch``: submit SQL to run in a background worker, optionally waiting for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    read_sql,
    report,
)
from pgbg_cli.errors import INTERRUPTED, NOT_STARTED
from pgbg_cli.output import Format

if TYPE_CHECKING:
    from pgbg_cli.batch import Piece

START_TIMEOUT_MAX_MS = 3_600_000
LaunchGroupOpt = group_option("Put the jobs in this group of your jobs (wait, cancel, list and stats take it).")


def register(app: typer.Typer) -> None:
    app.command("launch")(launch)


def launch(
    sql: Annotated[
        list[str] | None,
        typer.Argument(metavar="[SQL]...", show_default=False,
                       help="The SQL to run, one job per argument; - reads one job from standard input."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", metavar="FILE", show_default=False,
                     help="Run each statement of FILE as a job of its own (- for standard input)."),
    ] = None,
    lines: Annotated[
        bool,
        typer.Option("--lines", help="One job per line of standard input (or of --file FILE)."),
    ] = False,
    group: LaunchGroupOpt = None,
    jobs_at_once: Annotated[
        str | None,
        typer.Option("--jobs", "-j", metavar="N",
                     help="Run at most N jobs of the group at a time, in the order given (without --group: "
                          "a new group, named on stderr)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job, show its progress, print its outcome.")
    ] = False,
    result: Annotated[
        bool,
        typer.Option("--result", "-r", help="Keep the rows the query returns and print them (implies --wait)."),
    ] = False,
    label: Annotated[
        str | None, typer.Option("--label", "-l", metavar="LABEL", help="A label to find the job by.",
                                 show_default=False)
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", "-t", metavar="DURATION",
                     help="Cancel the job if it runs longer (e.g. 30s, 10m, 2h; at most 36525d); state timed_out."),
    ] = None,
    queue_size: Annotated[
        str,
        typer.Option("--queue-size", metavar="BYTES",
                     help="Shared memory queue size in bytes: 0 (the server default) or 4096 to 268435456."),
    ] = "0",
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running",
                     help="On Ctrl-C, leave the job running and print its handle (default: cancel it). "
                          "Either way the exit code is 130."),
    ] = False,
    start_timeout: Annotated[
        str,
        typer.Option("--start-timeout", metavar="DURATION",
                     help="When no worker slot is free for the role's supervisor, try this long (0 to 1h) "
                          "before exit 75: the job stays queued and nothing will start it."),
    ] = "10s",
    strict: StrictOpt = False,
    fmt: FormatOpt = Format.auto,
    targets_file: TargetsFileOpt = None,
    service: ServiceOpt = None,
    all_databases: AllDatabasesOpt = False,
    dsn: DsnOpt = None,
) -> None:
    """Run SQL in a pg_background worker, supervised inside the server.

    Prints the job's handle ID:COOKIE, which every later pgbg command accepts from any
    host. With --wait, shows live progress and prints the outcome; the exit code is 0 when
    the job succeeded and 1 when it failed, was canceled or timed out (4 with --strict when
    it succeeded but emitted a WARNING; its messages go to stderr). Ctrl-C while waiting
    cancels the job (exit 130). Killing pgbg never loses the job: it runs and its outcome is
    recorded all the same.

    Several jobs at once: several SQL arguments, --file FILE (one job per statement) or
    --lines (one job per line) print one handle per line, in order. They are queued all or
    none: a statement the server refuses is named by its position and nothing is queued.

    Examples:
      pgbg launch --label nightly "VACUUM (ANALYZE) orders"
      pgbg launch --wait --timeout 10m "CREATE INDEX CONCURRENTLY ON orders (total)"
      pgbg launch --result -F json "SELECT status, count(*) FROM orders GROUP BY 1"
      pgbg launch --wait --file nightly.sql
      pgbg launch --group analyze --jobs 2 "ANALYZE orders" "ANALYZE customers"
      pgbg launch --lines < statements.sql
      pgbg launch --all-databases -l nightly "ANALYZE"
    """
    from pgbg_cli import jobs, launching, numbers
    from pgbg_cli.durations import parse_ms
    from pgbg_cli.errors import UsageError
    from pgbg_cli.output import say

    # options first: a bad one is refused before the SQL is read (perhaps from stdin)
    timeout_ms = parse_ms(timeout, what="--timeout") if timeout is not None else None
    start_s = parse_ms(start_timeout, what="--start-timeout", hi=START_TIMEOUT_MAX_MS) / 1000
    if timeout_ms == 0:
        timeout_ms = None
    queue_bytes = numbers.parse_count(queue_size, "--queue-size", numbers.QUEUE_SIZE_MIN, numbers.QUEUE_SIZE_MAX,
                                      zero="the server default")
    limit = (numbers.parse_count(jobs_at_once, "--jobs", 1, launching.GROUP_LIMIT_MAX)
             if jobs_at_once is not None else None)
    group = group_named(group, limit)
    text, pieces = _gather(sql, file, lines)
    chosen = chosen_targets(targets_file, service, all_databases)
    if chosen is not None and pieces is not None:
        raise UsageError("launch on several targets takes one SQL statement (no batch)")
    if pieces is not None:
        if result:
            raise UsageError("--result takes a single job (pg_background returns the rows of one query)")
        # text: the file's, when its statements are the jobs
        launch_pieces(pieces, file=file, file_text=None if lines else text, label=label, timeout_ms=timeout_ms,
                      queue_size=queue_bytes, group=group, group_limit=limit, wait=wait,
                      keep_running=keep_running, start_s=start_s, strict=strict, fmt=fmt, dsn=dsn)
        return
    assert text is not None
    if chosen is not None:
        if wait or result:
            raise UsageError("launch on several targets prints their handles: wait for them with pgbg wait "
                             "and the same targets (no --wait, no --result)")
        _launch_several(chosen, text, label=label, timeout_ms=timeout_ms, queue_size=queue_bytes, group=group,
                        group_limit=limit, start_s=start_s, fmt=fmt)
    with database(dsn, describe=text) as conn:
        # Ctrl-C waits while the job is registered (and its supervisor started): one that came
        # after the server committed it but before pgbg had its handle would leave a job nobody
        # cancels. It is delivered right after, inside the block that cancels the job.
        held = launching.hold_ctrl_c()
        try:
            job, first = jobs.register(
                conn, text, label=label, timeout_ms=timeout_ms, queue_size=queue_bytes, want_result=result,
                group=group, group_limit=limit,
            )
        except BaseException:
            launching.release_ctrl_c(held)
            raise
        launching.note_queued(f"{job['id']}:{job['cookie']}")
        # From here on the job exists: Ctrl-C cancels it (or, with --keep-running, leaves it).
        interrupted = False
        try:
            launching.release_ctrl_c(held)
            stranded = _started(conn, job, first, start_s, waiting_here=wait or result)
            if stranded or not (wait or result):
                _print_accepted(job, fmt)
                if stranded:
                    # the handle is printed: pgbg cancel takes it; any later start runs the job
                    say(f"pgbg: job {job['id']}:{job['cookie']} is queued, but nothing will start it: {stranded}")
                    raise typer.Exit(NOT_STARTED)
                return
            _preload_outcome(fmt, rows=result)
            final = _wait_with_bar(conn, job, dsn)
        except KeyboardInterrupt:
            final = _interrupted(job, keep_running=keep_running, dsn=dsn)
            interrupted = True
    _print_outcome(final, fmt, rows=result)
    # Ctrl-C is 130 whatever became of the job (a script tells "stopped by the user" from "failed")
    raise typer.Exit(INTERRUPTED if interrupted else exit_for([final], strict=strict))


def _launch_several(chosen: Any, text: str, *, label: str | None, timeout_ms: int | None, queue_size: int | None,
                    group: str | None, group_limit: int | None, start_s: float, fmt: Format) -> None:
    """The same SQL as one job on each target at once; their handles TARGET/ID:COOKIE in the
    targets' order (``target`` in JSON and CSV). Ctrl-C waits until every handle is printed."""
    from pgbg_cli import jobs, jobview, launching, output, preflight, targets

    def work(target: Any, conn: Any) -> tuple[dict[str, Any], str | None]:
        job, first = jobs.register(conn, text, label=label, timeout_ms=timeout_ms, queue_size=queue_size,
                                   want_result=False, group=group, group_limit=group_limit)
        launching.note_queued(f"{target.name}{targets.SEPARATOR}{job['id']}:{job['cookie']}")
        return job, _started(conn, job, first, start_s, waiting_here=False)

    held = launching.hold_ctrl_c()  # the threads inherit it: no job is left without its handle printed
    try:
        outcomes = chosen.failed + targets.each(chosen.targets, work,
                                                prepare=lambda _, conn: preflight.check(conn, sql=text))
        _, failed = report(outcomes)
        rows, stranded = [], []
        for outcome in outcomes:
            if outcome in failed:
                rows.append({"target": outcome.target.name, "handle": None, "message": outcome.error,
                             "state": "unreachable" if outcome.unreachable else "unavailable"})
            elif outcome.ok:
                job, why = outcome.value
                rows.append({"target": outcome.target.name, **jobview.enrich(job)})
                if why:
                    stranded.append(f"pgbg: {outcome.target.name}: job {job['id']}:{job['cookie']} is queued, "
                                    f"but nothing will start it: {why}")
        # the queued jobs in the targets' order, as printed (the threads noted them as they came;
        # one whose target failed after the job was queued stays named)
        place = {t.target.name: i for i, t in enumerate(outcomes)}
        launching.QUEUED.sort(key=lambda h: place.get(h.rsplit(targets.SEPARATOR, 1)[0], len(place)))
        if output.resolve(fmt) in (Format.json, Format.csv):
            output.emit_rows(rows, [output.Column("target"), *jobview.RECORD_FIELDS], fmt)
        else:
            sys.stdout.write("".join(f"{r['target']}{targets.SEPARATOR}{r['handle']}\n" for r in rows if r["handle"]))
            sys.stdout.flush()
        for line in stranded:
            output.say(line)
    finally:
        launching.release_ctrl_c(held)
    raise typer.Exit(exit_of_targets(failed, NOT_STARTED if stranded else 0))


def group_named(group: str | None, limit: int | None) -> str | None:
    """The group the jobs go in (launching.group_for); a new one is named on stderr (launch, fanout)."""
    from pgbg_cli import launching
    from pgbg_cli.output import printable, say

    name = launching.group_for(group, limit)
    if group is None and name is not None:
        say(f"pgbg: group {printable(name)} (at most {limit} at a time): pgbg wait --group {name}")
    return name


def _gather(sql: list[str] | None, file: Path | None, lines: bool) -> tuple[str | None, list[Any] | None]:
    """The SQL of one job (text, None), or the pieces of several (the input, pieces)."""
    from pgbg_cli import batch
    from pgbg_cli.errors import UsageError

    args = list(sql or [])
    if lines:
        if args:
            raise UsageError("--lines reads standard input (or --file FILE), not SQL arguments")
        text = read_sql(None, file) if file is not None else read_sql("-", None)
        source = "standard input" if file is None or str(file) == "-" else str(file)
        pieces = batch.from_lines(text, source)
        if not pieces:
            raise UsageError(f"no SQL given: {source} has no line of SQL")
        return text, pieces
    if file is not None:
        if args:
            raise UsageError("give the SQL either as arguments or with --file, not both")
        text = read_sql(None, file)
        source = "standard input" if str(file) == "-" else str(file)
        pieces = batch.from_statements(text, source)
        if not pieces:  # comments and semicolons alone: no job to run (an empty file says so too)
            raise UsageError(f"no SQL given: {source} has no statement")
        return (text, None if len(pieces) <= 1 else pieces)
    if len(args) > 1:
        if "-" in args:
            raise UsageError("- (standard input) is one job alone: use --lines for one job per line")
        return None, batch.from_args(args)
    return read_sql(args[0] if args else None, None), None


def launch_pieces(pieces: list[Piece], *, file: Path | None = None, file_text: str | None = None,
                  label: str | None, timeout_ms: int | None, queue_size: int, group: str | None,
                  group_limit: int | None, wait: bool, keep_running: bool, start_s: float, fmt: Format,
                  dsn: str | None, strict: bool = False) -> None:
    """Queue several jobs, all or none (launching.queue_many); print their handles, or wait for
    them all and print their outcomes (launch, fanout)."""
    from pgbg_cli import jobs, launching
    from pgbg_cli.output import say

    source = "standard input" if file is None or str(file) == "-" else str(file)
    with database(dsn) as conn:
        queued = launching.queue_many(conn, pieces, file_text=file_text, source=source, label=label,
                                      timeout_ms=timeout_ms, queue_size=queue_size, group=group,
                                      group_limit=group_limit)  # Ctrl-C held until let_go()
        rows = queued.jobs
        try:
            queued.let_go()  # from here on Ctrl-C cancels the jobs (or, with --keep-running, leaves them)
            stranded = _started(conn, rows[0], queued.start, start_s, waiting_here=wait)
            if stranded or not wait:
                _print_accepted_many(conn, rows, fmt)
                if stranded:
                    say(f"pgbg: the {len(rows)} jobs are queued, but nothing will start them: {stranded}")
                    raise typer.Exit(NOT_STARTED)
                return
            from pgbg_cli.commands.common import renewable
            from pgbg_cli.commands.livebar import LiveBar

            bar = LiveBar(conn)
            with bar, renewable(conn, dsn) as live:
                final = jobs.wait(conn, [jobs.handle_of(j) for j in rows], tick=bar.update,
                                  tick_interval=0.25 if bar.enabled else 1.0, reconnect=live.renew(bar),
                                  on_held=bar.say)
        except KeyboardInterrupt:
            final = _interrupted_many(rows, keep_running=keep_running, dsn=dsn)
            _print_outcomes(final, fmt)
            raise typer.Exit(INTERRUPTED) from None
    _print_outcomes(final, fmt)
    raise typer.Exit(exit_for(final, strict=strict))


def _print_outcomes(final: list[dict[str, Any]], fmt: Format) -> None:
    """The jobs of a batch once ended: one line each (as wait prints them), why on stderr."""
    from pgbg_cli import jobview, messages, output

    jobview.emit_jobs([jobview.enrich(j) for j in final], fmt)  # JSON: an array of job records
    messages.say_all(final)
    for job in final:
        if job["state"] != "succeeded" or messages.with_warnings(job):
            output.say(f"pgbg: {jobview.summary(job)}")


def _print_accepted_many(conn: Any, rows: list[dict[str, Any]], fmt: Format) -> None:
    from pgbg_cli import jobs, jobview

    if jobview.for_scripts(fmt):
        full = jobs.get_many(conn, [jobs.handle_of(j) for j in rows])
        jobview.emit_jobs([jobview.enrich(j) for j in full], fmt)  # an array of job records
        return
    sys.stdout.write("".join(f"{j['id']}:{j['cookie']}\n" for j in rows))
    sys.stdout.flush()


def _interrupted_many(rows: list[dict[str, Any]], *, keep_running: bool, dsn: str | None) -> list[dict[str, Any]]:
    """Ctrl-C while waiting for a batch: cancel its jobs, or leave them running and print their handles."""
    from pgbg_cli import jobs, launching
    from pgbg_cli.output import say

    handles = [jobs.handle_of(j) for j in rows]
    if keep_running:
        sys.stdout.write("".join(f"{h}\n" for h in handles))
        sys.stdout.flush()
        say(f"pgbg: interrupted; the {len(handles)} jobs go on (pgbg wait, pgbg cancel with their handles)")
        raise typer.Exit(INTERRUPTED)
    say(f"pgbg: interrupted; canceling the {len(handles)} jobs")
    return launching.cancel_and_wait(dsn, handles)


def _started(conn: Any, job: dict[str, Any], first: Any, timeout_s: float, *, waiting_here: bool) -> str | None:
    """Make sure something will start the job: its role's supervisor (started with the submit
    (``first``), or within ``timeout_s`` as slots free), or the dispatcher. None when something
    will (a note is said when it is not at once); else why nothing will, and the fix."""
    from pgbg_cli import jobs
    from pgbg_cli.output import say

    if first is None or first.alive:
        return None  # a supervisor runs (or the job is no longer queued)
    if waiting_here and first.no_slot:
        # --wait: this pgbg tries again every second while it waits
        say("pgbg: no worker slot is free for the supervisor yet: the job stays queued until one frees "
            "(pgbg capacity says who holds them)")
        return None
    start, state = jobs.await_start(conn, job, first, timeout_s=timeout_s)
    if start.alive or state is None:
        return None
    if state.will_start:
        say(f"pgbg: job {job['id']}:{job['cookie']} is queued: {state.why()}")
        return None
    return state.why(borrowed_by=start.borrowed_by)


def _print_accepted(job: dict[str, Any], fmt: Format) -> None:
    from pgbg_cli import jobview, output

    if jobview.for_scripts(fmt):
        jobview.emit_job(jobview.enrich(job), fmt)
        return
    sys.stdout.write(f"{job['id']}:{job['cookie']}\n")
    sys.stdout.flush()
    if sys.stdout.isatty():
        output.say(f"pgbg: job queued; follow it with: pgbg wait {job['id']}:{job['cookie']}")


def _wait_with_bar(conn: Any, job: dict[str, Any], dsn: str | None) -> dict[str, Any]:
    from pgbg_cli import jobs
    from pgbg_cli.commands.common import renewable
    from pgbg_cli.commands.livebar import LiveBar

    bar = LiveBar(conn)
    with bar, renewable(conn, dsn) as live:
        return jobs.wait(conn, [jobs.handle_of(job)], tick=bar.update,
                         tick_interval=0.25 if bar.enabled else 1.0, reconnect=live.renew(bar),
                         unlisten=False, on_held=bar.say)[0]  # the connection closes after the output


def _interrupted(job: dict[str, Any], *, keep_running: bool, dsn: str | None) -> dict[str, Any]:
    """Ctrl-C after the job was registered: cancel it, or leave it running and print its handle."""
    from pgbg_cli import jobs, launching
    from pgbg_cli.output import say

    handle = jobs.handle_of(job)
    if keep_running:
        sys.stdout.write(f"{handle}\n")
        sys.stdout.flush()
        say(f"pgbg: interrupted; job {handle} goes on (pgbg wait {handle}, pgbg cancel {handle})")
        raise typer.Exit(INTERRUPTED)
    say(f"pgbg: interrupted; canceling job {handle}")
    return launching.cancel_and_wait(dsn, [handle])[0]


def _preload_outcome(fmt: Format, *, rows: bool) -> None:
    """Load what ``_print_outcome`` needs before the wait, so that it prints as the job ends."""
    from pgbg_cli import jobview, messages, output  # noqa: F401

    if rows or output.resolve(fmt) is not Format.plain:
        output.preload(fmt)


def _print_outcome(job: dict[str, Any], fmt: Format, *, rows: bool) -> None:
    from pgbg_cli import jobs, jobview, messages, output

    if rows and job["state"] == "succeeded":
        names, data = jobs.result_rows(job)
        output.emit_rows(data, [output.Column(n) for n in names], fmt)
        messages.say_all([job])
        output.say(f"pgbg: {jobview.summary(job)}")
        return
    row = jobview.enrich(job)
    if jobview.for_scripts(fmt):
        jobview.emit_job(row, fmt)
    else:
        shown = messages.for_people(row, fmt)
        shown["messages"] = None  # for people they go to stderr, below
        jobview.emit_job(shown, fmt)
    messages.say_all([job])
    if job["state"] != "succeeded" or messages.with_warnings(job):
        output.say(f"pgbg: {jobview.summary(job)}")
