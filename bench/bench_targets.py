"""Ten targets cost about as much as one: ``pgbg list`` on 1 target and on N (the same database
listed N times, each a connection and a thread of its own), in alternated rounds, beside a
baseline from the same run. Figures only, no verdict (issue 11, item 5).

Run with ``.venv/bin/python bench/bench_targets.py`` (``-n 15 --targets 10``). Talks to the
sandbox server's database as the application role (``scripts/sandbox.sh dsn app``, or
``--dsn``); the database needs pgbg (``make shop`` and ``DB=shop``, or ``pgbg init``).

Prints, per command: the median wall time of the whole process over the rounds and its ratio
to the one-target run of the same rounds; beside them, the N targets done as a shell loop of
one-target runs (what doing them one after the other costs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import require_server, sandbox_hint, server_dsn  # noqa: E402


def find_pgbg() -> str:
    local = ROOT / ".venv" / "bin" / "pgbg"
    return str(local) if local.exists() else (shutil.which("pgbg") or "pgbg")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    took = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:3])}... exited {res.returncode}: {res.stderr.strip()[:300]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--targets", type=int, default=10, help="targets of the many-target run (default 10)")
    parser.add_argument("--dsn", default=None, help="application role conninfo (default: the sandbox's)")
    parser.add_argument("--db", default="shop", help="sandbox database (default shop: make shop)")
    args = parser.parse_args()
    dsn = args.dsn or server_dsn("app", db=args.db)
    if args.dsn:
        require_server(dsn, "is the server of --dsn running?")
    else:
        require_server(dsn, f"start the sandbox server: {sandbox_hint()}" + (
            f"; database shop: {sandbox_hint('shop')}" if args.db == "shop" else ""))
    pgbg = find_pgbg()
    env = {k: v for k, v in os.environ.items() if k != "PGBG_DSN"}
    env["NO_COLOR"] = "1"
    one = [pgbg, "list", "-F", "json", "-d", dsn]
    many = [pgbg, "list", "-F", "json"] + ["-d", dsn] * args.targets
    cases = {"pgbg list, 1 target": one, f"pgbg list, {args.targets} targets": many,
             f"pgbg list, {args.targets} targets, one process each (a shell loop)": None}
    times: dict[str, list[float]] = {name: [] for name in cases}
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"pgbg bench_targets: {os.cpu_count()} CPUs, load average {loadavg:.1f}, {args.runs} rounds")
    for argv in (one, many):
        timed(argv, env)  # warm-up
    for round_no in range(args.runs):
        order = list(cases)
        order = order[round_no % len(order):] + order[: round_no % len(order)]  # rotated
        for name in order:
            if cases[name] is None:
                start = time.perf_counter()
                for _ in range(args.targets):
                    timed(one, env)
                times[name].append(time.perf_counter() - start)
            else:
                times[name].append(timed(cases[name], env))
    base = statistics.median(times["pgbg list, 1 target"])
    print(f"{'command':<62} {'median':>9} {'ratio to 1 target':>18}")
    for name, got in times.items():
        med = statistics.median(got)
        print(f"{name:<62} {med * 1000:>7.0f}ms {med / base:>17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
