"""``pgbg doctor``: the server, pg_background and pgbg's schema, as pgbg sees them."""

from __future__ import annotations

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt
from pgbg_cli.output import Format


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def _yes_no(features: dict[str, bool]) -> list[str]:
    return [f"{name}: {'yes' if ok else 'no'}" for name, ok in features.items()]


def doctor(fmt: FormatOpt = Format.auto, dsn: DsnOpt = None) -> None:
    """Report the server and extension versions, pgbg's schema, the features this
    pg_background offers, and any problem with its fix.

    Exit 0 when pgbg can work here, 3 when something must be fixed first (each problem is
    printed with its fix).

    Examples:
      pgbg doctor
      pgbg doctor -F json
    """
    from pgbg_cli import db
    from pgbg_cli import doctor as service
    from pgbg_cli.output import Column, emit_record, say

    with db.connection(dsn) as conn:
        rep = service.examine(conn)
    fields = [
        Column("pgbg", "pgbg"),
        Column("server", "server"),
        Column("extension_version", "pg_background"),
        Column("extension_schema", "extension schema"),
        Column("features", "features", human=lambda v, _r: _yes_no(v or {})),
        Column("schema_state", "pgbg schema"),
        Column("bound_to", "bound to"),
        Column("role", "role"),
        Column("supervisor_pid", "supervisor pid"),
        Column("messages", "job messages"),
        Column("problems", "problems", human=lambda v, _r: list(v or []) or ["none"]),
    ]
    record = rep.as_dict()
    emit_record(record, fields, fmt, compact=True)
    for problem in rep.problems:
        say(f"pgbg: {problem}")
    raise typer.Exit(3 if rep.problems else 0)
