"""How long pgbg takes, as ratios to baselines measured in the same run. Figures only, no verdict.

Run with ``make bench`` (or ``.venv/bin/python bench/bench_cli.py -n 20``). Talks to the
sandbox server's ``pgbg`` database as the application role (``scripts/sandbox.sh dsn app``),
started first when it does not answer, as ``make bench`` does; ``pgbg init`` and ``pgbg grant``
are done there first, as the superuser, when missing.

Measures:
  * start-up and client commands, N rounds, each round running every command once in a
    rotated order (so that a busy moment of the machine falls on all of them alike), after one
    warm-up round; median wall time of the whole process, and its CPU time (user + system);
  * those medians as ratios to their baselines from the same rounds: ``python -c pass`` for
    ``--version`` and ``--help``; for commands that talk to the server, the floor of any Python
    client (bench/floor_client.py: import psycopg, connect, SELECT 1), beside the target;
  * the round trips of each command, counted on the wire by a relay that reads the protocol
    (bench/wire.py): flights of client messages that wait for the server, after connecting;
  * the delay between a job's end (its recorded ``finished_at``) and ``pgbg wait`` returning;
  * the worker slots held while J jobs of one role run (pgbg's design: J + 1).

Child processes run with bytecode caching on (PYTHONDONTWRITEBYTECODE is dropped), as an
installed pgbg runs: pip writes the caches at install time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLOOR = Path(__file__).resolve().parent / "floor_client.py"

from bench.scratch import require_server, sandbox_up, server_dsn  # noqa: E402

# psql + the extension, in one session each: launch and wait and detach; launch only.
PSQL_RUN = (
    "DO $$DECLARE h record; BEGIN "
    "SELECT * INTO h FROM pg_background_launch('SELECT 1'); "
    "PERFORM pg_background_wait(h.pid, h.cookie); "
    "PERFORM pg_background_detach(h.pid, h.cookie); END$$"
)
PSQL_LAUNCH = "SELECT * FROM pg_background_launch('SELECT 1')"

PASS = "python -c pass"
FLOOR_NAME = "floor: psycopg connect + SELECT 1"
LAUNCH = 'pgbg launch "SELECT 1"'
LIST = "pgbg list"
WAIT = "pgbg wait <ended job>"
# (command, baseline, target ratio of the medians) as issue 10 sets them
TARGETS = [
    ("pgbg --version", PASS, 2.0),
    ("pgbg --help", PASS, 6.0),
    (LAUNCH, FLOOR_NAME, 1.10),
    (LIST, FLOOR_NAME, 1.15),
    (WAIT, FLOOR_NAME, 1.15),
    ('pgbg launch --wait "SELECT 1"', FLOOR_NAME, None),
    ('psql -c "SELECT 1"', FLOOR_NAME, None),
]


def redact(dsn: str) -> str:
    from pgbg_cli.db import redact as _redact

    return _redact(dsn)


def find_pgbg() -> str:
    here = Path(sys.executable).parent / "pgbg"
    if here.exists():
        return str(here)
    found = shutil.which("pgbg")
    if not found:
        sys.exit("bench: pgbg is not installed (make venv)")
    return found


class Runner:
    def __init__(self, pgbg: str, app_dsn: str, admin_dsn: str) -> None:
        self.pgbg = pgbg
        self.admin_dsn = admin_dsn
        self.env = dict(os.environ, PGBG_DSN=app_dsn, NO_COLOR="1", PGCONNECT_TIMEOUT="10")
        self.env.pop("PGSERVICE", None)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(self, argv: Sequence[str], *, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = env or self.env
        res = subprocess.run(list(argv), capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                             timeout=120)
        if res.returncode == 3 and "run pgbg init" in res.stderr:
            # The sandbox is shared: a checkout with other schema code may have run pgbg init meanwhile.
            print("bench: pgbg's schema changed under us; running pgbg init again", file=sys.stderr)
            subprocess.run([self.pgbg, "init"], check=True, capture_output=True,
                           env=dict(self.env, PGBG_DSN=self.admin_dsn))
            res = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                                 stdin=subprocess.DEVNULL, timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}... exited {res.returncode}: {res.stderr.strip()[:300]}")
        return res

    def timed(self, argv: Sequence[str]) -> tuple[float, float]:
        """Wall time and CPU time (user + system) of one run of ``argv``."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        self.run(argv)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def pgbg_cmd(self, *args: str) -> list[str]:
        return [self.pgbg, *args]


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.2f}s"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def ensure_ready(runner: Runner, admin_dsn: str, app_role: str) -> None:
    """pgbg's schema current and the app role granted, in the sandbox's pgbg database."""
    admin_env = dict(runner.env, PGBG_DSN=admin_dsn)
    check = subprocess.run([runner.pgbg, "init", "--check"], capture_output=True, text=True, env=admin_env)
    if check.returncode != 0:
        print(f"bench: {check.stderr.strip()} -> running pgbg init as the superuser", file=sys.stderr)
        subprocess.run([runner.pgbg, "init"], check=True, capture_output=True, env=admin_env)
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        granted = conn.execute("SELECT pg_has_role(%s, 'pgbg_user', 'MEMBER')", (app_role,)).fetchone()[0]
    if not granted:
        print(f"bench: granting pgbg to {app_role}", file=sys.stderr)
        subprocess.run([runner.pgbg, "grant", app_role], check=True, capture_output=True, env=admin_env)


