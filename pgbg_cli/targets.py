"""Several targets in one invocation: which databases a command talks to, and talking to each
at once (one thread and one connection per target).

A target is one database of one server, named on every row the command prints. Targets come
from repeated ``-d`` (each read like psql's ``-d``, with ``-h``, ``-p``, ``-U`` and PGBG_DSN
as ``connopts`` says), ``--service NAME`` (a service of pg_service.conf) and ``--targets-file``
(one ``-d`` value a line); ``--all-databases`` turns each into every database of its server
that has pgbg, skipping the others with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from pgbg_cli.connopts import ConnOptions, is_conninfo, resolve
from pgbg_cli.errors import ENVIRONMENT, PgbgError, UsageError

T = TypeVar("T")
SEPARATOR = "/"  # TARGET/ID:COOKIE: the handle of a job on one target of several
# At most this many targets are talked to at once (each holds a connection meanwhile):
# --all-databases on a server of hundreds of databases must not take all its max_connections.
AT_ONCE = 16


@dataclass(frozen=True)
class Target:
    name: str
    dsn: str | None
    # made by --all-databases: if pgbg cannot be used there, the database is skipped, not failed
    optional: bool = False


@dataclass
class Outcome(Generic[T]):
    """What one target gave: a value, or why it could not (``error``; ``skipped`` for a
    database --all-databases found without pgbg)."""

    target: Target
    value: T | None = None
    error: str | None = None
    exit_code: int = 0
    skipped: bool = False
    unreachable: bool = False  # the error is that of connecting (else: reached, but not usable)

    @property
    def ok(self) -> bool:
        return self.error is None


def read_file(path: Path) -> list[str]:
    """The targets of a file: one ``-d`` value a line; blank lines and ``#`` comments left out."""
    try:
        text = path.read_text(encoding="utf-8") if str(path) != "-" else _stdin()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    found = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\x00" in line:  # libpq would read the connection string only up to it
            where = "standard input" if str(path) == "-" else str(path)
            raise UsageError(f"{where} line {n}: the target contains a NUL byte")
        found.append(line)
    return found


def _stdin() -> str:
    import sys

    return sys.stdin.read()


def chosen(dbnames: Iterable[str], options: ConnOptions, *, services: Iterable[str] = (),
           files: Iterable[Path] = ()) -> list[Target]:
    """The targets a command line names, in its order; none named: the one libpq's defaults and
    PGBG_DSN give. Two targets of one name are told apart by ``#2``, ``#3``..."""
    specs: list[str | None] = [*dbnames, *(f"service={s}" for s in services)]
    for path in files:
        found = read_file(path)
        if not found:
            raise UsageError(f"{path} names no target")
        specs += found
    if not specs:
        specs = [None]
    named: list[Target] = []
    seen: dict[str, int] = {}
    for spec in specs:
        dsn = resolve(replace(options, dbname=spec))
        name = name_of(spec, dsn)
        seen[name] = seen.get(name, 0) + 1
        named.append(Target(name if seen[name] == 1 else f"{name}#{seen[name]}", dsn))
    return named


def name_of(spec: str | None, dsn: str | None) -> str:
    """A short name for a target: the database name as given, a service's name, else
    ``host:port/dbname`` from its connection string (never a password)."""
    if spec is not None and not is_conninfo(spec):
        return spec
    from psycopg.conninfo import conninfo_to_dict

    try:
        fields = conninfo_to_dict(dsn or "")
    except Exception:  # unreadable: connecting says why
        import re

        from pgbg_cli.db import redact

        # what follows password= may all be the password (password=two words): none of it
        return redact(re.sub(r"(?is)(password\s*=).*", r"\1***", spec or dsn or "default"))
    if "service" in fields:
        return str(fields["service"]) + (f"/{fields['dbname']}" if "dbname" in fields else "")
    host = str(fields.get("host") or "")
    where = host + (f":{fields['port']}" if "port" in fields else "")
    db = str(fields.get("dbname") or fields.get("user") or "")
    return f"{where}/{db}" if where and db else (where or db or "default")


