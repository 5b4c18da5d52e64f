"""The ``pgbg`` command line: the only place that knows about Typer and exit codes.

Command groups live in ``pgbg_cli.commands``; each core error becomes one line on
stderr and its exit code (see ``errors.EXIT_CODES``), never a traceback. A command's
module is imported, and its Typer command built, only when that command is asked for
(``commands.COMMANDS``): ``pgbg launch`` pays for launch alone; ``--help`` and shell completion
load what they list. ``pgbg_cli.cli`` is the console script's entry point.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer._click.exceptions import (  # Typer vendors click from 0.26 on (pyproject.toml)
    ClickException,
    NoSuchOption,
    UsageError,
)
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Abort

from pgbg_cli import __version__
from pgbg_cli.commands import COMMANDS
from pgbg_cli.commands.common import DsnListOpt, HostOpt, PortOpt, UserOpt
from pgbg_cli.errors import EXIT_CODES, INTERRUPTED, PgbgError
from pgbg_cli.versions import WORKS_WITH

# The end of `pgbg --help`: what a session looks like, and every exit code (README: Exit codes).
ROOT_EXAMPLES = [
    'pgbg launch --label nightly "VACUUM (ANALYZE) orders"',
    "pgbg list --state running",
    "pgbg wait 42:7281990022145993216",
    "pgbg cancel --label 'nightly*'",
    "pgbg capacity --plan 8",
]
EXIT_HELP = [(str(code), text) for code, text in EXIT_CODES.items()]
EXAMPLES_TITLE = "Examples:"


def _write_section(formatter: Any, title: str, lines: list[str]) -> None:
    """A titled block of lines, each kept whole (click's \\b: never rewrapped)."""
    with formatter.section(title):
        formatter.write_text("\b\n" + "\n".join(lines))


class PgbgCommand(TyperCommand):
    """A pgbg command: its help ends with the Examples of its docstring, one invocation a line."""

    examples: list[str] = []

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        # Typer writes a required argument as {NAME}: the usage line says NAME, as man pages do
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _in_context(super().parse_args, ctx, args)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if self.examples:
            _write_section(formatter, EXAMPLES_TITLE.rstrip(":"), self.examples)
        super().format_epilog(ctx, formatter)


class PgbgGroup(TyperGroup):
    """Turns pgbg's errors, database errors, usage errors and Ctrl-C into one line and an exit code;
    builds each command when it is first asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names, without building the commands

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # bare `pgbg`: the help, on stdout, and success (click would call it a usage error)
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help())
            ctx.exit(0)
        return _in_context(super().parse_args, ctx, args)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _write_section(formatter, EXAMPLES_TITLE.rstrip(":"), ROOT_EXAMPLES)
        with formatter.section("Exit codes"):
            formatter.write_dl(EXIT_HELP)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "pgbg"
            hint = f" (see {where} --help)" if exc.exit_code == 2 else ""
            _write(f"pgbg: {_said(exc.format_message())}{hint}")
            sys.exit(exc.exit_code)
        except Abort:
            sys.stderr.write("pgbg: interrupted\n")
            sys.exit(INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PgbgError as exc:
            _fail(exc.message, exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", INTERRUPTED)
        except NotImplementedError as exc:
            if "DateStyle" not in str(exc):  # psycopg reads timestamps in DateStyle ISO only
                raise
            from pgbg_cli.db import datestyle_trouble

            _fail(datestyle_trouble(str(exc).split("DateStyle ", 1)[1].split(":", 1)[0]), 3)
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


def _in_context(parse: Any, ctx: Any, args: list[str]) -> list[str]:
    """click's parser raises some usage errors ("option '-h' requires an argument") without the
    context of the command it parses for: give them it, so the hint names that command's help."""
    try:
        return parse(ctx, args)
    except UsageError as exc:
        if exc.ctx is None:
            exc.ctx = ctx
            exc.cmd = ctx.command
        if isinstance(exc, NoSuchOption) and exc.possibilities:
            exc.possibilities = close_options(exc.option_name, _long_options(ctx))
        raise


def close_options(given: str, options: list[str]) -> list[str]:
    """The options that ``given`` (an unknown ``--name``) may have meant to be. click compares
    them with their dashes, which alone make ``--bogus`` look like ``--host``: the names only, and
    closer than difflib's default (``st`` is not ``host``)."""
    from difflib import get_close_matches

    bare = {option.lstrip("-"): option for option in options}
    return [bare[name] for name in get_close_matches(given.lstrip("-"), list(bare), cutoff=0.7)]


def _long_options(ctx: Any) -> list[str]:
    return [opt for param in ctx.command.get_params(ctx) for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")]


def _said(message: str) -> str:
    """A usage error of click's in pgbg's voice: lower case, no full stop before the hint."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


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
    # Help in click's plain layout: Typer's Rich layout imports Rich and its Markdown support,
    # which doubles the time of `pgbg --help` (README, "Speed": bench/bench_cli.py)
    rich_markup_mode=None,
    help=f"Run and track SQL in PostgreSQL background workers ({WORKS_WITH}).",
    context_settings={"help_option_names": ["--help", "-?"]},  # -h is the host, as in psql
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgbg {__version__}")  # pgbg_cli.cli answers the plain `pgbg --version` alike
        raise typer.Exit()


# ctx.meta key: the connection options given before the command
_BEFORE = "pgbg.connection_before"


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    dbname: DsnListOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    username: UserOpt = None,
) -> None:
    """Run and track SQL in PostgreSQL background workers (pg_background)."""
    from pgbg_cli.connopts import ConnOptions

    ctx.meta[_BEFORE] = (list(dbname or []), ConnOptions(host=host, port=port, username=username))


class _Commands(MutableMapping[str, Any]):
    """The group's commands by name: every name of COMMANDS is there; a command is built
    when it is first read (TyperGroup and click read this mapping as a dict)."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = dict(built)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built


def _build(name: str) -> Any:
    """The click command of one pgbg command, from its module's register()."""
    import importlib

    module = importlib.import_module(f"pgbg_cli.commands.{COMMANDS[name]}")
    one = typer.Typer(add_completion=False, rich_markup_mode=app.rich_markup_mode,
                      pretty_exceptions_enable=False)
    module.register(one)
    one.registered_commands = [info for info in one.registered_commands if info.name == name]
    (info,) = one.registered_commands
    # Docstrings are wrapped for the source; help reflows each paragraph to the terminal,
    # and lists the Examples, one a line, after the options.
    # (info.help, not the function's __doc__, which stays as written: commands are built anew
    # for each group made, by tests for one)
    examples: list[str] = []
    if info.help is None and info.callback is not None and info.callback.__doc__:
        text, examples = split_examples(info.callback.__doc__)
        info.help = _reflow(text)
        if info.short_help is None:  # pgbg --help lists the whole first paragraph, wrapped, not cut at 45
            info.short_help = info.help.split("\n\n", 1)[0]
    info.cls = PgbgCommand
    command = typer.main.get_command(one)
    command.examples = examples
    if any(param.name == "dsn" for param in command.params):
        _add_connection_options(command)
    return command


def _add_connection_options(command: Any) -> None:
    """Give a command psql's -h, -p and -U beside its -d (``dsn``), and hand its callback the
    connection string they make with those given before the command (connopts.resolve).

    -d may be repeated for commands that take several targets (those with --all-databases):
    they read every -d from the context (commands.common.chosen_targets); the others refuse it.
    """
    import inspect

    from typer._click.globals import get_current_context

    at = next(i for i, param in enumerate(command.params) if param.name == "dsn")
    command.params[at:at + 1] = _connection_params()
    inner = command.callback
    several = "all_databases" in inspect.signature(inner).parameters

    def callback(**kwargs: Any) -> Any:
        from dataclasses import replace

        from pgbg_cli.connopts import CONTEXT_KEY, ConnOptions, resolve
        from pgbg_cli.errors import UsageError

        after = ConnOptions(host=kwargs.pop("host"), port=kwargs.pop("port"), username=kwargs.pop("username"))
        meta = get_current_context().meta
        names_before, before = meta.get(_BEFORE, ([], ConnOptions()))
        names = list(kwargs["dsn"] or []) or names_before  # -d after the command replaces those before
        options = after.over(before)
        meta[CONTEXT_KEY] = (names, options)
        if len(names) > 1 and not several:
            raise UsageError(f"-d was given {len(names)} times: {command.name} works on one database "
                             "(launch, list, wait, stats and capacity take several)")
        kwargs["dsn"] = resolve(replace(options, dbname=names[-1] if names else None))
        return inner(**kwargs)

    command.callback = callback


def _connection_params() -> list[Any]:
    """The click options -d (repeatable), -h, -p and -U, declared once (commands.common) for the
    root and each command."""
    one = typer.Typer(add_completion=False, rich_markup_mode=None)

    @one.command()
    def options(dsn: DsnListOpt = None, host: HostOpt = None, port: PortOpt = None,
                username: UserOpt = None) -> None:
        """-d, -h, -p, -U."""

    return list(typer.main.get_command(one).params)


def split_examples(doc: str) -> tuple[str, list[str]]:
    """A docstring's text, and the lines of its last paragraph when that begins with ``Examples:``."""
    import inspect

    text, sep, block = inspect.cleandoc(doc).rpartition("\n\n" + EXAMPLES_TITLE)
    if not sep:
        return inspect.cleandoc(doc), []
    return text, [line.strip() for line in block.splitlines() if line.strip()]


def _reflow(doc: str) -> str:
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