def typer_of(pgbg: str) -> str:
    """The Typer version the interpreter of a pgbg console script has."""
    with open(pgbg, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    python = first[2:].strip() if first.startswith("#!") else sys.executable
    res = subprocess.run([python, "-c", "import typer; print(typer.__version__)"], capture_output=True, text=True)
    return res.stdout.strip() or "?"


def compared(name: str, label: str) -> str:
    return f"{name} [{label}]"


def commands(runner: Runner, psql: str | None, app_dsn: str, ended: str,
             others: Sequence[tuple[str, str]] = ()) -> dict[str, list[str] | None]:
    """Every command timed, by name; None where a tool is missing. ``others``: (label, pgbg
    executable) of other installs whose pgbg commands are timed too."""
    def psql_cmd(sql: str) -> list[str] | None:
        return [psql, "-X", "-Atq", app_dsn, "-c", sql] if psql else None

    extra: dict[str, list[str] | None] = {}
    for label, pgbg in others:
        for name, args in (("pgbg --version", ["--version"]), ("pgbg --help", ["--help"]),
                           (LAUNCH, ["launch", "SELECT 1"]), (LIST, ["list"]), (WAIT, ["wait", ended])):
            extra[compared(name, label)] = [pgbg, *args]
    return {
        PASS: [sys.executable, "-c", "pass"],
        FLOOR_NAME: [sys.executable, str(FLOOR)],
        "pgbg --version": runner.pgbg_cmd("--version"),
        "pgbg --help": runner.pgbg_cmd("--help"),
        LAUNCH: runner.pgbg_cmd("launch", "SELECT 1"),
        LIST: runner.pgbg_cmd("list"),
        WAIT: runner.pgbg_cmd("wait", ended),
        'pgbg launch --wait "SELECT 1"': runner.pgbg_cmd("launch", "--wait", "SELECT 1"),
        'psql -c "SELECT 1"': psql_cmd("SELECT 1"),
        "psql: launch + wait + detach": psql_cmd(PSQL_RUN),
        "psql: pg_background_launch": psql_cmd(PSQL_LAUNCH),
    } | extra


def comparisons(others: Sequence[tuple[str, str]]) -> list[tuple[str, str, float | None]]:
    """TARGETS' lines for the other installs (no target: they are there to compare)."""
    return [(compared(name, label), base, None) for label, _ in others for name, base, target in TARGETS
            if name in ("pgbg --version", "pgbg --help", LAUNCH, LIST, WAIT)]


def bench_rounds(runner: Runner, cmds: dict[str, list[str] | None],
                 rounds: int) -> dict[str, tuple[list[float], list[float]] | None]:
    """(wall times, CPU times) of each command over ``rounds`` rounds, after a warm-up round."""
    names = [name for name, argv in cmds.items() if argv is not None]
    out: dict[str, tuple[list[float], list[float]] | None] = {
        name: ([], []) if argv else None for name, argv in cmds.items()}
    for rnd in range(rounds + 1):
        if rnd:
            print(f"  round {rnd}/{rounds}", file=sys.stderr, flush=True)
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = runner.timed(cmds[name])  # type: ignore[arg-type]
            if rnd:
                out[name][0].append(wall)  # type: ignore[index]
                out[name][1].append(cpu)  # type: ignore[index]
    return out


def round_trips(runner: Runner, cmds: dict[str, list[str] | None],
                app_dsn: str) -> dict[str, list[tuple[int | None, int, int]]]:
    """Per command: (flights to connect, round trips after connecting, statements) per connection."""
    from psycopg.conninfo import conninfo_to_dict
    from wire import Relay

    params = conninfo_to_dict(app_dsn)
    found: dict[str, list[tuple[int | None, int, int]]] = {}
    with Relay(params.get("host") or "127.0.0.1", int(params.get("port") or 5432)) as relay:
        relayed = relay.dsn(app_dsn)
        env = dict(runner.env, PGBG_DSN=relayed)
        for name, argv in cmds.items():
            if argv is None or name == PASS:
                continue
            argv = [relayed if arg == app_dsn else arg for arg in argv]
            relay.reset()
            runner.run(argv, env=env)
            time.sleep(0.05)  # the relay's threads see the connection close
            found[name] = [(c.connect_flights, c.round_trips, c.statements) for c in relay.sessions()]
    return found


def bench_wait_delay(runner: Runner, app_dsn: str, runs: int, sleep_s: float) -> list[float]:
    """Seconds from a job's recorded finished_at to the moment ``pgbg wait`` returned."""
    import psycopg

    delays = []
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        for i in range(runs):
            print(f"  pgbg wait on a {sleep_s:g}s job, {i + 1}/{runs}", file=sys.stderr, flush=True)
            handle = runner.run(runner.pgbg_cmd("launch", f"SELECT pg_sleep({sleep_s})")).stdout.strip()
            runner.run(runner.pgbg_cmd("wait", handle))
            returned = dt.datetime.now(dt.timezone.utc)
            job_id, cookie = (int(x) for x in handle.split(":"))
            finished = conn.execute("SELECT finished_at FROM pgbg.job WHERE id = %s AND cookie = %s",
                                    (job_id, cookie)).fetchone()[0]
            delays.append((returned - finished).total_seconds())
    return delays


def bench_slots(runner: Runner, admin_dsn: str, app_role: str, jobs: int) -> dict[str, object]:
    """Launch ``jobs`` sleeping jobs; count the role's pg_background backends while they all run."""
    import psycopg

    handles = [runner.run(runner.pgbg_cmd("launch", "--label", "bench-slots", "SELECT pg_sleep(5)")).stdout.strip()
               for _ in range(jobs)]
    ids = [int(h.split(":")[0]) for h in handles]
    result: dict[str, object] = {"jobs": jobs}
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 20
            while True:
                running = conn.execute("SELECT count(*) FROM pgbg.job WHERE id = ANY(%s) AND state = 'running'",
                                       (ids,)).fetchone()[0]
                if running == jobs or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'pg_background' "
                "AND usename = %s AND datname = current_database()", (app_role,)).fetchall()
            result["running"] = running
            result["slots"] = len(rows)
            result["supervisors"] = sum(1 for (name,) in rows if "pgbg:supervisor" in (name or ""))
            result["max_worker_processes"] = conn.execute("SHOW max_worker_processes").fetchone()[0]
    finally:
        runner.run(runner.pgbg_cmd("cancel", "--no-wait", *handles), check=False)
    return result


