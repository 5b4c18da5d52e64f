"""Concurrent short launches: does every job end with a known outcome?

Several processes launch short jobs of mixed kinds at once while another lists (which
reconciles), then one ``pgbg wait`` collects them all. Prints, per round and in total, how
many jobs ended in each state. Against pg_background 2.0.3 a rare ``lost`` shows up here: a
worker that ends before its launcher sees it start gets a handle with an unset pid (see the
CHANGELOG); the job's reason says so.

    .venv/bin/python bench/stress_launches.py [--rounds 5] [--procs 6] [--per-proc 12]

Runs against the sandbox's ``pgbg`` database as the application role; bounded in count and
time, loopback only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import sandbox, server_dsn  # noqa: E402

PGBG = [sys.executable, "-m", "pgbg_cli"]
KINDS = ["SELECT 1", "SELECT pg_sleep(0.2)", "INSERT INTO pgbg_stress VALUES (1)",
         "SELECT g FROM generate_series(1, 100) g"]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(PGBG + args, env=env, capture_output=True, text=True, timeout=timeout)


def one_round(env: dict[str, str], procs: int, per_proc: int) -> collections.Counter[str]:
    handles: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def launcher() -> None:
        for _ in range(per_proc):
            res = run(["launch", random.choice(KINDS)], env)
            with lock:
                (handles if res.returncode == 0 else errors).append(res.stdout.strip() or res.stderr.strip())

    def lister() -> None:
        for _ in range(per_proc * 2):
            run(["list", "-F", "json"], env)

    threads = [threading.Thread(target=launcher) for _ in range(procs)] + [threading.Thread(target=lister)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states: collections.Counter[str] = collections.Counter({"launch error": len(errors)})
    if handles:
        res = run(["wait", "--timeout", "120s", "-F", "json", *handles], env, timeout=180)
        for job in json.loads(res.stdout or "[]"):
            states[job["state"]] += 1
            if job["state"] != "succeeded":
                print(f"  {job['handle']} {job['state']}: {job.get('reason')}")
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--procs", type=int, default=6)
    parser.add_argument("--per-proc", type=int, default=12)
    opts = parser.parse_args()
    sandbox("start")  # one line and exit 2 when it fails
    admin, app = server_dsn("admin"), server_dsn("app")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", PGBG_DSN=admin)
    for setup in (["init"], ["grant", "pgbg_app"]):
        subprocess.run(PGBG + setup, env=env, capture_output=True, check=True)
    subprocess.run(["psql", admin, "-qc", "CREATE TABLE IF NOT EXISTS pgbg_stress (a int); "
                    "GRANT INSERT ON pgbg_stress TO pgbg_app"], check=True, capture_output=True)
    env["PGBG_DSN"] = app
    total: collections.Counter[str] = collections.Counter()
    for n in range(1, opts.rounds + 1):
        states = one_round(env, opts.procs, opts.per_proc)
        total.update(states)
        print(f"round {n}: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items()) if v))
    print("total: " + ", ".join(f"{k}={v}" for k, v in sorted(total.items()) if v))


if __name__ == "__main__":
    main()
