"""The ``pgbg`` console script: starts fast, then hands over to the Typer app (``app.py``).

``pgbg --version`` is answered here, before Typer is imported (the same line the app's
``--version`` prints; a test compares them). ``from pgbg_cli.cli import app`` still gives
the Typer app.
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
    if sys.argv[1:] in (["--version"], ["-V"]) and "_PGBG_COMPLETE" not in os.environ:
        sys.stdout.write(version_line())
        code = 0
    else:
        code = run()
    # Leave at once: everything is written and every connection closed by now, and tearing
    # down the interpreter's modules costs tens of milliseconds a run (shell loops notice).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    os._exit(code)


def __getattr__(name: str) -> Any:
    if name == "app":
        from pgbg_cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
