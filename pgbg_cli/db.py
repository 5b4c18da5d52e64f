"""Connections: libpq's environment, a conninfo string or URI, and passwords kept out of sight.

psycopg is imported here and only here (and by modules that run queries), so that
``pgbg --help`` and ``pgbg --version`` never pay for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from pgbg_cli import __version__
from pgbg_cli.errors import ConnectionProblem, PrivilegeProblem, UsageError

if TYPE_CHECKING:
    import psycopg

APPLICATION_NAME = "pgbg"
# Every statement pgbg runs waits at most this long for a lock, then fails with one line
# (cli.py): nothing pgbg does waits forever on a lock another session holds. A lock_timeout
# the user sets (PGOPTIONS, options= in the DSN) is kept.
LOCK_TIMEOUT_MS = 5000
# pgbg's own statements run with this search_path, so that nothing a user created (a
# function or operator in public that matches better than the built-in one) runs in their
# place with the user's rights. The user's own path is kept for what is theirs: parsing a
# job's SQL and the path its worker runs with (``user_search_path``).
PINNED_PATH = "pg_catalog, pg_temp"
_user_paths: WeakKeyDictionary[Any, str] = WeakKeyDictionary()

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide passwords in a message: URI user:password@, password=..., and any known secret."""
    text = _URI_PASSWORD.sub(r"\1***\3", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _secrets_of(dsn: str | None) -> tuple[str, ...]:
    import os

    found = [os.environ.get("PGPASSWORD", "")]
    if dsn:
        # as written, too: libpq quotes a malformed token (say, bad percent-encoding) verbatim
        found += [m.group(2) for m in _URI_PASSWORD.finditer(dsn)]
        found += [m.group(2).strip("'") for m in _KV_PASSWORD.finditer(dsn)]
        try:
            from psycopg.conninfo import conninfo_to_dict

            found.append(str(conninfo_to_dict(dsn).get("password") or ""))
        except Exception:  # an unparsable DSN has its own error message
            pass
    return tuple(s for s in found if s)


def _hide_tokens(message: str, dsn: str | None) -> str:
    """A parse error of libpq quotes a token of the string (``missing "=" after "word"``); one
    written after a password may be the rest of it (``password=two words``): hidden."""
    after = re.split(r"password", dsn or "", maxsplit=1, flags=re.IGNORECASE)
    if len(after) < 2:
        return message
    return re.sub(r'"([^"]+)"', lambda m: '"***"' if m.group(1) in after[1] and m.group(1) != "=" else m.group(0),
                  message)


def first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else str(text).strip()


# Reads the session's search_path and pins pgbg's. A statement is parsed before it runs,
# so pgbg's other statements go after this one, never in it.
PIN_SQL = ("SELECT pg_catalog.current_setting('search_path') AS path, "
           "pg_catalog.set_config('search_path', %s, false) AS pinned")


def connect(dsn: str | None, *, autocommit: bool = True, pin: bool = True) -> psycopg.Connection[Any]:
    """Open a connection with libpq defaults, ``application_name`` set to pgbg.

    The search_path is pinned (``PIN_SQL`` with ``(PINNED_PATH,)``) unless ``pin`` is false:
    then the caller runs that before any statement of its own and hands its row to ``pinned``.
    A connection ``start_connecting`` began for the same ``dsn`` is taken over.
    """
    import psycopg

    secrets = _secrets_of(dsn)
    params = _params(dsn, secrets)
    try:
        conn = _take_early(dsn) if autocommit else None
        if conn is None:
            conn = _open(params, autocommit=autocommit)
        if pin:
            pinned(conn, conn.execute(PIN_SQL, (PINNED_PATH,)).fetchone())
    except psycopg.OperationalError as exc:
        message = redact(_connection_reason(exc), secrets)
        if "permission denied" in message.lower():
            raise PrivilegeProblem(f"cannot connect: {message}") from None
        raise ConnectionProblem(
            f"cannot connect to PostgreSQL: {message} "
            "(set -h, -p, -U, -d, PGBG_DSN or the PG* environment variables)"
        ) from None
    return conn


def _params(dsn: str | None, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """libpq's parameters for ``dsn``, with pgbg's application_name, connect_timeout, lock_timeout and
    client_encoding."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn or "")
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid connection string: {_hide_tokens(redact(first_line(exc), secrets), dsn)}") \
            from None
    params.setdefault("application_name", APPLICATION_NAME)
    params.setdefault("connect_timeout", 10)
    # pgbg's own session speaks UTF-8 whatever PGCLIENTENCODING says: under SQL_ASCII psycopg
    # hands text over as bytes (a job's text reaches the server in the database's encoding either way)
    params["client_encoding"] = "UTF8"
    params["options"] = with_lock_timeout(params.get("options") or os.environ.get("PGOPTIONS", ""))
    return params


def _open(params: dict[str, Any], *, autocommit: bool = True) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import set_json_loads

    conn = psycopg.connect(autocommit=autocommit, row_factory=dict_row, **params)
    # jsonb numbers (stored --result rows) keep every digit: decimals, not floats
    set_json_loads(_exact_json_loads, conn)
    return conn


# The connection start_connecting began: {"dsn", "thread", "result"}.
_early: dict[str, Any] = {}


def start_connecting(dsn: str | None) -> None:
    """Begin connecting to ``dsn`` in a thread, while the command line is still being read.

    The console script calls this before it loads Typer (``cli.main``), with the DSN that
    the command line names (--dsn, else PGBG_DSN): the server starts the session and checks
    the password meanwhile, which on a server far away is several network round trips.
    ``connect`` then takes the connection over when it is asked for that same DSN; a
    failure is raised there, as if it had happened there. Any other DSN is connected anew.
    """
    import threading

    try:
        params = _params(dsn)
    except UsageError:
        return  # connect reports it
    result: dict[str, Any] = {}

    def work() -> None:
        import signal

        if hasattr(signal, "pthread_sigmask"):  # Ctrl-C is the main thread's (launch holds it there)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            result["conn"] = _open(params)
        except BaseException as exc:  # handed to connect(), which reports it
            result["error"] = exc

    thread = threading.Thread(target=work, name="pgbg-connect", daemon=True)
    _early.update(dsn=dsn or "", thread=thread, result=result)
    thread.start()


def _take_early(dsn: str | None) -> psycopg.Connection[Any] | None:
    """The connection start_connecting began for ``dsn``, once (targets connect from threads)."""
    if _early.get("dsn") != (dsn or ""):
        return None  # none begun, or for another DSN (another target, or the guess was wrong)
    try:
        early = {key: _early.pop(key) for key in ("dsn", "thread", "result")}  # pop: atomic under the GIL
    except KeyError:
        return None  # another thread took it
    early["thread"].join()
    if "error" in early["result"]:
        raise early["result"]["error"]
    return early["result"]["conn"]


def on_same_server(conn: psycopg.Connection[Any], dsn: str | None, **changes: str) -> str:
    """``dsn`` with ``changes`` (another ``dbname``), pinned to the server ``conn`` reached.

    A connection string may name several hosts (``host=a,b``, a service, ``PGHOST``), balance
    between them (``load_balance_hosts=random``) or pick by role (``target_session_attrs``): a
    second connection from it may reach another server than the first. This one names the
    host, address and port of ``conn`` only.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn or "")
    info = conn.info
    params["host"], params["port"] = info.host, str(info.port)
    try:
        hostaddr = info.hostaddr  # the address connected to; empty over a unix socket
    except psycopg.NotSupportedError:  # libpq < 12
        hostaddr = ""
    if hostaddr:
        params["hostaddr"] = hostaddr
    else:
        params.pop("hostaddr", None)
    params.pop("load_balance_hosts", None)
    params.update(changes)
    return make_conninfo(**params)


def pinned(conn: psycopg.Connection[Any], row: Any) -> None:
    """Remember the user's search_path that a ``PIN_SQL`` row read."""
    _user_paths[conn] = row["path"] if isinstance(row, dict) else row[0]


def user_search_path(conn: psycopg.Connection[Any]) -> str:
    """The search_path the user's session had before pgbg pinned its own."""
    return _user_paths.get(conn, PINNED_PATH)


def datestyle_trouble(style: str) -> str:
    """The one line for a session whose DateStyle psycopg cannot read timestamps in (a role's or
    database's setting, PGOPTIONS). pgbg does not change it: the jobs it starts inherit it."""
    return (f"dates are read in DateStyle ISO only, and this session's is {style}: run pgbg with "
            "PGOPTIONS='-c DateStyle=ISO' (or ALTER ROLE ... SET DateStyle = 'ISO, DMY')")


def check_dates(conn: psycopg.Connection[Any]) -> None:
    """Refuse, before anything is queued, a session whose job rows pgbg could not read back
    (the server reported its DateStyle when it connected: no round trip)."""
    style = conn.info.parameter_status("DateStyle") or "ISO"
    if not style.upper().startswith("ISO"):
        raise ConnectionProblem(datestyle_trouble(repr(style)))


def with_lock_timeout(options: str) -> str:
    """libpq ``options`` with pgbg's lock_timeout added, unless they set one already."""
    if "lock_timeout" in options:
        return options
    return f"{options} -c lock_timeout={LOCK_TIMEOUT_MS}".strip()


def _exact_json_loads(data: str | bytes) -> Any:
    import decimal
    import json

    return json.loads(data, parse_float=decimal.Decimal)


def _connection_reason(exc: Exception) -> str:
    """libpq's multi-line failure folded into one line, most specific part kept."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) if lines else exc.__class__.__name__


@contextmanager
def connection(dsn: str | None, *, pin: bool = True) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(dsn, pin=pin)
    try:
        yield conn
    finally:
        conn.close()


def server_version(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version)


def user_agent() -> str:
    return f"pgbg {__version__}"
