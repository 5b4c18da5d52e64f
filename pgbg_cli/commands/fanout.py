"""``pgbg fanout``: one statement template over every table that matches, as one group of jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt, database
from pgbg_cli.output import Format


def register(app: typer.Typer) -> None:
    app.command("fanout")(fanout)


def _size(value: object, row: dict) -> str:
    from pgbg_cli.fanout import spell_bytes

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
    min_dead: Annotated[int, typer.Option(
        "--min-dead-tuples", metavar="N", min=0, help="Only tables with at least N dead tuples (pg_stat_all_tables).",
        show_default=False)] = 0,
    min_xid_age: Annotated[int, typer.Option(
        "--min-xid-age", metavar="N", min=0, help="Only tables whose relfrozenxid is at least N transactions old.",
        show_default=False)] = 0,
    order: Annotated[str, typer.Option(
        "--order", metavar="size|dead|xid-age|name",
        help="Which tables go first: the largest (size), most dead tuples (dead), oldest relfrozenxid (xid-age), "
             "or by name.")] = "size",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the tables and the statement for each; launch nothing.")] = False,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Expand a statement over every table that matches, most urgent first (vacuumdb, server-side).

    Each table's name goes into the statement as the server quotes it, so no name can change
    it. Tables the role may not maintain are left out of VACUUM, ANALYZE, REINDEX and CLUSTER
    (the server would skip them with a mere warning), and counted on stderr. With --dry-run
    the statements are printed and nothing is launched.
    """
    from pgbg_cli import fanout as core
    from pgbg_cli import output
    from pgbg_cli.errors import UsageError

    if order not in core.ORDERS:
        raise UsageError(f"invalid --order {order!r}: one of {', '.join(core.ORDERS)}")
    min_bytes = core.parse_bytes(min_size, "--min-size") if min_size is not None else 0
    with database(dsn) as conn:
        chosen, refused = core.find(conn, template, schemas=schema or [], tables=table or [],
                                    excluded=exclude or [], min_bytes=min_bytes, min_dead=min_dead,
                                    min_xid_age=min_xid_age, order=order)
    if refused:
        names = ", ".join(t.target for t in refused[:5]) + (", ..." if len(refused) > 5 else "")
        output.say(f"pgbg: left out {len(refused)} table{'s' if len(refused) != 1 else ''} this role may not "
                   f"maintain (the server would skip them with a warning): {names}")
    if not chosen:
        output.say("pgbg: no table matches")
        raise typer.Exit(1)
    if not dry_run:
        raise UsageError("launching a fan-out needs job groups, not there yet: use --dry-run to see the statements")
    output.emit_rows([t.__dict__ for t in chosen], COLUMNS, fmt)


def _columns() -> list:
    from pgbg_cli.output import Column

    return [Column("target", "TABLE"), Column("kind", "KIND"), Column("bytes", "SIZE", _size, "right"),
            Column("dead_tuples", "DEAD TUPLES", justify="right"), Column("xid_age", "XID AGE", justify="right"),
            Column("sql", "SQL")]


COLUMNS = _columns()
