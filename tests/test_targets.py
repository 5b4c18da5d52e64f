"""Several targets in one invocation (issue 11, items 4 and 5): repeated -d, --service,
--targets-file, --all-databases; two databases of the test server and a second server instance
(started here: scripts/sandbox.sh, instance <yours>-second); README, "Several databases and servers"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from conftest import ROOT, SANDBOX, fresh_database, retry, sql_runner
from psycopg.conninfo import conninfo_to_dict

from pgbg_cli import targets
from pgbg_cli.connopts import ConnOptions

UNREACHABLE = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=3"


@pytest.fixture(scope="module")
def second_db(server_dsn):
    """Another database of the test server, with pgbg."""
    with fresh_database(server_dsn, "pgbg_second") as dsns:
        yield dsns


@pytest.fixture(scope="module")
def second_server():
    """A database with pgbg on a second server instance of the same sandbox server."""
    if os.environ.get("PGBG_TEST_DSN"):
        pytest.skip("PGBG_TEST_DSN names one server: no sandbox instance to start beside it")
    env = dict(os.environ, PGBG_SANDBOX_INSTANCE=os.environ.get("PGBG_SANDBOX_INSTANCE", "main") + "-second")

    def sandbox(*args: str) -> str:
        return subprocess.run(["bash", str(SANDBOX), *args], check=True, capture_output=True, text=True,
                              env=env, timeout=600).stdout.strip()

    sandbox("start")
    try:
        with fresh_database(sandbox("dsn", "admin"), "pgbg_far") as dsns:
            yield dsns
    finally:
        sandbox("stop")


def _jobs(res) -> list[dict]:
    return json.loads(res.stdout)


def _launch(pgbg_proc, dsn: str, sql: str = "SELECT 1", *extra: str) -> str:
    res = pgbg_proc("launch", *extra, sql, dsn=dsn)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_names_and_handles():
    assert targets.split_handle("shop/12:345") == ("shop", "12:345")
    assert targets.split_handle("db1:5432/shop/12:-345") == ("db1:5432/shop", "12:-345")
    assert targets.split_handle("12:345") == (None, "12:345")
    assert targets.name_of("shop", "dbname=shop") == "shop"
    assert targets.name_of("service=prod", "service=prod") == "prod"
    assert targets.name_of("postgresql://u:secret@db1:5433/shop", "postgresql://u:secret@db1:5433/shop") \
        == "db1:5433/shop"
    chosen = targets.chosen(["a", "a", "b"], ConnOptions(host="db1"))
    assert [t.name for t in chosen] == ["a", "a#2", "b"]
    assert conninfo_to_dict(chosen[2].dsn) == {"host": "db1", "dbname": "b"}


def test_list_names_the_target_of_every_row(test_db, second_db, pgbg_proc):
    mine = _launch(pgbg_proc, test_db["app"])
    theirs = _launch(pgbg_proc, second_db["app"])
    res = pgbg_proc("list", "-a", "-F", "json", "-d", test_db["name"], "-d", second_db["name"], dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    where = {(row["target"], row["handle"]) for row in _jobs(res)}
    assert (test_db["name"], mine) in where and (second_db["name"], theirs) in where
    assert (second_db["name"], mine) not in where
    # for people: TARGET/ID:COOKIE, the handle wait takes
    plain = pgbg_proc("list", "-a", "-d", test_db["name"], "-d", second_db["name"], dsn=test_db["app"])
    assert f"{test_db['name']}/{mine}" in plain.stdout and f"{second_db['name']}/{theirs}" in plain.stdout
    # one target: the listing as ever, its job records' target null (README: JSON contract)
    one = pgbg_proc("list", "-a", "-F", "json", dsn=test_db["app"])
    assert one.returncode == 0 and all(row["target"] is None for row in _jobs(one))


def test_wait_takes_a_handle_per_target(test_db, second_db, pgbg_proc):
    mine = _launch(pgbg_proc, test_db["app"], "SELECT pg_sleep(0.5)")
    theirs = _launch(pgbg_proc, second_db["app"], "SELECT 1/0")
    a, b = test_db["name"], second_db["name"]
    res = pgbg_proc("wait", "-F", "json", "-d", a, "-d", b, f"{a}/{mine}", f"{b}/{theirs}", dsn=test_db["app"])
    assert res.returncode == 1, res.stderr  # one failed
    states = {(row["target"], row["handle"]): row["state"] for row in _jobs(res)}
    assert states == {(a, mine): "succeeded", (b, theirs): "failed"}
    assert f"pgbg: {b}: job {theirs} failed" in res.stderr
    # a handle is valid on its own target only
    wrong = pgbg_proc("wait", "-F", "json", "-d", a, "-d", b, f"{b}/{mine}", dsn=test_db["app"])
    assert wrong.returncode != 0 and "no job with handle" in wrong.stderr
    # which target: said, or refused in one line
    bare = pgbg_proc("wait", "-d", a, "-d", b, mine, dsn=test_db["app"])
    assert bare.returncode == 2 and "TARGET/ID:COOKIE" in bare.stderr
    nosuch = pgbg_proc("wait", "-d", a, "-d", b, f"elsewhere/{mine}", dsn=test_db["app"])
    assert nosuch.returncode == 2 and "no target named 'elsewhere'" in nosuch.stderr


def test_wait_timeout_across_targets(test_db, second_db, pgbg_proc):
    slow = _launch(pgbg_proc, second_db["app"], "SELECT pg_sleep(30)")
    quick = _launch(pgbg_proc, test_db["app"])
    a, b = test_db["name"], second_db["name"]
    res = pgbg_proc("wait", "-t", "1s", "-F", "json", "-d", a, "-d", b, f"{a}/{quick}", f"{b}/{slow}",
                    dsn=test_db["app"])
    assert res.returncode == 124, res.stderr
    states = {row["target"]: row["state"] for row in _jobs(res)}
    assert states[a] == "succeeded" and states[b] in ("queued", "starting", "running")
    pgbg_proc("cancel", "--no-wait", slow, dsn=second_db["app"])


def test_an_unreachable_target_does_not_stop_the_others(test_db, pgbg_proc):
    mine = _launch(pgbg_proc, test_db["app"])
    # every job (no "showing 50 of N" line when other tests' jobs pass the default limit)
    res = pgbg_proc("list", "-a", "-n", "1000000", "-F", "json", "-d", test_db["app"], "-d", UNREACHABLE, dsn="")
    assert res.returncode == 3, res.stderr
    rows = _jobs(res)
    down = [row for row in rows if row["state"] == "unreachable"]
    assert [row["target"] for row in down] == ["127.0.0.1:1/nowhere"]
    assert "cannot connect" in down[0]["message"]
    assert any(row["handle"] == mine for row in rows)
    assert res.stderr.startswith("pgbg: 127.0.0.1:1/nowhere: cannot connect") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr


def test_all_databases_lists_where_pgbg_is_and_says_what_it_skipped(test_db, second_db, pgbg_proc, server_dsn):
    mine = _launch(pgbg_proc, test_db["app"])
    theirs = _launch(pgbg_proc, second_db["app"])
    res = pgbg_proc("list", "-a", "-F", "json", "--all-databases", dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    where = {(row["target"], row["handle"]) for row in _jobs(res)}
    assert (test_db["name"], mine) in where and (second_db["name"], theirs) in where
    # postgres has no pg_background here (the sandbox makes it in database pgbg): named and skipped
    assert "pgbg: skipped postgres: " in res.stderr
    assert not any(row["target"] == "postgres" for row in _jobs(res))


def test_all_databases_are_looked_for_on_the_server_that_listed_them(test_db, second_db):
    """A host list could lead each database's connection to another server of the list."""
    from psycopg.conninfo import make_conninfo

    port = conninfo_to_dict(test_db["app"])["port"]
    listed = make_conninfo(test_db["app"], host="127.0.0.1,127.0.0.1", port=f"1,{port}")
    found, failed = targets.every_database([targets.Target("listed", listed)])
    assert not failed
    assert {t.name for t in found} >= {test_db["name"], second_db["name"]}
    for target in found:
        params = conninfo_to_dict(target.dsn)
        assert (params["host"], params["port"], params["dbname"]) == ("127.0.0.1", port, target.name)


