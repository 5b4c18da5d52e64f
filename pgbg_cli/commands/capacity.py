"""``pgbg capacity``: worker slots, who holds them, and how many more jobs fit."""

from __future__ import annotations

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
    report,
)
from pgbg_cli.output import Format


def register(app: typer.Typer) -> None:
    app.command("capacity")(capacity)


def capacity(
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            metavar="N",
            help="Say whether N more background jobs fit right now and, if not, what to change (1 to 262143).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every count and setting, not only the summary.")
    ] = False,
    fmt: FormatOpt = Format.auto,
    targets_file: TargetsFileOpt = None,
    service: ServiceOpt = None,
    all_databases: AllDatabasesOpt = False,
    dsn: DsnOpt = None,
) -> None:
    """Show max_worker_processes, who holds its slots, pgbg's job budget and how many jobs fit.

    Every pg_background worker and every pgbg supervisor (one per role with live jobs)
    holds a slot of max_worker_processes, shared with parallel query and replication.
    Works without pgbg's schema too (then 2 slots are kept in reserve). With --plan N the
    verdict is data (fits yes/no and the changes that would make N fit); the exit code is
    0 either way. People get the answer and a summary; --verbose, JSON and CSV give every field.

    Examples:
      pgbg capacity
      pgbg capacity --plan 20
      pgbg capacity --verbose -F json
      pgbg capacity --service prod1 --service prod2
    """
    from pgbg_cli import capacity as core
    from pgbg_cli import extension, numbers, output

    wanted = None if plan is None else numbers.parse_count(plan, "--plan", 1, numbers.PLAN_MAX)
    chosen = chosen_targets(targets_file, service, all_databases)
    if chosen is not None:
        _capacity_several(chosen, wanted, verbose, fmt)
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


def _capacity_several(chosen: Any, wanted: int | None, verbose: bool, fmt: Format) -> None:
    """capacity of several targets at once: one row per target; --all-databases' databases
    without pgbg are skipped (a target named otherwise works without pgbg's schema, as ever)."""
    from pgbg_cli import capacity as core
    from pgbg_cli import extension, output, preflight, targets

    def work(_: Any, conn: Any) -> tuple[dict[str, Any], list[str]]:
        cap = core.measure(conn, extension.discover(conn))
        verdict = core.plan(cap, wanted) if wanted is not None else None
        return core.record(cap, verdict), list(cap.notes)

    outcomes = chosen.failed + targets.each(
        chosen.targets, work, prepare=lambda target, conn: preflight.check(conn, need_schema=target.optional))
    _, failed = report(outcomes)
    fields = (core.PLAN_FIELDS if wanted is not None else []) + core.FIELDS
    resolved = output.resolve(fmt)
    if resolved in (Format.json, Format.csv):
        fields = fields + [core.NOTES]
    elif not verbose:
        fields = (core.SHORT_PLAN_FIELDS if wanted is not None else []) + core.SUMMARY_FIELDS
    rows = []
    for outcome in outcomes:
        if outcome in failed:
            rows.append({"target": outcome.target.name, "error": outcome.error})
        elif outcome.ok:
            record, notes = outcome.value
            rows.append({"target": outcome.target.name, **record})
            if resolved not in (Format.json, Format.csv):
                for note in notes:
                    output.say(f"pgbg: {outcome.target.name}: {note}")
    named = [output.Column("target", "target"), *fields, output.Column("error", "error")]
    if resolved in (Format.json, Format.csv):
        output.emit_rows(rows, named, fmt)
    else:  # for people: each target's summary in turn, its name first (the lines are long)
        for at, row in enumerate(rows):
            if at:
                output.stdout_console().print() if resolved is Format.table else print()
            output.emit_record(row, named, fmt, compact=True)
    raise typer.Exit(exit_of_targets(failed))
