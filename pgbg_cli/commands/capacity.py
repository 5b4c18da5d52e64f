"""``pgbg capacity``: worker slots, who holds them, and how many more jobs fit."""

from __future__ import annotations

from typing import Annotated

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt, database
from pgbg_cli.output import Format


def register(app: typer.Typer) -> None:
    app.command("capacity")(capacity)


def capacity(
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            "-n",
            metavar="N",
            help="Say whether N more background jobs fit right now and, if not, what to change (1 to 262143).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every count and setting, not only the summary.")
    ] = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Show max_worker_processes, who holds its slots, pgbg's job budget and how many jobs fit.

    Every pg_background worker and every pgbg supervisor (one per role with live jobs)
    holds a slot of max_worker_processes, shared with parallel query and replication.
    Works without pgbg's schema too (then 2 slots are kept in reserve). With --plan N the
    verdict is data (fits yes/no and the changes that would make N fit); the exit code is
    0 either way. People get the answer and a summary; --verbose, JSON and CSV give every field.
    """
    from pgbg_cli import capacity as core
    from pgbg_cli import extension, numbers, output

    wanted = None if plan is None else numbers.parse_count(plan, "--plan", 1, numbers.PLAN_MAX)
    with database(dsn, need_schema=False) as conn:
        cap = core.measure(conn, extension.discover(conn))
    verdict = core.plan(cap, wanted) if wanted is not None else None
    fields = (core.PLAN_FIELDS if verdict else []) + core.FIELDS
    fmt = output.resolve(fmt)
    if fmt in (Format.json, Format.csv):
        fields = fields + [core.NOTES]  # for people the notes are messages, on stderr
    elif not verbose:
        fields = (core.SHORT_PLAN_FIELDS if verdict else []) + core.SUMMARY_FIELDS
    output.emit_record(core.record(cap, verdict), fields, fmt, compact=True)
    for note in cap.notes:
        output.say(f"pgbg: {note}")
