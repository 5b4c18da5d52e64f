"""The floor for any Python client of PostgreSQL: import psycopg, connect, run SELECT 1.

bench_cli.py times pgbg's commands against this script, run by the same interpreter to the
same server in the same rounds (PGBG_DSN, or the libpq environment). It is a plain script,
as a user would write it: no tricks, interpreter teardown included.
"""

import os

import psycopg

with psycopg.connect(os.environ.get("PGBG_DSN", ""), autocommit=True) as conn:
    conn.execute("SELECT 1").fetchone()
