"""A scratch database on the sandbox server, with pg_background and pgbg installed, for the bench
scripts: made on entry, dropped (WITH (FORCE)) on exit. The server is the one
``scripts/sandbox.sh dsn admin`` names (``PGBG_SANDBOX_INSTANCE`` and ``PGBG_SANDBOX_SERVER``
choose it, as for the tests)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scratch:
    dsn: str  # the scratch database, as the sandbox's superuser
    ext: Any  # pgbg_cli.extension.Extension: the pg_background found there


def server_dsn() -> str:
    """The sandbox server's superuser connection string."""
    return subprocess.run(["bash", str(ROOT / "scripts" / "sandbox.sh"), "dsn", "admin"], check=True,
                          capture_output=True, text=True).stdout.strip()


@contextmanager
def scratch_database(prefix: str) -> Iterator[Scratch]:
    import psycopg

    from pgbg_cli import db, extension, install

    server = server_dsn()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        params = psycopg.conninfo.conninfo_to_dict(server)
        params["dbname"] = name
        dsn = psycopg.conninfo.make_conninfo(**params)
        with db.connect(dsn) as conn:
            conn.execute("CREATE EXTENSION pg_background SCHEMA public")
            ext = extension.discover(conn)
            install.install(conn, ext)
        yield Scratch(dsn=dsn, ext=ext)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
