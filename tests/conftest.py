"""Fixtures: a real PostgreSQL + pg_background sandbox server, fresh databases per run.

The server is the project's own (scripts/sandbox.sh); PGBG_SANDBOX_SERVER picks which
(pg18-bg20 by default: PostgreSQL 18 + pg_background 2.0.3; pg18-bg18, pg17-bg18 and
pg15-bg18 run pg_background 1.8). Set PGBG_TEST_DSN to a superuser URI to use another
server. A server that does not answer stops the run at once, loudly (pytest.exit),
instead of failing or skipping hundreds of tests.

Tests that need a newer pg_background say so with ``@pytest.mark.pg_background("2.0")``:
on an older server they are skipped, with the version the server has as the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "sandbox.sh"
SERVER = os.environ.get("PGBG_SANDBOX_SERVER") or "pg18-bg20"
APP_PASSWORD = os.environ.get("PGBG_SANDBOX_APP_PASSWORD", "sandbox-app-secret")

os.environ.setdefault("COLUMNS", "200")  # stable Rich/tabulate widths
os.environ["NO_COLOR"] = "1"


def _sandbox(*args: str) -> str:
    return subprocess.run(
        ["bash", str(SANDBOX), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _with_db(uri: str, dbname: str, user: str | None = None, password: str | None = None) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(uri)
    params["dbname"] = dbname
    if user:
        params["user"] = user
        params["password"] = password
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def server_dsn() -> str:
    dsn = os.environ.get("PGBG_TEST_DSN")
    if not dsn:
        try:
            _sandbox("start")
            dsn = _sandbox("dsn", "admin")
        except subprocess.CalledProcessError as exc:
            pytest.exit(f"could not start the sandbox server {SERVER}:\n{exc.stderr}", returncode=3)
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10):
            pass
    except psycopg.Error as exc:
        pytest.exit(f"the test server does not answer: {exc}", returncode=3)
    return dsn


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class ServerFeatures:
    """What the test server runs: its PostgreSQL major version and pg_background's version."""

    server: str  # the sandbox server's name, or "PGBG_TEST_DSN"
    pg_major: int
    extversion: str  # as pg_extension.extversion says it: "2.0", "1.8"

    def ext_at_least(self, version: str) -> bool:
        return _version_key(self.extversion) >= _version_key(version)


@pytest.fixture(scope="session")
def server_features(server_dsn: str) -> ServerFeatures:
    """The server's versions: the one installed in its database, else the one CREATE EXTENSION installs."""
    import psycopg

    with psycopg.connect(server_dsn, connect_timeout=10) as conn:
        pg_major = int(conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()[0])
        ext = conn.execute(
            "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'pg_background'),"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_background'))"
        ).fetchone()[0]
    if ext is None:
        pytest.exit("the test server has no pg_background extension", returncode=3)
    return ServerFeatures("PGBG_TEST_DSN" if os.environ.get("PGBG_TEST_DSN") else SERVER, pg_major, ext)


@pytest.fixture(scope="session")
def extversion(server_features: ServerFeatures) -> str:
    """pg_background's version on the test server, e.g. "2.0" or "1.8"."""
    return server_features.extversion


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pg_background(version): needs at least this pg_background version (else skipped, saying why)")


@pytest.fixture(autouse=True)
def _needs_pg_background(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("pg_background")
    if marker is None:
        return
    features: ServerFeatures = request.getfixturevalue("server_features")
    if not features.ext_at_least(marker.args[0]):
        pytest.skip(f"needs pg_background >= {marker.args[0]}; {features.server} has {features.extversion}")


def _make_db(server_dsn: str, name: str, *, init: bool) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for role, password in (("pgbg_app", APP_PASSWORD), ("pgbg_plain", APP_PASSWORD),
                               ("pgbg_other", APP_PASSWORD), ("pgbg_boss", APP_PASSWORD)):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)))
    db_dsn = _with_db(server_dsn, name)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_background")
        conn.execute("GRANT CREATE ON SCHEMA public TO pgbg_app, pgbg_other, pgbg_boss")
        conn.execute("GRANT pgbackground_role TO pgbg_app")
        conn.execute("REVOKE pgbackground_role FROM pgbg_plain")
    if init:
        from pgbg_cli import db, extension, install

        conn = db.connect(db_dsn)
        try:
            install.install(conn, extension.discover(conn))
            install.grant(conn, "pgbg_app")
            install.grant(conn, "pgbg_other")
            install.grant(conn, "pgbg_boss", admin=True)
        finally:
            conn.close()
    return db_dsn