def print_timings(timings: dict[str, tuple[list[float], list[float]] | None], rounds: int) -> None:
    print(f"Whole processes, {rounds} rounds (each round runs every command once, order rotated; "
          "after one warm-up round)")
    rows = []
    for name, t in timings.items():
        if t is None:
            rows.append([name, "n/a", "n/a", "n/a", "n/a"])
            continue
        wall, cpu = t
        rows.append([name, ms(statistics.median(wall)), ms(min(wall)), ms(max(wall)), ms(statistics.median(cpu))])
    print_table(["command", "median", "min", "max", "median CPU"], rows)


def ratios(timings: dict[str, tuple[list[float], list[float]] | None],
           lines: Sequence[tuple[str, str, float | None]] = TARGETS) -> list[dict[str, object]]:
    """Each target command's median over its baseline's median (wall and CPU), beside the target."""
    out = []
    for name, base, target in lines:
        t, b = timings.get(name), timings.get(base)
        if not t or not b:
            continue
        out.append({
            "command": name, "baseline": base, "target": target,
            "wall": statistics.median(t[0]) / statistics.median(b[0]),
            "cpu": statistics.median(t[1]) / statistics.median(b[1]),
        })
    return out


def print_ratios(found: list[dict[str, object]]) -> None:
    print("Ratios of medians to the baseline of the same rounds")
    print_table(["command", "baseline", "wall", "CPU", "target (wall)"], [
        [str(r["command"]), str(r["baseline"]), f"{r['wall']:.2f}x", f"{r['cpu']:.2f}x",
         f"<= {r['target']:.2f}x" if r["target"] else ""]
        for r in found
    ])


