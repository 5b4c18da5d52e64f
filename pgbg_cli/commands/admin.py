"""``pgbg init | grant | revoke``: install pgbg's schema and let roles use it."""

from __future__ import annotations

from typing import Annotated

import typer

from pgbg_cli.commands.common import DsnOpt


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("grant")(grant)
    app.command("revoke")(revoke)


def init(
    check: Annotated[bool, typer.Option("--check", help="Only say whether the schema is present and current.")] = False,
    dsn: DsnOpt = None,
) -> None:
    """Install pgbg's schema (job registry and supervision) or upgrade it in place.

    Safe to run twice or concurrently. With --check: exit 0 when present and current,
    3 when missing or outdated.
    """
    from pgbg_cli import db, extension, install
    from pgbg_cli.output import say

    with db.connection(dsn) as conn:
        ext = extension.discover(conn)
        if check:
            st = install.status(conn)
            say(st.describe())
            raise typer.Exit(0 if st.current else 3)
        st = install.install(conn, ext)
    for action in st.actions or ["nothing to do"]:
        say(f"pgbg: {action}")
    for warning in st.warnings:
        say(f"pgbg: warning: {warning}")
    say(st.describe())


def grant(
    role: Annotated[str, typer.Argument(help="The role to let use pgbg.")],
    admin: Annotated[bool, typer.Option("--admin", help="Also let it see and cancel every role's jobs.")] = False,
    dsn: DsnOpt = None,
) -> None:
    """Give a role what it needs: pgbackground_role and pgbg_user (and pgbg_admin with --admin)."""
    from pgbg_cli import install
    from pgbg_cli.commands.common import database
    from pgbg_cli.output import printable

    with database(dsn) as conn:
        done = install.grant(conn, role, admin=admin)
    for stmt in done:
        typer.echo(printable(stmt) + ";")  # a role name may hold anything


def revoke(
    role: Annotated[str, typer.Argument(help="The role to take pgbg away from.")],
    dsn: DsnOpt = None,
) -> None:
    """Take back what grant gave: pgbg_admin, pgbg_user and pgbackground_role."""
    from pgbg_cli import install
    from pgbg_cli.commands.common import database
    from pgbg_cli.output import printable, say

    with database(dsn) as conn:
        done = install.revoke(conn, role)
    if not done:
        say(f"pgbg: {role} had nothing to revoke")
    for stmt in done:
        typer.echo(printable(stmt) + ";")  # a role name may hold anything
