"""psql's connection options (-h, -p, -U, -d) and PGBG_DSN, made into one libpq connection string.

The order, as psql has it (``psql -h A -d "host=B"`` connects to B: libpq lets the fields of a
connection string given as the database name override the options before it):

1. ``-d/--dbname`` holding a connection string or URI (it has ``=``, or begins with
   ``postgresql://`` or ``postgres://``): its fields win; ``-h``, ``-p`` and ``-U`` fill in
   what it leaves out. PGBG_DSN is then not read.
2. otherwise ``-h``, ``-p``, ``-U`` and ``-d NAME`` (a database name) override those parts
   of PGBG_DSN (pgbg's own variable: a connection string, a URI or a database name); ``-h``
   also drops its ``hostaddr``, which libpq would connect to instead;
3. libpq fills in whatever is still missing: PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE
   and the service file, .pgpass, its defaults.

Each option may be given before the command (``pgbg -h db1 list``) and after it
(``pgbg list -h db1``); after wins. Imports nothing heavy: the console script uses it
before Typer loads (``cli.dsn_named``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

ENV_DSN = "PGBG_DSN"
CONTEXT_KEY = "pgbg.connection"  # click's ctx.meta: (the -d values, the other ConnOptions) a command was given
_PORT = re.compile(r"\d{1,5}(,\d{1,5})*")  # libpq takes one port per host: 5432,5433


@dataclass(frozen=True)
class ConnOptions:
    """What the command line says about the connection; None where it says nothing."""

    dbname: str | None = None
    host: str | None = None
    port: str | None = None
    username: str | None = None

    def over(self, before: ConnOptions) -> ConnOptions:
        """These options, with ``before``'s where these say nothing (after the command wins)."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(before, **given)

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def is_conninfo(value: str) -> bool:
    """Whether ``-d`` holds a connection string or URI rather than a database name (psql's rule)."""
    return "=" in value or value.startswith(("postgresql://", "postgres://"))


def check_port(value: str | None) -> str | None:
    """The port as given, or a one-line reason it is not one (raised as ValueError)."""
    if value is None:
        return None
    ports = value.strip()
    if not _PORT.fullmatch(ports) or not all(0 < int(p) < 65536 for p in ports.split(",")):
        raise ValueError(f"{value!r} is not a port number (1-65535)")
    return ports


def resolve(options: ConnOptions, env: Mapping[str, str] | None = None) -> str | None:
    """The libpq connection string these options and PGBG_DSN make; None: libpq's defaults alone.

    A connection string is returned as written when nothing is added to it, and when libpq
    cannot read it (``db.connect`` then says why, passwords hidden).
    """
    env = os.environ if env is None else env
    from_env = env.get(ENV_DSN) or None
    dbname = options.dbname or None  # -d "" is no -d, as in psql
    parts = {"host": options.host, "port": options.port, "user": options.username}
    parts = {k: v for k, v in parts.items() if v not in (None, "")}
    if dbname is not None and is_conninfo(dbname):
        written = _fields(dbname)
        if written is None or not parts.keys() - written.keys():
            return dbname  # the options add nothing (or libpq cannot read it, and connect says so)
        return _make({**parts, **written})
    if dbname is None and not parts:
        return from_env if from_env is None or is_conninfo(from_env) else _make({"dbname": from_env})
    base: dict[str, str] | None = {}
    if from_env is not None:
        base = _fields(from_env) if is_conninfo(from_env) else {"dbname": from_env}
        if base is None:
            return from_env  # unreadable: connect reports it
        if "host" in parts:
            base.pop("hostaddr", None)  # libpq would connect to it, whatever -h names
    if dbname is not None:
        parts["dbname"] = dbname
    return _make({**base, **parts})


def _fields(conninfo: str) -> dict[str, str] | None:
    """The fields of a connection string; None if libpq cannot read it."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    except ProgrammingError:
        return None


def _make(parts: dict[str, str]) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", **parts)
