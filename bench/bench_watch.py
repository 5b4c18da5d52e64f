"""Server time of one refresh of ``pgbg list --watch`` and ``pgbg stats --watch``. Figures only.

Run with ``.venv/bin/python bench/bench_watch.py`` (options: ``-n`` runs per query,
``--finished``, ``--running``, ``--keep``). It makes a scratch database on the sandbox
server (``scripts/sandbox.sh dsn admin``, or ``--dsn`` for another superuser URI),
installs pgbg's schema there and fills the registry as the superuser:

  * ``--finished`` (10,000) finished jobs, mostly succeeded, some failed, canceled, timed
    out, lost; inserted directly with session_replication_role = replica, so the guard
    trigger does not turn them into queued jobs;
  * ``--running`` (50) running jobs with fake worker pids, whose supervisor is this
    script's own session, registered in ``pgbg.supervisor`` as the role's supervisor, so
    ``pgbg.reconcile()`` sees them looked after and leaves them alone, as in a steady
    state with a live supervisor.

Then it records the queries of one refresh of each view, as the views run them (the
watch module's own ``fetch()`` through a recording connection), and runs each under
``EXPLAIN (ANALYZE, FORMAT JSON)`` ``-n`` times as the jobs' role (RLS applies): the
median planning and execution times are printed per query, side by side for two
histories: the finished jobs spread over 30 days (the default history_max_age), and
all of them finished within the last hour (the worst case for the last-hour and
24-hour windows). A watch view reads its whole window once, at its first refresh
(shown apart), then only what changed. Also shown apart, not part of a refresh: the
one-shot ``pgbg stats`` query, and ``list_jobs before``, the list query used before
(one OR over every row), for comparison.

psycopg prepares a statement from its fifth run on, so a long watch mostly pays the
execution column; the planning column is what an unprepared run adds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import Role, scratch_database  # noqa: E402

ROLE = "pgbg_bench_watch"
BUDGET_MS = 5.0

# The list query before this bench existed: one OR over every row, bound by clock_timestamp()
# (volatile, so no index can serve it).
LIST_BEFORE = r"""
SELECT j.id, j.cookie, j.id || ':' || j.cookie AS handle, j.label, j.state, j.owner,
       j.queued_at, j.started_at, j.finished_at,
       round(extract(epoch FROM coalesce(j.finished_at, clock_timestamp())
                                - coalesce(j.started_at, j.queued_at)) * 1000)::bigint AS elapsed_ms,
       j.progress_pct, j.progress_msg, j.worker_pid, j.sqlstate, j.message, j.reason,
       left(regexp_replace(j.sql, '\s+', ' ', 'g'), 80) AS query
  FROM pgbg.job j
 WHERE (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s::text[]))
   AND (%(label)s::text IS NULL OR j.label LIKE %(label)s::text ESCAPE '\')
   AND (%(all)s OR j.state IN ('queued', 'starting', 'running')
        OR j.finished_at > clock_timestamp() - interval '1 hour')
 ORDER BY j.id DESC
 LIMIT %(limit)s
"""

FILL_FINISHED = """
INSERT INTO pgbg.job (owner, label, sql, state, queued_at, started_at, finished_at, worker_pid,
                      command_tag, row_count, sqlstate, message, reason)
SELECT %(role)s, 'batch-' || (i %% 20), 'SELECT ' || i || ' /* a finished job */',
       s.state, f.at - interval '2 seconds', f.at - make_interval(secs => 0.05 + (i %% 97) / 10.0), f.at,
       100000 + i, 'SELECT', 1,
       CASE s.state WHEN 'failed' THEN '22012' END, CASE s.state WHEN 'failed' THEN 'division by zero' END,
       CASE s.state WHEN 'lost' THEN 'its supervisor exited before recording the outcome' END
  FROM generate_series(%(first)s + 1, %(first)s + %(n)s) i
 CROSS JOIN LATERAL (SELECT CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 97 = 0 THEN 'canceled'
                                 WHEN i %% 211 = 0 THEN 'timed_out' WHEN i %% 503 = 0 THEN 'lost'
                                 ELSE 'succeeded' END AS state) s
 CROSS JOIN LATERAL (SELECT statement_timestamp() - %(span)s::interval * (1 - i::float8 / %(total)s) AS at) f
"""

FILL_RUNNING = """
INSERT INTO pgbg.job (owner, label, sql, state, queued_at, started_at, worker_pid, worker_cookie,
                      worker_started, supervisor_pid, supervisor_start, progress_pct, progress_msg, progress_at)
SELECT %(role)s, 'live-' || (i %% 5), 'SELECT pg_sleep(86400) /* a running job */', 'running',
       statement_timestamp() - make_interval(mins => i), statement_timestamp() - make_interval(mins => i),
       900000 + i, i, statement_timestamp() - make_interval(mins => i), %(supervisor)s,
       (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = %(supervisor)s),
       i * 2, 'step ' || i, statement_timestamp()
  FROM generate_series(%(first)s + 1, %(first)s + %(n)s) i
"""


class Recorder:
    """A connection that notes every statement it runs (to replay them under EXPLAIN)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.calls: list[tuple[str, Any]] = []

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        self.calls.append((query, params))
        return self._conn.execute(query, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def name_of(query: str) -> str:
    from pgbg_cli import queries

    for name in queries.names():
        if queries.text(name) == query:
            return name
    return re.sub(r"\s+", " ", query).strip()[:48]


def refresh_queries(conn: Any, view_name: str) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """(name, query, params) of the first refresh of a watch view and of the next one, as the
    view runs them (the first reads the whole window once; the next ones only what changed)."""
    from pgbg_cli import watch

    rec = Recorder(conn)
    view: Any
    if view_name == "list":
        view = watch.ListView(rec)
    else:
        view = watch.StatsView(rec, window_ms=24 * 3600 * 1000, window_text="24h")
    view.fetch()
    first = [(name_of(q), q, p) for q, p in rec.calls]
    rec.calls.clear()
    view.fetch()
    return first, [(name_of(q), q, p) for q, p in rec.calls]


def explain(conn: Any, query: str, params: Any, runs: int) -> tuple[float, float]:
    """Median (planning ms, execution ms) of ``runs`` EXPLAIN ANALYZE runs."""
    plans, execs = [], []
    for _ in range(runs):
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
        doc = row[next(iter(row))] if isinstance(row, dict) else row[0]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        plans.append(float(doc[0]["Planning Time"]))
        execs.append(float(doc[0]["Execution Time"]))
    return statistics.median(plans), statistics.median(execs)


def fill(admin: Any, *, finished: int, running: int, span: str, supervisor_pid: int) -> None:
    admin.execute("SET session_replication_role = replica")  # the guard trigger would queue them
    admin.execute("DELETE FROM pgbg.job")
    # Running jobs interleaved with the finished ones (long runners among them), by id.
    step = max(1, finished // max(1, running))
    for i in range(running):
        admin.execute(FILL_FINISHED, {"role": ROLE, "n": step, "span": span, "first": i * step, "total": finished})
        admin.execute(FILL_RUNNING, {"role": ROLE, "n": 1, "supervisor": supervisor_pid, "first": i})
    rest = finished - running * step
    if rest > 0:
        admin.execute(FILL_FINISHED, {"role": ROLE, "n": rest, "span": span, "first": running * step,
                                      "total": finished})
    admin.execute("RESET session_replication_role")
    admin.execute("VACUUM ANALYZE pgbg.job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="a superuser URI (default: the sandbox's)")
    parser.add_argument("-n", "--runs", type=int, default=15, help="EXPLAIN ANALYZE runs per query")
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row

    from pgbg_cli import db

    with scratch_database("pgbg_bench_watch", server=args.dsn, roles=[Role(ROLE)]) as scratch:
        scratch.keep = args.keep
        dsn = scratch.dsn
        admin = db.connect(dsn)
        # This session plays the role's live supervisor: registered (as the superuser) in
        # pgbg.supervisor, which pgbg.reconcile() reads, by its pid and backend start.
        supervisor = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        sup_pid = supervisor.info.backend_pid
        admin.execute("INSERT INTO pgbg.supervisor (pid, backend_start, role) "
                      "SELECT pid, backend_start, %s FROM pg_stat_activity WHERE pid = %s", (ROLE, sup_pid))
        bench = db.connect(dsn)
        bench.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(ROLE)))

        scenarios = [("30 days", "spread over 30 days"), ("1 hour", "all in the last hour")]
        results: dict[str, dict[str, tuple[float, float]]] = {}
        order: list[str] = []
        for span, title in scenarios:
            fill(admin, finished=args.finished, running=args.running, span=span, supervisor_pid=sup_pid)
            results[title] = {}
            for view_name in ("list", "stats"):
                first, calls = refresh_queries(bench, view_name)
                seen: dict[str, int] = {}
                for qname, query, qparams in calls:
                    seen[qname] = seen.get(qname, 0) + 1
                    key = f"{view_name}: {qname}" + (f" #{seen[qname]}" if seen[qname] > 1 else "")
                    results[title][key] = explain(bench, query, qparams, args.runs)
                    if key not in order:
                        order.append(key)
                for qname, query, qparams in first:
                    if qname == "stats_delta":  # the one query whose first run differs
                        key = f"({view_name}: stats_delta, first refresh: the whole window)"
                        results[title][key] = explain(bench, query, qparams, args.runs)
                        if key not in order:
                            order.append(key)
            before = explain(bench, LIST_BEFORE, {"states": None, "label": None, "all": False, "limit": 50},
                             args.runs)
            results[title]["(list_jobs before, for comparison)"] = before
            from pgbg_cli import queries

            key = "(pgbg stats, one shot: stats_jobs, 24h)"
            results[title][key] = explain(bench, queries.text("stats_jobs"),
                                          {"window_s": 86400.0, "by": None, "group": None}, args.runs)
            still = bench.execute("SELECT count(*) AS n FROM pgbg.job WHERE state = 'running'").fetchone()["n"]
            if still != args.running:
                print(f"bench: reconcile changed the running jobs ({still} of {args.running} left)", file=sys.stderr)
        for key in ("(pgbg stats, one shot: stats_jobs, 24h)", "(list_jobs before, for comparison)"):
            if key not in order:
                order.append(key)

        version = admin.execute("SHOW server_version").fetchone()["server_version"]
        print(f"PostgreSQL {version}; {args.finished} finished and {args.running} running jobs of one role; "
              f"median of {args.runs} EXPLAIN ANALYZE runs, ms (plan + exec)")
        titles = [t for _, t in scenarios]
        width = max(len(k) for k in order) + 2
        print("query".ljust(width) + "".join(t.rjust(26) for t in titles))
        for view_name in ("list", "stats"):
            totals = {t: [0.0, 0.0] for t in titles}
            for key in order:
                if not key.startswith(view_name + ":"):
                    continue
                cells = []
                for t in titles:
                    plan, exe = results[t][key]
                    totals[t][0] += plan
                    totals[t][1] += exe
                    cells.append(f"{plan:6.3f} + {exe:7.3f}".rjust(26))
                print(key.ljust(width) + "".join(cells))
            line = f"= one {view_name} refresh, execution (budget {BUDGET_MS:g} ms)"
            print(line.ljust(width) + "".join(f"{totals[t][1]:7.3f}".rjust(26) for t in titles))
            line = f"= one {view_name} refresh, planning + execution"
            print(line.ljust(width) + "".join(f"{sum(totals[t]):7.3f}".rjust(26) for t in titles))
        for key in order:
            if key.startswith("("):
                print(key.ljust(width) + "".join(f"{results[t][key][0]:6.3f} + {results[t][key][1]:7.3f}".rjust(26)
                                                  for t in titles))
        supervisor.close()
        bench.close()
        admin.close()


if __name__ == "__main__":
    main()