def _drop_db(server_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for _ in range(50):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
            )
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                return
            except psycopg.Error:
                time.sleep(0.1)


@contextmanager
def fresh_database(server_dsn: str, prefix: str) -> Iterator[dict[str, str]]:
    """A new database with pg_background and pgbg's schema, dropped afterwards; DSNs per role."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _make_db(server_dsn, name, init=True)
    try:
        yield {
            "admin": admin,
            "app": _with_db(server_dsn, name, "pgbg_app", APP_PASSWORD),
            "other": _with_db(server_dsn, name, "pgbg_other", APP_PASSWORD),
            "boss": _with_db(server_dsn, name, "pgbg_boss", APP_PASSWORD),
            "plain": _with_db(server_dsn, name, "pgbg_plain", APP_PASSWORD),
            "name": name,
        }
    finally:
        _drop_db(server_dsn, name)


@contextmanager
def sql_runner(dsn: str) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """``run(query, params)`` on one autocommit connection; rows as dicts."""
    import psycopg
    from psycopg.rows import dict_row

    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)

    def run(query: str, params: Any = None) -> list[dict[str, Any]]:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    try:
        yield run
    finally:
        conn.close()


@pytest.fixture(scope="session")
def test_db(server_dsn: str) -> Iterator[dict[str, str]]:
    """A fresh database with pg_background and pgbg's schema; DSNs for each test role."""
    with fresh_database(server_dsn, "pgbg_test") as dsns:
        yield dsns


@pytest.fixture(scope="session")
def bare_db(server_dsn: str) -> Iterator[dict[str, str]]:
    """A fresh database with pg_background but without pgbg's schema."""
    name = f"pgbg_bare_{uuid.uuid4().hex[:8]}"
    admin = _make_db(server_dsn, name, init=False)
    yield {
        "admin": admin,
        "app": _with_db(server_dsn, name, "pgbg_app", APP_PASSWORD),
        "plain": _with_db(server_dsn, name, "pgbg_plain", APP_PASSWORD),
        "name": name,
    }
    _drop_db(server_dsn, name)


@pytest.fixture
def admin_dsn(test_db: dict[str, str]) -> str:
    return test_db["admin"]


@pytest.fixture
def app_dsn(test_db: dict[str, str]) -> str:
    return test_db["app"]


@pytest.fixture
def sql_admin(test_db: dict[str, str]) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """Run SQL as the superuser in the test database; returns rows as dicts."""
    with sql_runner(test_db["admin"]) as run:
        yield run


@pytest.fixture
def max_running(sql_admin: Callable[..., list[dict[str, Any]]]) -> Iterator[Callable[[int], None]]:
    """Set pgbg.settings max_running_per_role for one test; restored afterwards."""
    old = sql_admin("SELECT value FROM pgbg.settings WHERE name = 'max_running_per_role'")[0]["value"]

    def set_(n: int) -> None:
        sql_admin("UPDATE pgbg.settings SET value = %s WHERE name = 'max_running_per_role'", (str(n),))

    yield set_
    set_(int(old))


def launch_handle(cli: Callable[..., Any], dsn: str, sql: str, *args: str) -> str:
    """``pgbg launch`` in-process; the handle it printed."""
    res = cli("launch", *args, sql, dsn=dsn)
    assert res.exit_code == 0, res
    return res.stdout.strip()


