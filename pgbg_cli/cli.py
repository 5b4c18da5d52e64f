"""The ``pgbg`` console script: starts fast, then hands over to the Typer app (``app.py``).

``pgbg --version`` is answered here, before Typer is imported (the same line the app's
``--version`` prints; a test compares them). For a command, the connection to the server
is begun here, in a thread, and Typer loads and reads the command line meanwhile
(``db.start_connecting``). ``from pgbg_cli.cli import app`` still gives the Typer app.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any


def run() -> int:
    """Run the command line and return its exit code (for callers that stay in-process)."""
    launching = sys.modules.get("pgbg_cli.launching")
    if launching is not None:
        launching.QUEUED.clear()  # the jobs of an earlier run in this process
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
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            raise
        return _unwritable(exc)
    return 0


def version_line() -> str:
    from pgbg_cli import __version__

    return f"pgbg {__version__}\n"


# What writing to a stream fails with: a full disk or quota, a file too large, an I/O error.
# pgbg's commands write no file of their own (the files they read fail as usage errors).
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


class _Messages:
    """stderr that drops what it cannot write (``2>`` a full disk): a lost message must not turn
    into a traceback or change the exit code, which still tells what happened."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRORS:
                raise
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno not in _WRITE_ERRORS:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _standard_streams() -> int | None:
    """Standard streams as pgbg needs them, before anything opens a file that would take a closed
    one's number. A stream the shell closed (``<&-``, ``>&-``, ``2>&-``) is None to Python: closed
    stdin reads as empty, closed stderr drops the messages (the exit code still tells), and closed
    stdout is refused at once with exit 2, nothing done: a launch's handle would be lost."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (it lives as long as pgbg)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    sys.stderr = _Messages(sys.stderr)
    if sys.stdout is None:
        from pgbg_cli.errors import USAGE

        sys.stderr.write("pgbg: standard output is closed: nothing done (redirect it to /dev/null to drop "
                         "the output)\n")
        sys.stderr.flush()
        return USAGE
    return None


def _unwritable(exc: OSError) -> int:
    """Standard output cannot take what pgbg writes (a full disk): one line, exit 3. Jobs queued
    meanwhile are named (their handles may not have been written): else they would be launched again."""
    from pgbg_cli.errors import ENVIRONMENT

    launching = sys.modules.get("pgbg_cli.launching")  # not loaded: nothing was queued
    queued = list(getattr(launching, "QUEUED", []))
    said = ""
    if queued:
        jobs = f"job {queued[0]} was" if len(queued) == 1 else f"{len(queued)} jobs were"
        same = " (with the same targets)" if any("/" in handle for handle in queued) else ""
        said = (f"; {jobs} queued all the same (do not launch {'it' if len(queued) == 1 else 'them'} again): "
                f"pgbg wait {' '.join(queued)}{same}")
    sys.stderr.write(f"pgbg: cannot write to standard output: {exc.strerror}{said}\n")
    sys.stderr.flush()
    return ENVIRONMENT


def main() -> None:
    """The ``pgbg`` console script."""
    args = sys.argv[1:]
    closed = _standard_streams()
    if closed is not None:
        os._exit(closed)
    code = 0
    try:
        if args in (["--version"], ["-V"]) and "_PGBG_COMPLETE" not in os.environ:
            sys.stdout.write(version_line())
        else:
            if _connects(args):
                from pgbg_cli import db

                db.start_connecting(dsn_named(args))
            code = run()
        # Leave at once: everything is written and every connection closed by now, and tearing
        # down the interpreter's modules costs tens of milliseconds a run (shell loops notice).
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    except OSError as exc:  # what was left to write could not be (a full disk)
        if exc.errno not in _WRITE_ERRORS:
            raise
        code = code or _unwritable(exc)
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
