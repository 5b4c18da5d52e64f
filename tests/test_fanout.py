"""pgbg fanout: one statement template over the tables that match, most urgent first, each
table's name quoted by the server (against the real sandbox server)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import fresh_database, retry, sql_runner

ODD = 'odd "name"; DROP TABLE public.big --'


@pytest.fixture(scope="module")
def db(server_dsn) -> Iterator[dict[str, str]]:
    with fresh_database(server_dsn, "pgbg_fanout") as dsns:
        with sql_runner(dsns["admin"]) as run:
            run("CREATE SCHEMA sales AUTHORIZATION pgbg_app")
            run("CREATE TABLE public.big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
            run("CREATE TABLE public.small (id int)")
            run("CREATE TABLE sales.orders_2025 (id int) WITH (autovacuum_enabled = false)")  # keeps its dead tuples
            run("INSERT INTO sales.orders_2025 SELECT generate_series(1, 3000)")
            run("CREATE TABLE sales.orders_2026 (id int)")
            run("CREATE TABLE public." + '"' + ODD.replace('"', '""') + '"' + " (id int)")
            run("CREATE TABLE public.not_mine (id int)")  # the superuser's: pgbg_app may not maintain it
            for name in ("public.big", "public.small", "sales.orders_2025", "sales.orders_2026",
                         'public."' + ODD.replace('"', '""') + '"'):
                run(f"ALTER TABLE {name} OWNER TO pgbg_app")
            run("DELETE FROM sales.orders_2025 WHERE id <= 1000")
            run("SELECT pg_stat_force_next_flush()")
            run("ANALYZE")
            # the statistics reach other sessions a moment later: wait for the server to count them
            retry(lambda: run("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'sales.orders_2025'::regclass")
                  [0]["n_dead_tup"] >= 1000, "the server counts the dead tuples", timeout=30)
        yield dsns


def _rows(cli, db, *args: str) -> list[dict]:
    res = cli("fanout", *args, "--dry-run", "-F", "json", dsn=db["app"])
    assert res.exit_code == 0, res
    return json.loads(res.stdout)


def test_largest_first_with_names_quoted_by_the_server(cli, db):
    rows = _rows(cli, db, "VACUUM (ANALYZE) {table}")
    targets = [r["target"] for r in rows]
    assert targets[0] == "public.big"
    assert set(targets) == {"public.big", "public.small", "sales.orders_2025", "sales.orders_2026",
                            'public."odd ""name""; DROP TABLE public.big --"'}
    assert [r["bytes"] for r in rows] == sorted((r["bytes"] for r in rows), reverse=True)
    odd = next(r for r in rows if "odd" in r["target"])
    assert odd["sql"] == 'VACUUM (ANALYZE) public."odd ""name""; DROP TABLE public.big --"'


def test_the_role_s_tables_only_for_maintenance_and_who_was_left_out(cli, db):
    res = cli("fanout", "VACUUM {table}", "--dry-run", "-F", "json", dsn=db["app"])
    assert "public.not_mine" not in res.stdout
    assert res.stderr == ("pgbg: left out 1 table this role may not maintain (the server would skip them with "
                          "a warning): public.not_mine\n")
    rows = _rows(cli, db, "SELECT count(*) FROM {table}", "--schema", "public", "--table", "not_*")
    assert [r["target"] for r in rows] == ["public.not_mine"]  # not maintenance: launch's checks decide


def test_patterns_floors_and_order(cli, db):
    rows = _rows(cli, db, "ANALYZE {schema}.{name}", "--schema", "sales", "--order", "name")
    assert [r["sql"] for r in rows] == ["ANALYZE sales.orders_2025", "ANALYZE sales.orders_2026"]
    rows = _rows(cli, db, "ANALYZE {table}", "--table", "sales.orders_*", "--exclude-table", "*_2026")
    assert [r["target"] for r in rows] == ["sales.orders_2025"]
    rows = _rows(cli, db, "VACUUM {table}", "--min-dead-tuples", "500", "--order", "dead")
    assert [r["target"] for r in rows] == ["sales.orders_2025"] and rows[0]["dead_tuples"] >= 1000
    rows = _rows(cli, db, "VACUUM {table}", "--min-size", "1MB")
    assert [r["target"] for r in rows] == ["public.big"]
    rows = _rows(cli, db, "VACUUM {table}", "--table", "small", "--min-xid-age", "0", "--order", "xid-age")
    assert [r["target"] for r in rows] == ["public.small"] and rows[0]["xid_age"] > 0


def test_nothing_matches_exits_1(cli, db):
    res = cli("fanout", "VACUUM {table}", "--table", "nothing_*", "--dry-run", dsn=db["app"])
    assert res.exit_code == 1 and res.stderr.endswith("pgbg: no table matches\n")


@pytest.mark.parametrize(("args", "message"), [
    (["VACUUM big"], "the statement template names no table"),
    (["VACUUM {table}", "--min-size", "3XB"], "invalid --min-size '3XB'"),
    (["VACUUM {table}", "--order", "random"], "invalid --order 'random'"),
    (["VACUUM {table}", "--table", ""], "invalid table pattern"),
])
def test_bad_input_is_one_line_and_exit_2(cli, db, args, message):
    res = cli("fanout", *args, "--dry-run", dsn=db["app"])
    assert res.exit_code == 2 and res.stderr.startswith("pgbg: " + message), res
    assert res.stderr.count("\n") == 1


def test_launches_one_group_most_urgent_first_and_waits(cli, db):
    from conftest import job_row

    res = cli("fanout", "VACUUM (ANALYZE) {table}", "--schema", "sales", "--order", "dead", "-j", "1",
              "-G", "fan-test", "--wait", "-F", "json", dsn=db["app"])
    assert res.exit_code == 0, res
    jobs = json.loads(res.stdout)
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    with sql_runner(db["admin"]) as run:
        rows = [job_row(run, j["handle"]) for j in jobs]
    assert [r["sql"] for r in rows] == ["VACUUM (ANALYZE) sales.orders_2025", "VACUUM (ANALYZE) sales.orders_2026"]
    assert {(r["group_name"], r["group_limit"]) for r in rows} == {("fan-test", 1)}
    assert rows[0]["finished_at"] <= rows[1]["started_at"]  # one at a time, in that order


def test_without_wait_prints_one_handle_per_table(cli, db):
    res = cli("fanout", "ANALYZE {table}", "--table", "sales.orders_*", "-j", "2", dsn=db["app"])
    assert res.exit_code == 0, res
    handles = res.stdout.split()
    assert len(handles) == 2 and all(":" in h for h in handles)
    assert "pgbg: group batch-" in res.stderr and "(at most 2 at a time)" in res.stderr
    res = cli("wait", *handles, dsn=db["app"])
    assert res.exit_code == 0, res