def job_row(sql_admin: Callable[..., list[dict[str, Any]]], handle: str) -> dict[str, Any]:
    """The registry row of a handle, read as the superuser."""
    job_id, cookie = handle.split(":")
    return sql_admin("SELECT * FROM pgbg.job WHERE id = %s AND cookie = %s", (int(job_id), int(cookie)))[0]


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.exit_code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run pgbg in-process (Typer's CliRunner) with stdout and stderr apart."""
    from typer.testing import CliRunner

    from pgbg_cli.cli import app

    def run(*args: str, dsn: str | None = None, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        full_env = {"PGBG_DSN": dsn or "", "NO_COLOR": "1", "COLUMNS": "200"}
        full_env.update(env or {})
        res = runner.invoke(app, list(args), input=input, env=full_env, catch_exceptions=False)
        return Result(res.exit_code, res.stdout, res.stderr)

    return run


@pytest.fixture
def pgbg_proc() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run pgbg as a separate process (``python -m pgbg_cli``), as a shell script would."""

    def run(*args: str, dsn: str | None = None, timeout: float = 120, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update({"PGBG_DSN": dsn or "", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "pgbg_cli", *args], capture_output=True,
                              text=True, env=full_env, timeout=timeout, input=input)

    return run


# pgbg in a real process whose reconnect window (jobs.RECONNECT_S, 60 s) is cut to 1 s
PGBG_QUICK_GIVE_UP = [sys.executable, "-c",
                      "import pgbg_cli.jobs as j; j.RECONNECT_S = 1.0; from pgbg_cli.cli import main; main()"]


def pgbg_gives_up(db: dict[str, str], *args: str, looks: str) -> subprocess.CompletedProcess[str]:
    """Run ``pgbg args`` as pgbg_app on ``db`` (a database of its own: fresh_database), and once
    its session runs a query LIKE ``looks``, make the database refuse connections and drop that
    session: the command's reconnect gives up (after 1 s) and says its last words."""
    import psycopg

    app = f"pgbg-gives-up-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, PGBG_DSN=f"{db['app']} application_name={app}", NO_COLOR="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*PGBG_QUICK_GIVE_UP, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        # from another database: a database cannot refuse the session that alters it
        with psycopg.connect(_with_db(db["admin"], "postgres"), autocommit=True) as admin:
            def seen() -> Any:
                return admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
                                     (app, looks)).fetchone()

            pid = retry(seen, f"pgbg {' '.join(args)} runs {looks}", 30)[0]
            admin.execute(f'ALTER DATABASE "{db["name"]}" ALLOW_CONNECTIONS false')
            try:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                out, err = proc.communicate(timeout=60)
            finally:
                admin.execute(f'ALTER DATABASE "{db["name"]}" ALLOW_CONNECTIONS true')
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def retry(fn: Callable[[], Any], msg: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``fn`` until it returns something truthy (pg_activity's habit for async state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {msg}")
        time.sleep(interval)


def pytest_report_header(config: pytest.Config) -> list[str]:
    dsn = os.environ.get("PGBG_TEST_DSN")
    if not dsn:
        try:
            dsn = _sandbox("dsn", "admin")
        except Exception:
            return ["server: (sandbox not built yet)"]
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            ext = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_background'"
            ).fetchone()
        where = "PGBG_TEST_DSN" if os.environ.get("PGBG_TEST_DSN") else f"sandbox {SERVER}"
        return [f"server: PostgreSQL {version}, pg_background {ext[0] if ext else 'missing'} ({where})"]
    except Exception as exc:  # the fixture reports it properly
        return [f"server: not reachable yet ({type(exc).__name__})"]


def interrupt(proc: subprocess.Popen[str], ready: Callable[[], Any], timeout: float = 60) -> tuple[int, str, str]:
    """Once ``ready()`` has returned, SIGINT to ``proc``'s process group (as Ctrl-C in its
    terminal), and its exit code and output; a process that outlives ``timeout`` is killed."""
    try:
        ready()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def interruptible() -> None:
    """``preexec_fn`` of a process a test will interrupt (SIGINT, as Ctrl-C): SIGINT back to its
    default before it starts, as a process started from a terminal has it. A test runner started
    as a shell's background job inherits SIGINT ignored, and so would every pgbg it runs: Python
    then leaves Ctrl-C ignored (as nohup wants), and the test would wait for an interrupt that
    never comes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
