"""The ``pgbg`` console script: starts fast, then hands over to the Typer app (``app.py``).

``pgbg --version`` is answered here, before Typer is imported (the same line the app's
``--version`` prints; a test compares them). For a command, the connection to the server
is begun here, in a thread, and Typer loads and reads the command line meanwhile
(``db.start_connecting``). ``from pgbg_cli.cli import app`` still gives the Typer app.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def run() -> int:
    """Run the command line and return its exit code (for callers that stay in-process)."""
    if "_PGBG_COMPLETE" in os.environ:  # a shell asks for completions (see pgbg_cli.completions)
        from pgbg_cli.completions import prepare

        prepare()
    try:
        from pgbg_cli.app import app

        # "pgbg" in usage lines and hints, also when run as python -m pgbg_cli
        app(complete_var="_PGBG_COMPLETE", prog_name="pgbg")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C before the app handles it (while Python loads it)
        sys.stderr.write("pgbg: interrupted\n")
        return 130
    return 0


def version_line() -> str:
    from pgbg_cli import __version__

    return f"pgbg {__version__}\n"


def main() -> None:
    """The ``pgbg`` console script."""
    args = sys.argv[1:]
    if args in (["--version"], ["-V"]) and "_PGBG_COMPLETE" not in os.environ:
        sys.stdout.write(version_line())
        code = 0
    else:
        if _connects(args):
            from pgbg_cli import db

            db.start_connecting(dsn_named(args))
        code = run()
    # Leave at once: everything is written and every connection closed by now, and tearing
    # down the interpreter's modules costs tens of milliseconds a run (shell loops notice).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    os._exit(code)


# psql's connection options, each as connopts.ConnOptions names it
_CONNECTION = {"-d": "dbname", "--dbname": "dbname", "--dsn": "dbname", "-h": "host", "--host": "host",
               "-p": "port", "--port": "port", "-U": "username", "--username": "username"}
_HELP = {"--help", "-?"}


def _connects(args: list[str]) -> bool:
    """Whether this command line runs a command (each connects), not help or completion."""
    from pgbg_cli.commands import COMMANDS

    command, _, options = _read(args)
    if command not in COMMANDS or "_PGBG_COMPLETE" in os.environ:
        return False
    return not (_HELP & set(options)) and not _maybe_a_value(options)


def _is_connection_option(arg: str) -> bool:
    name, eq, _ = arg.partition("=")
    return arg in _CONNECTION or (arg.startswith("--") and bool(eq) and name in _CONNECTION) or (
        not arg.startswith("--") and arg[:2] in _CONNECTION)


def _maybe_a_value(options: list[str]) -> bool:
    """Whether a word that reads like -h/-p/-U/-d may be another option's value (``--label
    -p6000``): then nothing is guessed, for the guess would send the password where that value
    points before Typer knew better."""
    for before, arg in zip(options, options[1:], strict=False):
        if (_is_connection_option(arg) and before.startswith("-") and "=" not in before
                and (before in _CONNECTION or not _is_connection_option(before))):
            return True
    return False


def _read(args: list[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """The command a command line names, its connection options (the last of each: after the
    command wins over before it) and its words before ``--``. A guess that may be wrong (``-d``
    as another option's value, say): the command line is read again by Typer."""
    options = args[: args.index("--")] if "--" in args else args
    command = None
    named: dict[str, str] = {}
    i = 0
    while i < len(options):
        arg = options[i]
        name, eq, value = arg.partition("=")
        if arg in _CONNECTION:
            if i + 1 < len(options):
                named[_CONNECTION[arg]] = options[i + 1]
            i += 1  # the value, whatever it looks like
        elif arg.startswith("--") and eq and name in _CONNECTION:
            named[_CONNECTION[name]] = value
        elif not arg.startswith("--") and arg[:2] in _CONNECTION:
            named[_CONNECTION[arg[:2]]] = arg[2:]
        elif command is None and not arg.startswith("-"):
            command = arg
        i += 1
    return command, named, options


def dsn_named(args: list[str]) -> str | None:
    """The connection string a command line names (``-d``, ``-h``, ``-p``, ``-U`` before and
    after the command, PGBG_DSN), as the command will make it (connopts.resolve); a bad port is
    left for the command line to refuse. ``db.connect`` connects anew if the guess was wrong."""
    from pgbg_cli.connopts import ConnOptions, check_port, resolve

    named = _read(args)[1]
    try:
        check_port(named.get("port"))
    except ValueError:
        return None
    return resolve(ConnOptions(**named))


def __getattr__(name: str) -> Any:
    if name == "app":
        from pgbg_cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
