"""Job end -> ``pgbg wait`` returned, beside pg_background's own wait in the same run.

Each round submits a job that blocks on an advisory lock this bench holds, runs ``pgbg wait``
on it, lets the job end once the wait process sits listening (its last statement, the look
at its job, idle for 50 ms), and takes the time the wait
process exited, minus the job's recorded ``finished_at`` (the worker's own end, as pg_background 1.10 and later report
it; on 1.8 pgbg only has the time it recorded the end, so the delay shows less than it is).
The baseline, in alternated rounds: one session launches the same job and blocks in
pg_background's wait on its handle (the lock let go 0.2 s later); the time that call returned, minus the worker's end as
pg_background reports it. Figures only.

Run with ``.venv/bin/python bench/bench_latency.py`` (``--runs``, default 15). It makes a
scratch database on the sandbox server (``scripts/sandbox.sh dsn admin``) and installs pgbg
there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

EXIT_PROBE = """
import os, sys, time
import psycopg
conn = psycopg.connect(os.environ["PGBG_DSN"], autocommit=True)
conn.execute("SELECT 1")
conn.close()
sys.stdout.write(repr(time.time()) + "\\n")
sys.stdout.flush()
os._exit(0)
"""


def client_exit(dsn: str) -> float:
    """Seconds from a psycopg client's last write (a connection made, used and closed, as
    ``pgbg wait`` has done when it prints) to this process seeing it exit: what leaving costs
    any Python client that loaded psycopg (its memory given back), the floor of the delay."""
    probe = subprocess.Popen([sys.executable, "-c", EXIT_PROBE], env=dict(os.environ, PGBG_DSN=dsn),
                             stdout=subprocess.PIPE, text=True)
    assert probe.stdout is not None
    wrote = float(probe.stdout.readline())
    probe.wait()
    return time.time() - wrote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds of each (default 15)")
    args = parser.parse_args()

    import psycopg

    from pgbg_cli import db

    pgbg = str(Path(sys.executable).with_name("pgbg"))
    lock_key = 4747
    job = f"SELECT pg_catalog.pg_advisory_xact_lock({lock_key})"
    pgbg_delays: list[float] = []
    direct_delays: list[float] = []
    exit_delays: list[float] = []
    recorded_delays: list[float] = []
    heard_delays: list[float] = []
    with scratch_database("pgbg_bench_lat") as scratch:
        dsn, ext = scratch.dsn, scratch.ext
        env = dict(os.environ, PGBG_DSN=dsn, NO_COLOR="1")
        env.pop("PGSERVICE", None)
        conn = db.connect(dsn)
        conn.execute("SELECT * FROM pgbg.set_setting('supervisor_idle_ms', '600000')")
        plain = psycopg.connect(dsn, autocommit=True)
        holder = psycopg.connect(dsn, autocommit=True)
        listener = psycopg.connect(dsn, autocommit=True)
        listener.execute("LISTEN pgbg_jobs")
        heard: dict[int, dt.datetime] = {}

        def listen() -> None:
            for note in listener.notifies():
                heard.setdefault(int(note.payload), dt.datetime.now(dt.timezone.utc))
                if note.payload == "0":
                    return

        hearing = threading.Thread(target=listen, daemon=True)
        hearing.start()
        ours = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (plain, holder)]
        ours.append(listener.info.backend_pid)
        ours.append(conn.execute("SELECT pg_backend_pid() AS p").fetchone()["p"])
        for i in range(args.runs):
            print(f"  round {i + 1}/{args.runs}", file=sys.stderr, flush=True)
            # the job blocks on a lock this bench holds until `pgbg wait` sits listening
            holder.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
            row = conn.execute("SELECT (s).id, (s).cookie FROM (SELECT pgbg.submit(%s) AS s) x", (job,)).fetchone()
            conn.execute("SELECT pgbg.ensure_supervisor()")
            waiter = subprocess.Popen([pgbg, "wait", f"{row['id']}:{row['cookie']}"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Sitting listening: its last statement is the look at its job (the one before it
            # sleeps on LISTEN), idle for 50 ms, seen twice. Idle alone is not enough: pgbg
            # connects while Typer loads, and that connection idles before any statement.
            seen = None
            while True:
                idle = conn.execute(
                    "SELECT a.pid, a.state_change FROM pg_stat_activity a WHERE a.datname = current_database() "
                    "AND a.backend_type = 'client backend' AND a.state = 'idle' AND NOT (a.pid = ANY(%s)) "
                    "AND a.query LIKE 'SELECT j.* FROM pgbg.job j%%' "
                    "AND a.state_change < clock_timestamp() - interval '50 ms'", (ours,)).fetchone()
                if idle is not None and seen == (idle["pid"], idle["state_change"]):
                    break
                seen = None if idle is None else (idle["pid"], idle["state_change"])
                time.sleep(0.01)
            heard.pop(row["id"], None)  # its queued and running states
            holder.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
            # a blocking wait: Popen.wait(timeout=) polls, up to 50 ms apart, which the delay
            # would count; the watchdog ends a wait that never returns
            watchdog = threading.Timer(120, waiter.kill)
            watchdog.start()
            waiter.wait()
            watchdog.cancel()
            returned = dt.datetime.now(dt.timezone.utc)
            finished = conn.execute(
                "SELECT j.finished_at, (SELECT max(e.at) FROM pgbg.job_event e WHERE e.job_id = j.id) AS recorded "
                "FROM pgbg.job j WHERE j.id = %s", (row["id"],)).fetchone()
            pgbg_delays.append((returned - finished["finished_at"]).total_seconds())
            recorded_delays.append((finished["recorded"] - finished["finished_at"]).total_seconds())
            if row["id"] in heard:
                heard_delays.append((heard[row["id"]] - finished["finished_at"]).total_seconds())
            exit_delays.append(client_exit(dsn))
            if not ext.worker_times:
                continue
            # the baseline: pg_background's own blocking wait, in the launching session
            holder.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
            pid, hcookie = plain.execute(f"SELECT h.pid, h.cookie FROM {ext.fn('launch')}(%s) h", (job,)).fetchone()
            threading.Timer(0.2, holder.execute, ("SELECT pg_advisory_unlock(%s)", (lock_key,))).start()
            plain.execute(f"SELECT {ext.fn('wait')}(%s, %s)", (pid, hcookie))
            returned = dt.datetime.now(dt.timezone.utc)
            finished = plain.execute(f"SELECT (r).finished_at FROM (SELECT {ext.fn('result_info')}(%s, %s) AS r) x",
                                     (pid, hcookie)).fetchone()[0]
            plain.execute(f"SELECT {ext.fn('detach')}(%s, %s)", (pid, hcookie))
            direct_delays.append((returned - finished).total_seconds())
            time.sleep(0.1)  # the timer's unlock has returned
        conn.execute("NOTIFY pgbg_jobs, '0'")
        hearing.join(timeout=10)
        for c in (holder, plain, conn) + (() if hearing.is_alive() else (listener,)):
            c.close()  # (a listener still listening ends with the database)

    def line(label: str, values: list[float]) -> str:
        return (f"  {label}: median {statistics.median(values) * 1000:6.1f} ms, "
                f"min {min(values) * 1000:6.1f} ms, max {max(values) * 1000:6.1f} ms")

    print(f"Job end -> wait returned ({args.runs} jobs each, pg_background {ext.version})")
    print(line("pgbg wait (process exit)            ", pgbg_delays) + "   (target median <= 25 ms)")
    if exit_delays:
        print(line("  of which any Python client's exit ", exit_delays)
              + "   (psycopg loaded, connected: its last write to this bench seeing it exit)")
    print(line("  the supervisor recorded the end     ", recorded_delays))
    if heard_delays:
        print(line("  a LISTEN pgbg_jobs session heard it ", heard_delays))
    if direct_delays:
        print(line("baseline, pg_background's own wait", direct_delays))
        extra = statistics.median(pgbg_delays) - statistics.median(direct_delays)
        print(f"  pgbg's extra delay (medians): {extra * 1000:.1f} ms")
    else:
        print("  (pg_background 1.8 reports no end time: finished_at is when pgbg recorded the end; no baseline)")


if __name__ == "__main__":
    main()
