"""The sandbox server for the bench scripts, and a scratch database on it.

``scratch_database()`` makes a database with pg_background and pgbg installed (and roles
granted pgbg, when asked) on entry and drops it (WITH (FORCE)) on exit. The server is the one
``scripts/sandbox.sh dsn admin`` names (``PGBG_SANDBOX_INSTANCE`` and ``PGBG_SANDBOX_SERVER``
choose it, as for the tests), or another superuser URI.

A script never dies with a traceback for want of a server: ``require_server()`` stops it with
one line and exit code 2 when nothing answers; ``sandbox_up()`` starts the sandbox first, for
the scripts that ``make`` runs (``make bench``, ``make chaos``), as ``make`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "sandbox.sh"
NO_SERVER = 2  # exit code: no server to run against


def stop(message: str) -> NoReturn:
    """One line on stderr, named after the script, and exit code 2."""
    print(f"{Path(sys.argv[0]).stem}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(NO_SERVER)


def sandbox(*args: str, db: str | None = None, show: bool = False, fatal: bool = True,
            timeout: float | None = None) -> str:
    """``scripts/sandbox.sh`` with these arguments (for ``PGBG_SANDBOX_DB=db`` when given): its
    output. ``show`` lets its log lines through to stderr. When it fails: one line and exit 2, or
    with ``fatal=False`` a RuntimeError that says the same."""
    env = dict(os.environ, PGBG_SANDBOX_DB=db) if db else None
    res = subprocess.run(["bash", str(SANDBOX), *args], stdout=subprocess.PIPE,
                         stderr=None if show else subprocess.PIPE, text=True, env=env, timeout=timeout)
    if res.returncode == 0:
        return res.stdout.strip()
    said = (res.stderr or "").strip().splitlines()
    message = f"scripts/sandbox.sh {' '.join(args)} failed (exit {res.returncode})" + (f": {said[-1]}" if said else "")
    if fatal:
        stop(message)
    raise RuntimeError(message)


def server_dsn(role: str = "admin", *, db: str | None = None) -> str:
    """The sandbox server's connection string for ``role`` (admin: its superuser)."""
    return sandbox("dsn", role, db=db)


def unreachable(dsn: str) -> str | None:
    """Why nothing answers at ``dsn`` (psycopg's first line), or None when a server does."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def sandbox_hint(target: str = "sandbox") -> str:
    """The make command (``make sandbox``: the one that starts it) for the sandbox server this run uses."""
    chosen = [f"{k}={os.environ[k]}" for k in ("PGBG_SANDBOX_SERVER", "PGBG_SANDBOX_INSTANCE") if os.environ.get(k)]
    return " ".join([*chosen, "make", target])


def require_server(dsn: str, hint: str | None = None) -> None:
    """A server that answers at ``dsn``, or one line that says why not, and exit 2."""
    why = unreachable(dsn)
    if why is not None:
        from pgbg_cli.db import redact

        hint = hint or f"start the sandbox server: {sandbox_hint()}"
        stop(f"cannot connect to {redact(dsn)}: {redact(why)} ({hint})")


def sandbox_up() -> None:
    """The sandbox server running: ``scripts/sandbox.sh start`` (its log on stderr), as ``make
    bench`` does, when nothing answers at its address; one line and exit 2 when that fails."""
    if unreachable(server_dsn()) is not None:
        sandbox("start", show=True)


@dataclass(frozen=True)
class Role:
    """A role a scratch database grants pgbg to (``pgbg grant``), made when missing."""

    name: str
    password: str | None = None  # LOGIN with this password; None: NOLOGIN
    admin: bool = False  # pgbg grant --admin: sees and cancels every role's jobs


@dataclass
class Scratch:
    name: str  # the database's name
    dsn: str  # the scratch database, as the server's superuser
    ext: Any  # pgbg_cli.extension.Extension: the pg_background found there
    keep: bool = False  # set it to keep the database on exit (its name is then printed on stderr)


@contextmanager
def scratch_database(prefix: str, *, server: str | None = None, roles: Sequence[Role] = ()) -> Iterator[Scratch]:
    """A database ``<prefix>_<8 hex digits>`` on ``server`` (a superuser URI; default: the
    sandbox's, read again to drop it, as a restart may move its port), with pg_background and
    pgbg installed and ``roles`` granted pgbg (roles are made when missing and outlive it). It
    is dropped on exit unless ``keep`` was set: then its name is printed on stderr."""
    import psycopg
    from psycopg import sql

    from pgbg_cli import db, extension, install

    url = server or server_dsn()
    require_server(url, None if server is None else "is the server running?")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    scratch = None
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
        params["dbname"] = name
        dsn = psycopg.conninfo.make_conninfo(**params)
        with db.connect(dsn) as conn:
            for role in roles:
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,)).fetchone():
                    login = sql.SQL("NOLOGIN") if role.password is None else sql.SQL("LOGIN PASSWORD {}").format(
                        sql.Literal(role.password))
                    conn.execute(sql.SQL("CREATE ROLE {} ").format(sql.Identifier(role.name)) + login)
            conn.execute("CREATE EXTENSION pg_background SCHEMA public")
            ext = extension.discover(conn)
            install.install(conn, ext)
            for role in roles:
                install.grant(conn, role.name, admin=role.admin)
        scratch = Scratch(name=name, dsn=dsn, ext=ext)
        yield scratch
    finally:
        if scratch is not None and scratch.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with psycopg.connect(server or server_dsn(), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


SCHEMA = ROOT / "pgbg_cli" / "schema"


def routine_text(file: str, header: str) -> str:
    """One routine of a schema file (``pgbg_cli/schema/<file>``), from ``header`` (its ``CREATE OR
    REPLACE`` line) to its closing ``$$;``: for a scratch database's altered copy of it."""
    text = (SCHEMA / file).read_text()
    body = text[text.index(header):]
    return body[:body.index("$$;") + 3]
