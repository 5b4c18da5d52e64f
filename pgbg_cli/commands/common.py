"""Options shared by every command (sqlite-utils style: declared once, used everywhere)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from pgbg_cli.errors import UsageError
from pgbg_cli.output import Format


def _port(value: str | None) -> str | None:
    from pgbg_cli.connopts import check_port

    try:
        return check_port(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# psql's connection options, on every command and before it (app.py gives each command -d, -h,
# -p and -U; connopts.py says how they, PGBG_DSN and libpq's environment combine). A command's
# ``dsn`` is the connection string they make.
_DSN_HELP = ("Database name, or a connection string or URI (default: PGBG_DSN; README: Connecting). "
             "Repeat it for several targets (launch, list, wait, stats, capacity).")
DsnOpt = Annotated[
    str | None,
    typer.Option("--dbname", "-d", "--dsn", metavar="DBNAME|CONNINFO", help=_DSN_HELP, show_default=False),
]
DsnListOpt = Annotated[
    list[str] | None,
    typer.Option("--dbname", "-d", "--dsn", metavar="DBNAME|CONNINFO", help=_DSN_HELP, show_default=False),
]
HostOpt = Annotated[
    str | None,
    typer.Option("--host", "-h", metavar="HOST", help="Server host name or socket directory.", show_default=False),
]
PortOpt = Annotated[
    str | None,
    typer.Option("--port", "-p", metavar="PORT", callback=_port, help="Server port.", show_default=False),
]
UserOpt = Annotated[
    str | None,
    typer.Option("--username", "-U", metavar="USER", help="Role to connect as.", show_default=False),
]

StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit 4 when the jobs succeeded but one emitted a WARNING.")
]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        "-F",
        metavar="|".join(f.value for f in Format),
        case_sensitive=False,
        help="Output format: auto is a table on a terminal and plain text otherwise.",
    ),
]


def group_option(help_text: str) -> Any:
    """``--group/-G NAME`` (launch, fanout, wait, cancel, list, stats), declared once: each
    command says in ``help_text`` what the group is to it."""
    return Annotated[
        str | None,
        typer.Option("--group", "-G", metavar="NAME", show_default=False, help=help_text),
    ]


@contextmanager
def database(dsn: str | None, *, need_schema: bool = True, describe: str | None = None) -> Iterator[Any]:
    """A connection with pg_background found (and pgbg's schema checked, unless told not to),
    in one round trip after connecting; ``describe``: SQL to describe in the same one."""
    from pgbg_cli import db, preflight

    with db.connection(dsn, pin=False) as conn:
        preflight.check(conn, need_schema=need_schema, sql=describe)
        yield conn


class Renewable:
    """The connection a long wait uses, made again if the server drops it (see jobs.wait)."""

    def __init__(self, conn: Any, dsn: str | None) -> None:
        self.conn = conn
        self.dsn = dsn
        self.made: list[Any] = []

    def renew(self, *users: Any) -> Any:
        """A reconnect function for jobs.wait; the objects in ``users`` get the new connection."""
        from pgbg_cli import db

        def again() -> Any:
            new = db.connect(self.dsn)
            self.made.append(new)
            self.conn = new
            for user in users:
                user.conn = new
            return new

        return again


@contextmanager
def renewable(conn: Any, dsn: str | None) -> Iterator[Renewable]:
    live = Renewable(conn, dsn)
    try:
        yield live
    finally:
        for made in live.made:
            made.close()


def read_sql(sql_arg: str | None, file: Path | None) -> str:
    """SQL from the argument, ``-`` (standard input) or ``--file``; exactly one of them."""
    if sql_arg is not None and file is not None:
        raise UsageError("give the SQL either as an argument or with --file, not both")
    if file is not None:
        if str(file) == "-":
            return sys.stdin.read()
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{file} is not UTF-8 text") from None
    if sql_arg is None:
        raise UsageError("no SQL given: pass it as an argument, with --file FILE, or - for standard input")
    if sql_arg == "-":
        return sys.stdin.read()
    return sql_arg


def exit_for(jobs: list[dict[str, Any]], *, strict: bool = False) -> int:
    """0 when every job succeeded, 1 otherwise; with ``strict``, 4 (WARNED) when every job
    succeeded and one of them emitted a WARNING."""
    if not all(j["state"] == "succeeded" for j in jobs):
        return 1
    if strict:
        from pgbg_cli.errors import WARNED
        from pgbg_cli.messages import with_warnings

        if any(with_warnings(j) for j in jobs):
            return WARNED
    return 0


# Several targets (launch, list, wait, stats, capacity): README, "Several databases and servers".
TargetsFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--targets-file", metavar="FILE",
                 help="Targets, one -d value a line (# comments; - for standard input); repeatable.",
                 show_default=False),
]
ServiceOpt = Annotated[
    list[str] | None,
    typer.Option("--service", metavar="NAME", help="A service of pg_service.conf as a target; repeatable.",
                 show_default=False),
]
AllDatabasesOpt = Annotated[
    bool,
    typer.Option("--all-databases",
                 help="Every database of the target's server where pgbg is installed (the others named, skipped)."),
]


class Chosen:
    """The targets of a command line; ``several``: rows name their target (README)."""

    def __init__(self, found: list[Any], several: bool, failed: list[Any]) -> None:
        self.targets = found
        self.several = several
        self.failed = failed  # servers --all-databases could not ask (targets.Outcome)


def chosen_targets(targets_file: list[Path] | None, service: list[str] | None,
                   all_databases: bool) -> Chosen | None:
    """The targets the command line names: its -d values (app.py keeps them in the context),
    --service, --targets-file, each made every database of its server by --all-databases.
    None when it names one database the usual way: the command's ``dsn`` is that one."""
    from typer._click.globals import get_current_context

    from pgbg_cli.connopts import CONTEXT_KEY, ConnOptions

    names, options = get_current_context().meta.get(CONTEXT_KEY, ([], ConnOptions()))
    if len(names) < 2 and not (targets_file or service or all_databases):
        return None
    from pgbg_cli import targets

    found = targets.chosen(names, options, services=service or [], files=targets_file or [])
    failed: list[Any] = []
    if all_databases:
        found, failed = targets.every_database(found)
    return Chosen(found, True, failed)


def report(outcomes: list[Any]) -> tuple[list[Any], list[Any]]:
    """Say on stderr which targets were skipped and which failed (one line each); the ones that
    answered, and the ones that failed."""
    from pgbg_cli import output

    answered, failed = [], []
    for outcome in outcomes:
        if outcome.ok:
            answered.append(outcome)
        elif outcome.skipped:
            output.say(f"pgbg: skipped {outcome.target.name}: {outcome.error}")
        else:
            output.say(f"pgbg: {outcome.target.name}: {outcome.error}")
            failed.append(outcome)
    return answered, failed


def exit_of_targets(failed: list[Any], otherwise: int = 0) -> int:
    """3 when a target could not be reached or used (the others shown all the same), else ``otherwise``."""
    from pgbg_cli.errors import ENVIRONMENT

    if not failed:
        return otherwise
    codes = {o.exit_code for o in failed}
    return ENVIRONMENT if ENVIRONMENT in codes or len(codes) > 1 else codes.pop()
