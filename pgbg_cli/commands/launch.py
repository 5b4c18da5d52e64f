"""``pgbg launch``: submit SQL to run in a background worker, optionally waiting for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt, StrictOpt, database, exit_for, read_sql
from pgbg_cli.errors import NOT_STARTED
from pgbg_cli.output import Format

START_TIMEOUT_MAX_MS = 3_600_000


def register(app: typer.Typer) -> None:
    app.command("launch")(launch)


def launch(
    sql: Annotated[
        str | None, typer.Argument(help="The SQL to run; - reads it from standard input.", show_default=False)
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the SQL from FILE (- for standard input).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the job, show its progress, print its outcome.")
    ] = False,
    result: Annotated[
        bool,
        typer.Option("--result", "-r", help="Keep the rows the query returns and print them (implies --wait)."),
    ] = False,
    label: Annotated[str | None, typer.Option("--label", "-l", help="A label to find the job by.")] = None,
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
        typer.Option("--keep-running", help="On Ctrl-C, leave the job running and print its handle (default: cancel)."),
    ] = False,
    start_timeout: Annotated[
        str,
        typer.Option("--start-timeout", metavar="DURATION",
                     help="When no worker slot is free for the role's supervisor, try this long (0 to 1h) "
                          "before exit 75: the job stays queued and nothing will start it."),
    ] = "10s",
    strict: StrictOpt = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Run SQL in a pg_background worker, supervised inside the server.

    Prints the job's handle <id>:<cookie>, which every later pgbg command accepts from any
    host. With --wait, shows live progress and prints the outcome; the exit code is 0 when
    the job succeeded and 1 when it failed, was canceled or timed out (4 with --strict when
    it succeeded but emitted a WARNING; its messages go to stderr). Killing pgbg never
    loses the job: it runs and its outcome is recorded all the same.
    """
    from pgbg_cli import jobs, numbers
    from pgbg_cli.durations import parse_ms
    from pgbg_cli.output import say

    # options first: a bad one is refused before the SQL is read (perhaps from stdin)
    timeout_ms = parse_ms(timeout, what="--timeout") if timeout is not None else None
    start_s = parse_ms(start_timeout, what="--start-timeout", hi=START_TIMEOUT_MAX_MS) / 1000
    if timeout_ms == 0:
        timeout_ms = None
    queue_bytes = numbers.parse_count(queue_size, "--queue-size", numbers.QUEUE_SIZE_MIN, numbers.QUEUE_SIZE_MAX,
                                      zero="the server default")
    text = read_sql(sql, file)
    with database(dsn, describe=text) as conn:
        # Ctrl-C waits while the job is registered (and its supervisor started): one that came
        # after the server committed it but before pgbg had its handle would leave a job nobody
        # cancels. It is delivered right after, inside the block that cancels the job.
        held = _hold_ctrl_c()
        try:
            job, first = jobs.register(
                conn, text, label=label, timeout_ms=timeout_ms, queue_size=queue_bytes, want_result=result
            )
        except BaseException:
            _release_ctrl_c(held)
            raise
        # From here on the job exists: Ctrl-C cancels it (or, with --keep-running, leaves it).
        try:
            _release_ctrl_c(held)
            stranded = _started(conn, job, first, start_s, waiting_here=wait or result)
            if stranded or not (wait or result):
                _print_accepted(job, fmt)
                if stranded:
                    # the handle is printed: pgbg cancel takes it; any later start runs the job
                    say(f"pgbg: job {job['id']}:{job['cookie']} is queued, but nothing will start it: {stranded}")
                    raise typer.Exit(NOT_STARTED)
                return
            final = _wait_with_bar(conn, job, dsn)
        except KeyboardInterrupt:
            final = _interrupted(job, keep_running=keep_running, dsn=dsn)
    _print_outcome(final, fmt, rows=result)
    raise typer.Exit(exit_for([final], strict=strict))


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


def _hold_ctrl_c() -> Any:
    """Block SIGINT (where the platform can); returns what to restore."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _release_ctrl_c(held: Any) -> None:
    """Restore the signal mask; a Ctrl-C that came meanwhile is raised from here."""
    import signal

    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _print_accepted(job: dict[str, Any], fmt: Format) -> None:
    from pgbg_cli import jobview, output

    if output.resolve(fmt) in (Format.json, Format.csv):
        output.emit_record(jobview.enrich(job), jobview.RECORD_FIELDS, fmt)
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
                         tick_interval=0.25 if bar.enabled else 1.0, reconnect=live.renew(bar))[0]


def _interrupted(job: dict[str, Any], *, keep_running: bool, dsn: str | None) -> dict[str, Any]:
    """Ctrl-C after the job was registered: cancel it, or leave it running and print its handle."""
    from pgbg_cli import db, jobs
    from pgbg_cli.output import say

    handle = jobs.handle_of(job)
    if keep_running:
        sys.stdout.write(f"{handle}\n")
        sys.stdout.flush()
        say(f"pgbg: interrupted; job {handle} goes on (pgbg wait {handle}, pgbg cancel {handle})")
        raise typer.Exit(130)
    say(f"pgbg: interrupted; canceling job {handle}")
    # The interrupted connection may be mid-query: ask on a fresh one.
    with db.connection(dsn) as fresh:
        jobs.cancel(fresh, [handle])
        return jobs.wait(fresh, [handle], timeout_s=120)[0]


def _print_outcome(job: dict[str, Any], fmt: Format, *, rows: bool) -> None:
    from pgbg_cli import jobs, jobview, messages, output

    if rows and job["state"] == "succeeded":
        names, data = jobs.result_rows(job)
        output.emit_rows(data, [output.Column(n) for n in names], fmt)
        messages.say_all([job])
        output.say(f"pgbg: {jobview.summary(job)}")
        return
    record = messages.for_people(jobview.enrich(job), fmt)
    if output.resolve(fmt) not in (Format.json, Format.csv):
        record["messages"] = None  # for people they go to stderr, below
    output.emit_record(record, jobview.RECORD_FIELDS, fmt, compact=True)
    messages.say_all([job])
    if job["state"] != "succeeded" or messages.with_warnings(job):
        output.say(f"pgbg: {jobview.summary(job)}")
