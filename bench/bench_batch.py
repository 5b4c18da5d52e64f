"""Many jobs in one ``pgbg launch``: the time to accept N jobs, beside baselines from the same rounds.

    .venv/bin/python bench/bench_batch.py [-n ROUNDS] [--jobs 1000]

Talks to the sandbox server's ``pgbg`` database as the application role (``scripts/sandbox.sh
dsn app``; ``pgbg init`` and ``pgbg grant`` are done there first when missing). Each round
runs, in a rotated order, as whole processes:

  * ``pgbg launch -f FILE`` with N statements ``SELECT k`` (N jobs, one per statement), stdout
    piped: from start to exit, every job described, checked and queued in one transaction;
  * the same N statements as ``--lines`` on standard input;
  * baseline ``executemany``: a Python script that imports psycopg, connects and inserts N
    rows into a temporary table with one ``executemany`` (pipelined by psycopg);
  * baseline ``1 launch``: ``pgbg launch "SELECT 1"``, one job (N of them would take N times it).

It prints the medians, the ratio of each batch to the executemany baseline, and the estimate
of N single launches (N x the one-launch median) against the batch; the target of issue 11 is
N = 1000 accepted in at most 1 s. Between rounds the queued jobs run (the supervisor drains
them) and the bench waits for that, so each round starts with an empty queue. Load average is
printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import require_server, server_dsn  # noqa: E402

EXECUTEMANY = """
import os, sys
import psycopg
n = int(sys.argv[1])
with psycopg.connect(os.environ["PGBG_DSN"], autocommit=True) as conn:
    conn.execute("CREATE TEMP TABLE t (k int, sql text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(k, f"SELECT {k}") for k in range(n)])
"""


def pgbg_bin() -> str:
    here = Path(sys.executable).parent / "pgbg"
    return str(here) if here.exists() else "pgbg"


def timed(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:3])} failed ({res.returncode}): {res.stderr.strip()}")
    return took


def drain(admin: str, timeout: float = 300.0) -> None:
    """Wait until no job of the database is queued, starting or running."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(admin, autocommit=True) as conn:
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                             ).fetchone()[0]
            if n == 0:
                return
            time.sleep(0.2)
    sys.exit("bench: the queued jobs did not drain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()
    admin, app = server_dsn("admin"), server_dsn("app")
    require_server(admin)
    pgbg = pgbg_bin()
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([pgbg, "init", "-d", admin], env=base_env, capture_output=True, check=True)
    subprocess.run([pgbg, "grant", "pgbg_app", "-d", admin], env=base_env, capture_output=True, check=True)
    env = dict(base_env, PGBG_DSN=app)
    n = args.jobs
    statements = "".join(f"SELECT {k};\n" for k in range(n))
    lines = "".join(f"SELECT {k}\n" for k in range(n))
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(statements)
        path = f.name
    runs = {
        f"pgbg launch -f FILE ({n} jobs)": lambda: timed([pgbg, "launch", "-f", path], env),
        f"pgbg launch --lines ({n} jobs)": lambda: timed([pgbg, "launch", "--lines"], env, lines),
        f"baseline: psycopg executemany of {n} rows": lambda: timed([sys.executable, "-c", EXECUTEMANY, str(n)], env),
        'baseline: pgbg launch "SELECT 1" (1 job)': lambda: timed([pgbg, "launch", "SELECT 1"], env),
    }
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for name in names:  # warm-up
            runs[name]()
            drain(admin)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                times[name].append(runs[name]())
                drain(admin)
    finally:
        os.unlink(path)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench_batch: {args.rounds} rounds, {n} jobs a batch, load average {load}")
    for name in names:
        print(f"  {name:48} median {med[name] * 1000:8.1f} ms")
    floor = med[names[2]]
    one = med[names[3]]
    for name in names[:2]:
        print(f"  {name:48} {med[name] / floor:5.2f}x executemany; {one * n / med[name]:6.1f}x faster than "
              f"{n} single launches (est. {one * n:.1f} s); target <= 1 s: {med[name]:.2f} s")


if __name__ == "__main__":
    main()
