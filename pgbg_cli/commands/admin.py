"""``pgbg init | grant | revoke | dispatch``: install pgbg's schema, let roles use it, start their supervisors."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from pgbg_cli.commands.common import DsnOpt, FormatOpt
from pgbg_cli.output import Column, Format


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("grant")(grant)
    app.command("revoke")(revoke)
    app.command("dispatch")(dispatch)


class DispatchAction(str, Enum):
    enable = "enable"
    disable = "disable"
    status = "status"


def init(
    check: Annotated[bool, typer.Option("--check", help="Only say whether the schema is present and current.")] = False,
    dsn: DsnOpt = None,
) -> None:
    """Install pgbg's schema (job registry and supervision) or upgrade it in place.

    Safe to run twice or concurrently. With --check: exit 0 when present and current,
    3 when missing or outdated.

    Examples:
      pgbg init
      pgbg init --check
    """
    from pgbg_cli import db, extension, install
    from pgbg_cli.output import say

    with db.connection(dsn) as conn:
        ext = extension.discover(conn)
        if check:  # the status is what was asked for: stdout, and the exit code
            st = install.status(conn)
            typer.echo(st.describe())
            raise typer.Exit(0 if st.current else 3)
        st = install.install(conn, ext)
    for action in st.actions or ["nothing to do"]:
        say(f"pgbg: {action}")
    for warning in st.warnings:
        say(f"pgbg: warning: {warning}")
    say(st.describe())


def grant(
    role: Annotated[str, typer.Argument(metavar="ROLE", help="The role to let use pgbg.")],
    admin: Annotated[bool, typer.Option("--admin", help="Also let it see and cancel every role's jobs.")] = False,
    dsn: DsnOpt = None,
) -> None:
    """Give a role what it needs: pgbackground_role and pgbg_user (and pgbg_admin with --admin).

    Where the dispatcher runs for other roles of this database (pgbg dispatch), it is turned
    on for this one too (a superuser's grant), or the command that does it is named.

    Examples:
      pgbg grant pgbg_app
      pgbg grant --admin ops
    """
    from pgbg_cli import dispatch as dispatcher
    from pgbg_cli import install
    from pgbg_cli.commands.common import database
    from pgbg_cli.output import printable, say

    with database(dsn) as conn:
        done = install.grant(conn, role, admin=admin)
        for stmt in done:
            typer.echo(printable(stmt) + ";")  # a role name may hold anything
        note = dispatcher.follow_grant(conn, dsn, role)
    if note:
        say(f"pgbg: {note}")


def revoke(
    role: Annotated[str, typer.Argument(metavar="ROLE", help="The role to take pgbg away from.")],
    dsn: DsnOpt = None,
) -> None:
    """Take back what grant gave: pgbg_admin, pgbg_user and pgbackground_role.

    Examples:
      pgbg revoke reporting
    """
    from pgbg_cli import install
    from pgbg_cli.commands.common import database
    from pgbg_cli.output import printable, say

    with database(dsn) as conn:
        done, notes = install.revoke(conn, role)
        dispatched = conn.execute("SELECT 1 FROM pgbg.meta WHERE key = %s", ("dispatch:" + role,)).fetchone()
    if dispatched:
        say(f"pgbg: the dispatcher still runs as {role} (pg_cron would keep trying): pgbg dispatch disable {role}")
    for note in notes:
        say(f"pgbg: {note}")
    if not done:
        say(f"pgbg: {role} had nothing to revoke")
    for stmt in done:
        typer.echo(printable(stmt) + ";")  # a role name may hold anything


def dispatch(
    action: Annotated[
        DispatchAction,
        typer.Argument(metavar="[ACTION]", case_sensitive=False, show_default=False,
                       help="enable, disable, or status (the default)."),
    ] = DispatchAction.status,
    roles: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ROLE...]", help="The roles (default: every role that may use pgbg here).",
                       show_default=False),
    ] = None,
    fmt: FormatOpt = Format.auto,
    dsn: DsnOpt = None,
) -> None:
    """Have pg_cron start each role's supervisor within seconds, as that role (when enabled).

    Without it, a role's queued jobs start only while that role runs pgbg (launch, list,
    show, wait): after a server restart, or when no worker slot was free at launch, they
    wait for its next command. enable (a superuser; pg_cron must be loaded) schedules
    SELECT pgbg.dispatch() every 5 seconds in this database for each role, run by pg_cron
    in a session of that role itself; disable unschedules it; status shows each role's
    dispatcher and when it last ran.

    Examples:
      pgbg dispatch
      pgbg dispatch enable
      pgbg dispatch disable pgbg_app
    """
    from pgbg_cli import dispatch as core
    from pgbg_cli import output
    from pgbg_cli.commands.common import database

    with database(dsn) as conn:
        if action is DispatchAction.enable:
            done, notes = core.enable(conn, dsn, roles)
            for note in notes:
                output.say(f"pgbg: {note}")
            output.say(f"pgbg: the dispatcher runs every {core.SCHEDULE} for {', '.join(done)} "
                       f"in database {conn.info.dbname}")
            return
        if action is DispatchAction.disable:
            gone = core.disable(conn, dsn, roles)
            output.say(f"pgbg: the dispatcher is off for {', '.join(gone)}" if gone
                       else "pgbg: the dispatcher was not on for any role here")
            return
        found = core.status(conn, dsn)
    output.emit_rows([d.as_dict() for d in found], STATUS_COLUMNS, fmt)


def _on(value: object, row: dict) -> str:
    return "on" if value else "off"


def _ago(value: object, row: dict) -> str:
    from pgbg_cli.durations import format_ms

    if not row.get("on"):
        return ""
    return "not yet" if value is None else f"{format_ms(int(float(str(value))) * 1000)} ago"


def _cron(value: object, row: dict) -> str:
    if value is None:
        return ""
    return f"job {value}" + ("" if row.get("cron_active") else " (inactive)")


STATUS_COLUMNS = [
    Column("role", "ROLE"),
    Column("on", "DISPATCHER", _on),
    Column("last_seen_s", "LAST RAN", _ago),
    Column("can_login", "CAN LOG IN", lambda v, r: "yes" if v else "no"),
    Column("cron_job", "PG_CRON", _cron),
    Column("last_run", "LAST PG_CRON RUN"),
]
