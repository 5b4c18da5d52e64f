"""``pgbg fanout``: one statement template over every table that matches, as one group of jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt, StrictOpt, database, group_option
from pgbg_cli.output import Format

DEAD_TUPLES_MAX = 2**63 - 1  # n_dead_tup is a bigint
XID_AGE_MAX = 2**31 - 1  # age() of a transaction id is an integer
FanoutGroupOpt = group_option("Name the group of jobs (default: a new one, named on stderr); wait, cancel, list "
                              "and stats take it.")


def register(app: typer.Typer) -> None:
    app.command("fanout")(fanout)


def _size(value: object, row: dict) -> str:
    from pgbg_cli.numbers import spell_bytes

    return spell_bytes(int(value)) if value is not None else ""


def fanout(
    template: Annotated[str, typer.Argument(metavar="SQL", help="The statement, with {table} where the table goes "
                                            "({schema} and {name}: each part alone), quoted by the server.")],
    schema: Annotated[list[str] | None, typer.Option(
        "--schema", metavar="PATTERN",
        help="Only tables of schemas matching PATTERN (* and ?; repeatable). Default: every schema but the "
             "system's and pgbg's.", show_default=False)] = None,
    table: Annotated[list[str] | None, typer.Option(
        "--table", metavar="PATTERN",
        help="Only tables whose name (or schema.name) matches PATTERN (* and ?; repeatable).",
        show_default=False)] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude-table", metavar="PATTERN", help="Leave out tables matching PATTERN (repeatable).",
        show_default=False)] = None,
    min_size: Annotated[str | None, typer.Option(
        "--min-size", metavar="SIZE", help="Only tables of at least SIZE with indexes and TOAST (500kB, 10MB, 2GB).",
        show_default=False)] = None,
    min_dead: Annotated[str, typer.Option(
        "--min-dead-tuples", metavar="N", help="Only tables with at least N dead tuples (pg_stat_all_tables).",
        show_default=False)] = "0",
    min_xid_age: Annotated[str, typer.Option(
        "--min-xid-age", metavar="N", help="Only tables whose relfrozenxid is at least N transactions old.",
        show_default=False)] = "0",
    order: Annotated[str, typer.Option(
        "--order", metavar="size|dead|xid-age|name",
        help="Which tables go first: the largest (size), most dead tuples (dead), oldest relfrozenxid (xid-age), "
             "or by name.")] = "size",
    jobs_at_once: Annotated[str, typer.Option(
        "--jobs", "-j", metavar="N", help="Run at most N of the jobs at a time, most urgent first.")] = "1",
    group: FanoutGroupOpt = None,
    label: Annotated[str | None, typer.Option(
        "--label", "-l", metavar="LABEL", help="A label to find the jobs by.", show_default=False)] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", "-t", metavar="DURATION",
        help="Cancel a job that runs longer (e.g. 30m, 2h); state timed_out.", show_default=False)] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for every job, showing progress, and print the outcomes.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the tables and the statement for each; launch nothing.")] = False,
    strict: StrictOpt = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Expand a statement over every table that matches, most urgent first (as vacuumdb, in the server).

    Each table's name goes into the statement as the server quotes it, so no name can change
    it. Tables the role may not maintain are left out of VACUUM, ANALYZE, REINDEX and CLUSTER
    (the server would skip them with a mere warning), and counted on stderr. The jobs are
    queued all or none, as one group that runs at most --jobs at a time in that order; one
    handle per line is printed. With --dry-run the statements are printed and nothing is
    launched.

    Examples:
      pgbg fanout "VACUUM (ANALYZE) {table}" --min-dead-tuples 10000 --dry-run
      pgbg fanout "REINDEX TABLE CONCURRENTLY {table}" --table 'order*' --jobs 2
      pgbg fanout "ANALYZE {table}" --schema public --order name --dry-run -F csv
    """
    from pgbg_cli import fanout as core
    from pgbg_cli import launching, numbers, output
    from pgbg_cli.commands import launch as launcher
    from pgbg_cli.durations import parse_ms
    from pgbg_cli.errors import UsageError

    if order not in core.ORDERS:
        raise UsageError(f"invalid --order {order!r}: one of {', '.join(core.ORDERS)}")
    min_bytes = core.parse_bytes(min_size, "--min-size") if min_size is not None else 0
    limit = numbers.parse_count(jobs_at_once, "--jobs", 1, launching.GROUP_LIMIT_MAX)
    timeout_ms = parse_ms(timeout, what="--timeout") or None if timeout is not None else None
    dead = numbers.parse_count(min_dead, "--min-dead-tuples", 0, DEAD_TUPLES_MAX)
    xid_age = numbers.parse_count(min_xid_age, "--min-xid-age", 0, XID_AGE_MAX)
    with database(dsn) as conn:
        chosen, refused = core.find(conn, template, schemas=schema or [], tables=table or [],
                                    excluded=exclude or [], min_bytes=min_bytes, min_dead=dead,
                                    min_xid_age=xid_age, order=order)
    if refused:
        names = ", ".join(t.target for t in refused[:5]) + (", ..." if len(refused) > 5 else "")
        output.say(f"pgbg: left out {len(refused)} table{'s' if len(refused) != 1 else ''} this role may not "
                   f"maintain (the server would skip them with a warning): {names}")
    if not chosen:
        output.say("pgbg: no table matches")
        raise typer.Exit(1)
    if dry_run:
        output.emit_rows([t.__dict__ for t in chosen], COLUMNS, fmt)
        return
    from pgbg_cli.batch import Piece

    pieces = [Piece(t.sql, f"table {t.target}") for t in chosen]
    launcher.launch_pieces(pieces, label=label, timeout_ms=timeout_ms, queue_size=0,
                           group=launcher.group_named(group, limit), group_limit=limit, wait=wait,
                           keep_running=False, start_s=10.0, strict=strict, fmt=fmt, dsn=dsn)


def _columns() -> list:
    from pgbg_cli.output import Column

    return [Column("target", "TABLE"), Column("kind", "KIND"), Column("bytes", "SIZE", _size, "right"),
            Column("dead_tuples", "DEAD TUPLES", justify="right"), Column("xid_age", "XID AGE", justify="right"),
            Column("sql", "SQL")]


COLUMNS = _columns()