def test_a_second_server(test_db, second_server, pgbg_proc):
    near = _launch(pgbg_proc, test_db["app"])
    far = _launch(pgbg_proc, second_server["app"])
    res = pgbg_proc("list", "-a", "-F", "json", "-d", test_db["app"], "-d", second_server["app"], dsn="")
    assert res.returncode == 0, res.stderr
    by_handle = {row["handle"]: row["target"] for row in _jobs(res)}
    assert by_handle[near] != by_handle[far]
    assert by_handle[far].endswith("/" + second_server["name"])
    res = pgbg_proc("wait", "-F", "json", "-d", test_db["app"], "-d", second_server["app"],
                    f"{by_handle[near]}/{near}", f"{by_handle[far]}/{far}", dsn="")
    assert res.returncode == 0, res.stderr
    assert {row["state"] for row in _jobs(res)} == {"succeeded"}


def test_targets_file_and_services(test_db, second_db, pgbg_proc, tmp_path):
    listing = tmp_path / "targets"
    listing.write_text(f"# the shop's databases\n{test_db['name']}\n\n{second_db['name']}\n")
    res = pgbg_proc("list", "-a", "-F", "json", "--targets-file", str(listing), dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    assert {row["target"] for row in _jobs(res)} <= {test_db["name"], second_db["name"]}
    services = tmp_path / "pg_service.conf"
    services.write_text("".join(
        f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in conninfo_to_dict(dsns["app"]).items())
        for name, dsns in (("near", test_db), ("other", second_db))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGSERVICEFILE"] = str(services)
    mine = _launch(pgbg_proc, test_db["app"])
    res = pgbg_proc("list", "-a", "-F", "json", "--service", "near", "--service", "other", env=env)
    assert res.returncode == 0, res.stderr
    assert ("near", mine) in {(row["target"], row["handle"]) for row in _jobs(res)}
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    res = pgbg_proc("list", "--targets-file", str(empty), dsn=test_db["app"])
    assert res.returncode == 2 and "names no target" in res.stderr


def test_a_nul_byte_in_a_targets_file_is_refused(test_db, pgbg_proc, tmp_path):
    """libpq reads a connection string up to a NUL byte: the rest (the host, port and user
    PGBG_DSN gives) was cut off and the target went to libpq's defaults, another server."""
    listing = tmp_path / "targets"
    listing.write_bytes(f"{test_db['name']}\n{test_db['name']}\0x\n".encode())
    for args, stdin in ((["--targets-file", str(listing)], None), (["--targets-file", "-"], listing.read_text())):
        res = pgbg_proc("list", *args, dsn=test_db["app"], input=stdin)
        assert res.returncode == 2, res
        assert res.stderr.count("\n") == 1 and "line 2" in res.stderr and "NUL" in res.stderr, res
        assert res.stdout == ""


def test_commands_of_one_database_refuse_several(test_db, pgbg_proc):
    res = pgbg_proc("show", "-d", test_db["name"], "-d", "other", "1:2", dsn=test_db["app"])
    assert res.returncode == 2
    assert "show works on one database" in res.stderr and res.stderr.count("\n") == 1
    # -d after the command replaces -d before it: one target
    res = pgbg_proc("-d", "nosuch", "list", "-d", test_db["name"], dsn=test_db["app"])
    assert res.returncode == 0, res.stderr



def test_stats_and_capacity_one_row_per_target(test_db, second_db, pgbg_proc):
    _launch(pgbg_proc, second_db["app"], "SELECT 1", "--wait")
    a, b = test_db["name"], second_db["name"]
    res = pgbg_proc("stats", "-F", "json", "-d", a, "-d", b, "-d", UNREACHABLE, dsn=test_db["app"])
    assert res.returncode == 3, res.stderr
    rows = {row["target"]: row for row in _jobs(res)}
    assert set(rows) == {a, b, "127.0.0.1:1/nowhere"}
    assert rows[b]["workers_completed"] >= 1 and rows[b]["error"] is None
    assert "cannot connect" in rows["127.0.0.1:1/nowhere"]["error"]
    by = pgbg_proc("stats", "-F", "json", "--by", "role", "-d", a, "-d", b, dsn=test_db["app"])
    assert by.returncode == 0, by.stderr
    assert {(row["target"], row["group"]) for row in _jobs(by)} >= {(b, "pgbg_app")}
    cap = pgbg_proc("capacity", "-F", "json", "-d", a, "-d", b, dsn=test_db["app"])
    assert cap.returncode == 0, cap.stderr
    assert [row["target"] for row in _jobs(cap)] == [a, b]
    assert all(row["max_worker_processes"] > 0 for row in _jobs(cap))
    people = pgbg_proc("capacity", "-d", a, "-d", b, dsn=test_db["app"])
    assert people.returncode == 0 and people.stdout.count("can start now") == 2
    assert people.stdout.splitlines()[0].split() == ["target", a]


def test_list_watch_on_several_targets(test_db, second_db, pgbg_proc):
    mine = _launch(pgbg_proc, second_db["app"], "SELECT pg_sleep(30)")
    a, b = test_db["name"], second_db["name"]
    res = pgbg_proc("list", "--watch", "-c", "2", "-i", "100ms", "-F", "json", "-d", a, "-d", b, "-d", UNREACHABLE,
                    dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    frames = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(frames) == 2
    for frame in frames:
        errors = {t["target"]: t["error"] for t in frame["targets"]}
        assert errors[a] is None and errors[b] is None and "cannot connect" in errors["127.0.0.1:1/nowhere"]
        assert (b, mine) in {(j["target"], j["handle"]) for j in frame["jobs"]}
        assert frame["counts"]["running"] + frame["counts"]["starting"] + frame["counts"]["queued"] >= 1
    lines = pgbg_proc("list", "--watch", "-c", "1", "-d", a, "-d", UNREACHABLE, dsn=test_db["app"])
    assert lines.returncode == 0 and "targets=1/2 unread=127.0.0.1:1/nowhere" in lines.stdout
    pgbg_proc("cancel", "--no-wait", mine, dsn=second_db["app"])


def test_wait_any_across_targets(test_db, second_db, pgbg_proc):
    slow = _launch(pgbg_proc, test_db["app"], "SELECT pg_sleep(60)")
    quick = _launch(pgbg_proc, second_db["app"], "SELECT pg_sleep(0.5)")
    a, b = test_db["name"], second_db["name"]
    try:
        # the quick one ends: the wait on the other target stops too (no --timeout: a wait that
        # went on would end with the slow job, succeeded)
        res = pgbg_proc("wait", "--any", "-F", "json", "-d", a, "-d", b, f"{a}/{slow}", f"{b}/{quick}",
                        dsn=test_db["app"])
        assert res.returncode == 0, res.stderr
        states = {(row["target"], row["handle"]): row["state"] for row in _jobs(res)}
        assert states[(b, quick)] == "succeeded"
        assert states[(a, slow)] in ("queued", "starting", "running")
        assert "timed out" not in res.stderr
        # none ends within --timeout: 124, and each target says so
        res = pgbg_proc("wait", "--any", "-t", "1s", "-d", a, "-d", b, f"{a}/{slow}", dsn=test_db["app"])
        assert res.returncode == 124, res.stderr
        assert f"pgbg: {a}: timed out waiting; the jobs go on" in res.stderr
        # one that failed ends the wait with 1
        broken = _launch(pgbg_proc, second_db["app"], "SELECT 1/0")
        res = pgbg_proc("wait", "--any", "-d", a, "-d", b, f"{a}/{slow}", f"{b}/{broken}",
                        dsn=test_db["app"])
        assert res.returncode == 1, res.stderr
        assert f"pgbg: {b}: job {broken} failed" in res.stderr
    finally:
        pgbg_proc("cancel", "--no-wait", slow, dsn=test_db["app"])


def test_stats_session_takes_one_target(test_db, pgbg_proc):
    res = pgbg_proc("stats", "--session", "-d", test_db["name"], "-d", "other", dsn=test_db["app"])
    assert res.returncode == 2 and "one target" in res.stderr, res.stderr


def test_stats_watch_on_several_targets(test_db, second_db, pgbg_proc):
    mine = _launch(pgbg_proc, second_db["app"], "SELECT pg_sleep(30)")
    a, b = test_db["name"], second_db["name"]
    down = "127.0.0.1:1/nowhere"
    res = pgbg_proc("stats", "--watch", "-c", "2", "-i", "100ms", "-F", "json", "-d", a, "-d", b, "-d", UNREACHABLE,
                    dsn=test_db["app"])
    assert res.returncode == 3, res.stderr
    frames = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(frames) == 2
    for frame in frames:
        errors = {t["target"]: t["error"] for t in frame["targets"]}
        assert errors[a] is None and errors[b] is None and "cannot connect" in errors[down]
        rows = {row["target"]: row for row in frame["stats"]}
        assert [row["target"] for row in frame["stats"]] == [a, b, down]
        assert rows[a]["error"] is None and rows[a]["max_worker_processes"] > 0 and "group" not in rows[a]
        assert rows[b]["workers_active"] + rows[b]["queued"] >= 1  # the job launched on b
        assert "cannot connect" in rows[down]["error"]
    by = pgbg_proc("stats", "--watch", "-c", "1", "-F", "json", "--by", "role", "-d", a, "-d", b,
                   dsn=test_db["app"])
    assert by.returncode == 0, by.stderr
    assert (b, "pgbg_app") in {(row["target"], row["group"]) for row in json.loads(by.stdout)["groups"]}
    csv = pgbg_proc("stats", "--watch", "-c", "2", "-i", "100ms", "-F", "csv", "-d", a, "-d", UNREACHABLE,
                    dsn=test_db["app"])
    assert csv.returncode == 3
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("at,target,window_s,") and lines[0].endswith(",error") and len(lines) == 5
    assert [line.split(",")[1] for line in lines[1:]] == [a, down, a, down]
    plain = pgbg_proc("stats", "--watch", "-c", "1", "-d", a, "-d", UNREACHABLE, dsn=test_db["app"])
    assert plain.returncode == 3 and f"target={a} window=24h" in plain.stdout
    assert f"target={down} unread: cannot connect" in plain.stdout
    pgbg_proc("cancel", "--no-wait", mine, dsn=second_db["app"])


def test_stats_watch_makes_a_dropped_target_connection_again(test_db, second_db):
    """Each target's connection is kept from one refresh to the next; one the server drops is a
    row saying so at that refresh, and is made again at the next."""
    import sys

    a, b = test_db["name"], second_db["name"]
    env = dict(os.environ, PGBG_DSN=test_db["app"], NO_COLOR="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", "stats", "--watch", "-c", "3", "-i", "2s", "-F", "json",
                             "-d", a, "-d", b], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert {t["target"]: t["error"] for t in first["targets"]} == {a: None, b: None}
        mine = ("SELECT pid FROM pg_stat_activity"
                " WHERE datname = %s AND usename = 'pgbg_app' AND application_name = 'pgbg'")
        with sql_runner(second_db["admin"]) as run:
            pids = [r["pid"] for r in run(mine, (b,))]
            assert len(pids) == 1  # the one connection kept for b
            run("SELECT pg_terminate_backend(%s)", (pids[0],))
            retry(lambda: not run(mine, (b,)), "b's connection gone")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    frames = [first] + [json.loads(line) for line in out.splitlines()]
    assert len(frames) == 3 and proc.returncode == 3, err
    second, third = ({t["target"]: t["error"] for t in f["targets"]} for f in frames[1:])
    assert second[a] is None and second[b] is not None
    assert third == {a: None, b: None}
    assert [row["target"] for row in frames[2]["stats"]] == [a, b] and frames[2]["stats"][1]["error"] is None


def test_at_most_at_once_targets_hold_a_connection(test_db, monkeypatch):
    import threading

    monkeypatch.setattr(targets, "AT_ONCE", 2)
    lock = threading.Lock()
    now = [0, 0]  # connected now, most at once

    def work(target, conn):
        with lock:
            now[0] += 1
            now[1] = max(now[1], now[0])
        conn.execute("SELECT pg_sleep(0.2)")
        with lock:
            now[0] -= 1
        return target.name

    many = [targets.Target(f"t{i}", test_db["app"]) for i in range(5)]
    outcomes = targets.each(many, work)
    assert [o.value for o in outcomes] == [f"t{i}" for i in range(5)]
    assert now[1] == 2


def test_launch_on_several_targets_then_wait(test_db, second_db, pgbg_proc):
    a, b = test_db["name"], second_db["name"]
    res = pgbg_proc("launch", "-l", "everywhere", "-d", a, "-d", b, "SELECT 1", dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    handles = res.stdout.split()
    assert [h.rsplit("/", 1)[0] for h in handles] == [a, b]
    done = pgbg_proc("wait", "-F", "json", "-d", a, "-d", b, *handles, dsn=test_db["app"])
    assert done.returncode == 0, done.stderr
    assert {(row["target"], row["label"], row["state"]) for row in _jobs(done)} \
        == {(a, "everywhere", "succeeded"), (b, "everywhere", "succeeded")}
    # every database with pgbg; JSON names the target of each job; one that fails is named, exit 3
    every = pgbg_proc("launch", "-F", "json", "--all-databases", "SELECT 2", dsn=test_db["app"])
    assert every.returncode == 0, every.stderr
    assert {a, b} <= {row["target"] for row in _jobs(every)}
    down = pgbg_proc("launch", "-F", "json", "-d", a, "-d", UNREACHABLE, "SELECT 3", dsn=test_db["app"])
    assert down.returncode == 3
    assert [row["state"] for row in _jobs(down)][1] == "unreachable"
    assert _jobs(down)[0]["handle"]


def test_launch_on_several_targets_to_a_full_stdout_names_the_jobs_in_the_targets_order(test_db, second_db):
    """The handles could not be printed: stderr names them, in the order the targets were given
    (whichever answered first), as stdout would have."""
    a, b = test_db["name"], second_db["name"]
    for order in ([a, b], [b, a]):
        label = f"full-{uuid.uuid4().hex[:8]}"
        with open("/dev/full", "w") as full:
            res = subprocess.run([sys.executable, "-m", "pgbg_cli", "launch", "-l", label,
                                  *(w for name in order for w in ("-d", name)), "SELECT 1"],
                                 text=True, stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE, timeout=120,
                                 env=dict(os.environ, PGBG_DSN=test_db["app"], PYTHONPATH=str(ROOT), NO_COLOR="1"))
        assert res.returncode == 3, res
        named = re.search(r"pgbg wait (.+) \(with the same targets\)$", res.stderr.strip())
        assert named, res.stderr
        assert [h.rsplit("/", 1)[0] for h in named.group(1).split()] == order, res.stderr


@pytest.mark.parametrize("extra", [["--wait"], ["--result"], ["SELECT 2"]], ids=" ".join)
def test_launch_on_several_targets_takes_one_statement_and_no_wait(test_db, pgbg_proc, extra):
    res = pgbg_proc("launch", "-d", test_db["name"], "-d", "other", "SELECT 1", *extra, dsn=test_db["app"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
