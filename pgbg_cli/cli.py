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
    from pgbg_cli.app import app

    try:
        app(complete_var="_PGBG_COMPLETE")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
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


def _connects(args: list[str]) -> bool:
    """Whether this command line runs a command (each connects), not help or completion."""
    from pgbg_cli.commands import COMMANDS

    if not args or args[0] not in COMMANDS or "_PGBG_COMPLETE" in os.environ:
        return False
    options = args[: args.index("--")] if "--" in args else args
    return not ({"-h", "--help"} & set(options))


def dsn_named(args: list[str]) -> str | None:
    """The DSN a command line names, as its --dsn/-d option reads it (the last one given),
    else PGBG_DSN. A guess that may be wrong (``-d`` as another option's value, say):
    ``db.connect`` then connects anew."""
    named = None
    i = 0
    while i < len(args) and args[i] != "--":
        arg = args[i]
        if arg in ("--dsn", "-d"):
            named = args[i + 1] if i + 1 < len(args) else None
            i += 1  # the value, whatever it looks like
        elif arg.startswith("--dsn="):
            named = arg[len("--dsn="):]
        elif arg.startswith("-d") and not arg.startswith("--"):
            named = arg[2:]
        i += 1
    return named if named is not None else (os.environ.get("PGBG_DSN") or None)


def __getattr__(name: str) -> Any:
    if name == "app":
        from pgbg_cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