def print_round_trips(found: dict[str, list[tuple[int | None, int, int]]]) -> None:
    print("Round trips on the wire (bench/wire.py: flights of client messages that wait for the server)")
    rows = []
    for name, conns in found.items():
        if not conns:
            rows.append([name, "0", "", "", ""])
            continue
        rows.append([name, str(len(conns)), " + ".join(str(c[0]) for c in conns),
                     " + ".join(str(c[1]) for c in conns), " + ".join(str(c[2]) for c in conns)])
    print_table(["command", "connections", "to connect", "after connecting", "statements"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 15)),
                        help="rounds (default 15)")
    parser.add_argument("-j", "--jobs", type=int, default=5,
                        help="concurrent jobs for the worker-slot count (default 5; at most max_running_per_role)")
    parser.add_argument("--sleep", type=float, default=1.0, help="length of the job pgbg wait waits for (s)")
    parser.add_argument("--quick", action="store_true",
                        help="only the timed rounds, ratios and round trips (no wait delay, no slot count)")
    parser.add_argument("--compare", action="append", default=[], metavar="PGBG",
                        help="also time the pgbg console script of another install (another Typer, say), "
                             "in the same rounds; repeatable")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    parser.add_argument("--dsn", default=None, help="application role conninfo (default: the sandbox's)")
    parser.add_argument("--admin-dsn", default=None, help="superuser conninfo (default: the sandbox's)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1:
        parser.error("--runs and --jobs must be at least 1")

    if not (args.dsn and args.admin_dsn):
        sandbox_up()  # as make bench does
    app_dsn = args.dsn or server_dsn("app")
    admin_dsn = args.admin_dsn or server_dsn("admin")
    require_server(app_dsn, "is the server of --dsn running?" if args.dsn else None)
    require_server(admin_dsn, "is the server of --admin-dsn running?" if args.admin_dsn else None)
    pgbg = find_pgbg()
    psql = shutil.which("psql")
    runner = Runner(pgbg, app_dsn, admin_dsn)
    from psycopg.conninfo import conninfo_to_dict

    app_role = conninfo_to_dict(app_dsn).get("user") or os.environ.get("PGUSER", "")

    import psycopg

    with psycopg.connect(app_dsn) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_background'").fetchone()
    import typer

    print(f"pgbg bench: {redact(app_dsn)}", file=sys.stderr)
    print(f"  PostgreSQL {server}, pg_background {ext[0] if ext else '?'}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, {args.runs} rounds; Python {sys.version.split()[0]}, "
          f"Typer {typer.__version__}, psycopg {psycopg.__version__}; psql: {psql or 'not found'}", file=sys.stderr)
    ensure_ready(runner, admin_dsn, app_role)

    delays: list[float] = []
    slots: dict[str, object] = {}
    try:
        ended = runner.run(runner.pgbg_cmd("launch", "--wait", "--format", "json", "SELECT 1")).stdout
        ended_handle = json.loads(ended)["handle"]
        others = [(f"{Path(p).resolve().parent.parent.name}, Typer {typer_of(p)}", p) for p in args.compare]
        cmds = commands(runner, psql, app_dsn, ended_handle, others)
        timings = bench_rounds(runner, cmds, args.runs)
        trips = round_trips(runner, {k: v for k, v in cmds.items() if not k.endswith("]")}, app_dsn)
        if not args.quick:
            delays = bench_wait_delay(runner, app_dsn, args.runs, args.sleep)
            slots = bench_slots(runner, admin_dsn, app_role, args.jobs)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench: {redact(str(exc))}", file=sys.stderr)
        return 1

    print()
    print_timings(timings, args.runs)
    print()
    found = ratios(timings, [*TARGETS, *comparisons(others)])
    print_ratios(found)
    print()
    print_round_trips(trips)

    def med(name: str) -> str:
        t = timings.get(name)
        return ms(statistics.median(t[0])) if t else "n/a"

    print()
    print("Same work, side by side (medians)")
    print_table(["work", "pgbg", "psql + pg_background"], [
        ["run SELECT 1 in a worker and wait", med('pgbg launch --wait "SELECT 1"'),
         med("psql: launch + wait + detach")],
        ["launch SELECT 1, get a handle", med(LAUNCH), med("psql: pg_background_launch")],
    ])
    print("  (psql's handle is pid+cookie of its own session only; pgbg's <id>:<cookie> works from any session)")

    if delays:
        print()
        print(f"Job end -> pgbg wait returned (job: pg_sleep({args.sleep:g}); the job's recorded finished_at, the "
              f"worker's end as pg_background reports it, vs this machine's clock when the pgbg wait process "
              f"exited; {len(delays)} runs)")
        print_table(["", "median", "min", "max"],
                    [["delay", ms(statistics.median(delays)), ms(min(delays)), ms(max(delays))]])
    if slots:
        print()
        print(f"Worker slots held by {slots['jobs']} running jobs of role {app_role} "
              f"(pg_stat_activity, backend_type = 'pg_background')")
        print_table(["jobs running", "slots held", "of which supervisors", "expected", "max_worker_processes"], [
            [str(slots["running"]), str(slots["slots"]), str(slots["supervisors"]), str(int(slots["jobs"]) + 1),
             str(slots["max_worker_processes"])],
        ])
        if slots["running"] != slots["jobs"]:
            print(f"  note: only {slots['running']} of {slots['jobs']} jobs were running when counted "
                  "(queued behind max_running_per_role or free slots)")
    if args.json:
        print(json.dumps({
            "rounds": args.runs,
            "seconds": {k: (v[0] if v else None) for k, v in timings.items()},
            "cpu_seconds": {k: (v[1] if v else None) for k, v in timings.items()},
            "ratios": found,
            "round_trips": trips,
            "wait_delay_seconds": delays,
            "slots": slots,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
