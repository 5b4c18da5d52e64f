"""Round trips to the server, counted on the wire (bench/wire.py): a launch waits for the
server at most 3 times after connecting, however the server is set up, and the messages
of a missing schema or privilege stay what they were."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import retry
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from wire import Relay  # noqa: E402

LAUNCH_MOST = 3  # issue 10: at most 3 round trips after connecting


@pytest.fixture(scope="module")
def relay(server_dsn: str) -> Iterator[Relay]:
    params = conninfo_to_dict(server_dsn)
    with Relay(params.get("host") or "127.0.0.1", int(params.get("port") or 5432)) as r:
        yield r


def _counted(relay: Relay, pgbg_proc, dsn: str, *args: str):
    relay.reset()
    res = pgbg_proc(*args, dsn=relay.dsn(dsn))
    sessions = retry(lambda: relay.sessions() if all(
        c.connect_flights is not None for c in relay.sessions()) else None, "the relay to see the session")
    return res, sessions


def _supervisor_alive(sql_admin) -> bool:
    return sql_admin("SELECT pgbg.supervisor_pid('pgbg_app') AS pid")[0]["pid"] is not None


@pytest.mark.parametrize("args", [
    ("launch", "SELECT 1"),
    ("launch", "--result", "SELECT 1 AS one, now() AS at"),
    ("launch", "--label", "rt", "--timeout", "5s", "SELECT 1; SELECT 2"),
    ("launch", "--wait", "SELECT 1"),
], ids=lambda a: " ".join(a[1:]))
def test_a_launch_waits_for_the_server_at_most_three_times(relay, pgbg_proc, test_db, args):
    res, sessions = _counted(relay, pgbg_proc, test_db["app"], *args)
    assert res.returncode == 0, res.stderr
    assert len(sessions) == 1
    if "--wait" not in args and "--result" not in args:
        assert sessions[0].round_trips <= LAUNCH_MOST, sessions[0]
    else:  # waiting polls: more round trips, for as long as the job runs
        assert sessions[0].round_trips > 2


def test_a_result_of_a_type_pgbg_does_not_read_is_refused_in_as_few(relay, pgbg_proc, test_db, sql_admin):
    sql_admin("DROP TYPE IF EXISTS rt_mood; CREATE TYPE rt_mood AS ENUM ('fine')")
    sql_admin("GRANT USAGE ON TYPE rt_mood TO PUBLIC")
    before = sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"]
    res, sessions = _counted(relay, pgbg_proc, test_db["app"], "launch", "--result", "SELECT 'fine'::rt_mood AS m")
    assert res.returncode == 2
    assert "--result cannot return a column of type public.rt_mood" in res.stderr
    assert sessions[0].round_trips <= LAUNCH_MOST
    assert sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"] == before  # nothing was queued


def test_a_launch_that_starts_the_supervisor_is_no_longer(relay, pgbg_proc, test_db, sql_admin):
    # the supervisor ends after supervisor_idle_ms without work: the next launch starts one
    retry(lambda: not _supervisor_alive(sql_admin), "the role's supervisor to go idle", timeout=30)
    res, sessions = _counted(relay, pgbg_proc, test_db["app"], "launch", "SELECT 1")
    assert res.returncode == 0, res.stderr
    assert sessions[0].round_trips <= LAUNCH_MOST
    job_id = int(res.stdout.split(":")[0])
    retry(lambda: sql_admin("SELECT 1 FROM pgbg.job WHERE id = %s AND state = 'succeeded'", (job_id,)),
          "the job to run (under the supervisor its launch started)", timeout=30)


def test_a_refused_statement_costs_one_round_trip(relay, pgbg_proc, test_db):
    res, sessions = _counted(relay, pgbg_proc, test_db["app"], "launch", "SELEC 1")
    assert res.returncode == 1
    assert "the server refused the SQL; nothing was queued: syntax error" in res.stderr
    assert sessions[0].round_trips == 1


def test_missing_schema_and_privilege_keep_their_messages(relay, pgbg_proc, bare_db, test_db):
    res, sessions = _counted(relay, pgbg_proc, bare_db["app"], "launch", "SELECT 1")
    assert res.returncode == 3
    assert "pgbg's schema is not installed in database" in res.stderr and "run pgbg init" in res.stderr
    assert sessions[0].round_trips <= LAUNCH_MOST
    res, sessions = _counted(relay, pgbg_proc, test_db["plain"], "launch", "SELECT 1")
    assert res.returncode == 3
    assert "may not use" in res.stderr and "grant" in res.stderr
    assert sessions[0].round_trips <= LAUNCH_MOST


@pytest.mark.parametrize("args", [("list",), ("list", "--state", "succeeded"), ("show", "H"), ("wait", "H")],
                         ids=" ".join)
def test_reading_commands_take_two_round_trips(relay, pgbg_proc, test_db, args):
    handle = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", dsn=test_db["app"])
    assert handle.returncode == 0, handle.stderr
    import json

    h = json.loads(handle.stdout)["handle"]
    res, sessions = _counted(relay, pgbg_proc, test_db["app"], *[h if a == "H" else a for a in args])
    assert res.returncode == 0, res.stderr
    # list: one more when a listed job runs (its progress); none runs here but other tests' may
    assert sessions[0].round_trips <= (3 if args[0] == "list" else 2), sessions[0]