def split_handle(text: str) -> tuple[str | None, str]:
    """``TARGET/ID:COOKIE`` into its target's name and its handle; no ``/``: no target."""
    name, sep, handle = text.strip().rpartition(SEPARATOR)
    return (name, handle) if sep else (None, text)


def every_database(servers: list[Target]) -> tuple[list[Target], list[Outcome[Any]]]:
    """Each database of each server (at once) as an optional target, named ``dbname`` (or
    ``SERVER/dbname`` with several servers); and the servers that could not be asked."""
    from pgbg_cli import db, queries

    def ask(server: Target, conn: Any) -> tuple[str, list[str]]:
        # each database on the server this connection reached, whatever host list led there
        return (db.on_same_server(conn, server.dsn),
                [row["datname"] for row in conn.execute(queries.text("every_database")).fetchall()])

    listed = each(servers, ask, prepare=lambda _, conn: db.pinned(conn, conn.execute(
        db.PIN_SQL, (db.PINNED_PATH,)).fetchone()))
    found: list[Target] = []
    failed: list[Outcome[Any]] = []
    for outcome in listed:
        if not outcome.ok:
            failed.append(outcome)
            continue
        server = outcome.target
        reached, dbnames = outcome.value or (server.dsn, [])
        for dbname in dbnames:
            name = dbname if len(servers) == 1 else f"{server.name}{SEPARATOR}{dbname}"
            found.append(Target(name, _with_dbname(reached, dbname), optional=True))
    return found, failed


def _with_dbname(dsn: str | None, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn or "", dbname=dbname)


def each(targets: list[Target], work: Callable[[Target, Any], T], *,
         prepare: Callable[[Target, Any], Any] | None = None) -> list[Outcome[T]]:
    """``work(target, conn)`` on every target at once (at most AT_ONCE at a time), one thread and
    one connection each; outcomes in the targets' order. ``prepare(target, conn)`` runs first
    (say, preflight.check): a failure there on an optional target skips it. A target that fails
    says why and leaves the others be."""
    outcomes: list[Outcome[T] | None] = [None] * len(targets)
    crashed: list[BaseException] = []

    turns = threading.BoundedSemaphore(AT_ONCE)

    def one(at: int, target: Target) -> None:
        try:
            with turns:
                outcomes[at] = _one(target, work, prepare)
        except BaseException as exc:  # a bug: raised again in the main thread
            crashed.append(exc)

    if len(targets) == 1:  # no thread for one: Ctrl-C and the early connection behave as ever
        one(0, targets[0])
    else:
        threads = [threading.Thread(target=one, args=(i, t), name=f"pgbg-target-{i}", daemon=True)
                   for i, t in enumerate(targets)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if crashed:
        raise crashed[0]
    return [o for o in outcomes if o is not None]


def _one(target: Target, work: Callable[[Target, Any], T],
         prepare: Callable[[Target, Any], Any] | None) -> Outcome[T]:
    from pgbg_cli import db

    conn = None
    try:
        try:
            conn = db.connect(target.dsn, pin=prepare is None)
            if prepare is not None:
                prepare(target, conn)
        except Exception as exc:
            message, code = _reason(exc)
            return Outcome(target, error=message, exit_code=code, skipped=target.optional,
                           unreachable=conn is None)
        try:
            return Outcome(target, value=work(target, conn))
        except Exception as exc:
            message, code = _reason(exc)
            return Outcome(target, error=message, exit_code=code)
    finally:
        if conn is not None:
            conn.close()


def _reason(exc: Exception) -> tuple[str, int]:
    """One line and an exit code for what went wrong on a target (as the command line says it)."""
    if isinstance(exc, PgbgError):
        return exc.message, exc.exit_code
    if type(exc).__module__.startswith("psycopg"):
        from pgbg_cli.db import first_line, redact

        code = getattr(getattr(exc, "diag", None), "sqlstate", None)
        return f"database error{f' [{code}]' if code else ''}: {redact(first_line(exc))}", ENVIRONMENT
    raise exc
