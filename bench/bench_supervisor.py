"""Supervisor throughput: N short jobs queued at once for one role, started and finished by
pgbg's supervisor, next to one session that runs the same jobs through pg_background
directly, C at a time (C = max_running_per_role), waiting for each. Figures only.

Run with ``.venv/bin/python bench/bench_supervisor.py`` (``-n`` jobs, default 500). It makes
a scratch database on the sandbox server (``scripts/sandbox.sh dsn admin``), installs pgbg
there, and runs both as the superuser. Prints jobs per second for each and their ratio, and
pgbg's queued-to-started delays (p50, p95).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIRECT = """
DO $$
DECLARE
    n integer := %(n)s;
    c integer := %(c)s;
    started integer := 0;
    hs pg_background_handle[] := '{}';
    h pg_background_handle;
    still pg_background_handle[];
BEGIN
    WHILE started < n OR pg_catalog.cardinality(hs) > 0 LOOP
        WHILE started < n AND pg_catalog.cardinality(hs) < c LOOP
            hs := hs || pg_background_launch('SELECT 1');
            started := started + 1;
        END LOOP;
        still := '{}';
        FOREACH h IN ARRAY hs LOOP
            BEGIN
                IF pg_background_wait(h.pid, h.cookie, 1) THEN
                    PERFORM pg_background_detach(h.pid, h.cookie);
                ELSE
                    still := still || h;
                END IF;
            EXCEPTION WHEN OTHERS THEN
                NULL;  -- a handle pg_background 2.0.3 handed back unusable (its worker already ended)
            END;
        END LOOP;
        hs := still;
    END LOOP;
END $$
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs (default 500)")
    args = parser.parse_args()

    import psycopg
    from psycopg.rows import dict_row

    from pgbg_cli import db, extension, install

    server = subprocess.run(["bash", str(ROOT / "scripts" / "sandbox.sh"), "dsn", "admin"], check=True,
                            capture_output=True, text=True).stdout.strip()
    name = f"pgbg_bench_sup_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    params = psycopg.conninfo.conninfo_to_dict(server)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)
    try:
        conn = db.connect(dsn)
        conn.execute("CREATE EXTENSION pg_background SCHEMA public")
        install.install(conn, extension.discover(conn))
        cap = int(conn.execute("SELECT pgbg.setting('max_running_per_role', '8') AS v").fetchone()["v"])

        plain = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        started = time.monotonic()
        plain.execute(DIRECT % {"n": args.n, "c": cap})
        direct_s = time.monotonic() - started

        started = time.monotonic()
        with conn.transaction():
            conn.execute("SELECT count(*) FROM generate_series(1, %s) g, "
                         "LATERAL pgbg.submit('SELECT 1 /* ' || g || ' */') s", (args.n,))
        conn.execute("SELECT pgbg.ensure_supervisor()")
        while conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                           ).fetchone()["n"]:
            time.sleep(0.01)
        pgbg_s = time.monotonic() - started
        states = conn.execute("SELECT state, count(*) AS n FROM pgbg.job GROUP BY state").fetchall()
        delays = [r["ms"] for r in conn.execute(
            "SELECT extract(epoch FROM started_at - queued_at) * 1000 AS ms FROM pgbg.job "
            "WHERE started_at IS NOT NULL ORDER BY 1").fetchall()]
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    print(f"{args.n} jobs of SELECT 1, {cap} at a time")
    print(f"  direct (one session, pg_background_launch/wait/detach): {args.n / direct_s:7.1f} jobs/s")
    print(f"  pgbg supervisor (queued, then started and recorded):    {args.n / pgbg_s:7.1f} jobs/s")
    print(f"  ratio pgbg / direct: {direct_s / pgbg_s:.2f}")
    summary = ", ".join(f"{r['state']} {r['n']}" for r in states)
    print(f"  states: {summary}")
    if delays:
        p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
        print(f"  queued -> started: p50 {statistics.median(delays):.0f} ms, p95 {float(p95):.0f} ms "
              "(all queued at once)")


if __name__ == "__main__":
    main()
