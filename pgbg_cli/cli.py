"""The ``pgbg`` command: the only place that knows about Typer and exit codes.

Command groups live in ``pgbg_cli.commands``; each core error becomes one line on
stderr and its exit code (see ``errors.EXIT_CODES``), never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pgbg_cli import __version__
from pgbg_cli.errors import EXIT_CODES, PgbgError
from pgbg_cli.versions import WORKS_WITH

EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items()) + "."


try:  # Typer 0.29 vendors click; older releases depend on it
    from typer._click.exceptions import ClickException
    from typer.exceptions import Abort
except ImportError:  # pragma: no cover
    from click.exceptions import Abort, ClickException


class PgbgGroup(TyperGroup):
    """Turns pgbg's errors, database errors, usage errors and Ctrl-C into one line and an exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "pgbg"
            hint = f" (see {where} --help)" if exc.exit_code == 2 else ""
            _write(f"pgbg: {exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except Abort:
            sys.stderr.write("pgbg: interrupted\n")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PgbgError as exc:
            _fail(exc.message, exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                from pgbg_cli.db import LOCK_TIMEOUT_MS, first_line, redact

                code = getattr(getattr(exc, "diag", None), "sqlstate", None)
                if code == "55P03":
                    _fail(f"a lock pgbg needs is held by another session (waited {LOCK_TIMEOUT_MS // 1000} s, "
                          "lock_timeout): nothing was changed; see pg_locks for who holds it, then retry", 3)
                from pgbg_cli.errors import extension_trouble

                trouble = extension_trouble(code, str(exc))
                if trouble:
                    _fail(trouble, 3)
                where = f" [{code}]" if code else ""
                _fail(f"database error{where}: {redact(first_line(exc))}", 3)
            raise


def _write(line: str) -> None:
    """One line on stderr, escaped: messages quote what users typed and what the server said."""
    from pgbg_cli.output import printable

    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def _fail(message: str, code: int) -> None:
    _write(f"pgbg: {message}")
    raise typer.Exit(code)


app = typer.Typer(
    name="pgbg",
    cls=PgbgGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    help=f"Run and track SQL in PostgreSQL background workers ({WORKS_WITH}).",
    epilog=EXIT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgbg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run and track SQL in PostgreSQL background workers (pg_background)."""


def _register() -> None:
    from pgbg_cli.commands import admin, capacity, doctor, jobs, launch, stats

    for module in (launch, jobs, capacity, stats, admin, doctor):
        module.register(app)
    # Docstrings are wrapped for the source; help reflows each paragraph to the terminal.
    for info in app.registered_commands:
        if info.callback is not None and info.callback.__doc__:
            info.callback.__doc__ = _reflow(info.callback.__doc__)


def _reflow(doc: str) -> str:
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


_register()


def run() -> int:
    """Run the command line and return its exit code (for callers that stay in-process)."""
    if "_PGBG_COMPLETE" in os.environ:  # a shell asks for completions (see pgbg_cli.completions)
        from pgbg_cli.completions import prepare

        prepare()
    try:
        app(complete_var="_PGBG_COMPLETE")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def main() -> None:
    """The ``pgbg`` console script."""
    code = run()
    # Leave at once: everything is written and every connection closed by now, and tearing
    # down the interpreter's modules costs tens of milliseconds a run (shell loops notice).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    os._exit(code)
