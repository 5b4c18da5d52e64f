"""What pgbg loads before it works: --version without Typer, one command's module for one
command, help with every command listed in full. (How long it takes: bench/bench_cli.py.)"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import launch_handle

from pgbg_cli import __version__, commands
from pgbg_cli.app import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
sys.argv = ["pgbg", *json.loads(sys.argv[1])]
from pgbg_cli.cli import run
code = run()
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def _probe(*args: str) -> tuple[int, list[str], str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    env.pop("PGBG_DSN", None)
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    marker = res.stderr.rsplit("PROBE ", 1)
    assert len(marker) == 2, f"probe crashed:\n{res.stderr}"
    info = json.loads(marker[1])
    return info["code"], info["modules"], res.stdout


def test_the_command_table_is_what_the_modules_register():
    registered: dict[str, str] = {}
    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"pgbg_cli.commands.{info.name}")
        if hasattr(module, "register"):
            app = typer.Typer()
            module.register(app)
            registered.update({c.name: info.name for c in app.registered_commands})
    assert registered == COMMANDS


def test_version_answers_before_typer_loads():
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "pgbg_cli", "--version"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0
    assert res.stdout == f"pgbg {__version__}\n"
    loaded = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if "|" in line]
    assert "pgbg_cli.cli" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("typer", "psycopg", "rich")], loaded


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_typers_version_option_prints_the_same_line(flag):
    code, _, out = _probe(flag)  # run(): through Typer, as `pgbg -V --help` or CliRunner go
    assert code == 0 and out == f"pgbg {__version__}\n"


@pytest.mark.parametrize("command", ["launch", "list", "init"])
def test_a_command_loads_its_own_module_only(command):
    code, modules, out = _probe(command, "--help")
    assert code == 0 and f"pgbg {command}" in out
    loaded = {m.rsplit(".", 1)[-1] for m in modules if m.startswith("pgbg_cli.commands.")}
    own = COMMANDS[command]
    assert own in loaded
    assert not loaded & (set(COMMANDS.values()) - {own, "stats"}), loaded  # jobs borrows stats' options
    assert "rich" not in modules and "psycopg" not in modules


def test_help_lists_every_command_with_its_whole_summary():
    code, _, out = _probe("--help")
    assert code == 0
    listed = out.split("Commands:", 1)[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed
    assert "..." not in listed


@pytest.mark.parametrize("args, env, expected", [
    (["list", "-d", "host=a"], None, "host=a"),
    (["list", "--dsn", "host=a"], "host=env", "host=a"),
    (["list", "--dsn=host=a"], None, "host=a"),
    (["list", "-dhost=a"], None, "host=a"),
    (["list", "-d", "host=a", "--dsn", "host=b"], None, "host=b"),  # click keeps the last one
    (["launch", "--", "-d", "host=a"], "host=env", "host=env"),  # after --: arguments
    (["list"], "host=env", "host=env"),
    (["list"], "", None),
    (["-h", "db1", "list", "-d", "shop"], None, "host=db1 dbname=shop"),  # before and after the command
    (["-h", "db1", "list", "--host=db2", "-p5433", "-U", "me"], None, "host=db2 port=5433 user=me"),  # after wins
    (["list", "-d", "shop"], "host=env user=u", "host=env user=u dbname=shop"),  # a name: PGBG_DSN's dbname
    (["list", "-h", "db1", "-d", "host=a"], "host=env", "host=a"),  # a conninfo's fields win, as in psql
    (["list", "-p", "5433", "-d", "host=a"], "host=env", "port=5433 host=a"),  # ... options fill in the rest
    (["list", "-p", "abc"], "host=env", None),  # refused by the command line, not guessed
])
def test_the_dsn_a_command_line_names(monkeypatch, args, env, expected):
    from pgbg_cli.cli import dsn_named

    if env is None:
        monkeypatch.delenv("PGBG_DSN", raising=False)
    else:
        monkeypatch.setenv("PGBG_DSN", env)
    from psycopg.conninfo import conninfo_to_dict

    got = dsn_named(args)
    assert (got and conninfo_to_dict(got)) == (expected and conninfo_to_dict(expected)), got


@pytest.mark.parametrize("args, connects", [
    (["launch", "SELECT 1"], True), (["list", "--help"], False), (["list", "-?"], False), (["list", "-h", "db1"], True),
    (["-h", "db1", "list"], True), (["-U", "me", "-?"], False), (["-d", "x"], False),
    (["launch", "--", "--help"], True), (["--help"], False), (["nosuch"], False), ([], False),
])
def test_which_command_lines_connect_early(monkeypatch, args, connects):
    from pgbg_cli.cli import _connects

    monkeypatch.delenv("_PGBG_COMPLETE", raising=False)
    assert _connects(args) is connects


def test_a_wrong_guess_of_the_dsn_costs_nothing_but_time(pgbg_proc, test_db, sql_admin):
    # "-d" is the label here; the early connection (to "SELECT 1", not a DSN) is not made
    res = pgbg_proc("launch", "--wait", "--format", "json", "-l", "-d", "SELECT 1", dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["label"] == "-d"
    # a DSN that names another role: the early connection is the one used, as the server says
    res = pgbg_proc("launch", "--wait", "--format", "json", "-d", test_db["other"], "SELECT 1", dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["owner"] == "pgbg_other"


def test_a_failed_early_connection_reads_as_any(pgbg_proc):
    res = pgbg_proc("list", "-d", "host=/nonexistent-pgbg port=5999 connect_timeout=2")
    assert res.returncode == 3
    assert res.stderr.startswith("pgbg: cannot connect to PostgreSQL: ")
    assert "(set -h, -p, -U, -d, PGBG_DSN or the PG* environment variables)" in res.stderr
    assert "Traceback" not in res.stderr


WAIT_PROBE = """
import json, sys
import psycopg
sys.argv = ["pgbg", *json.loads(sys.argv[1])]
first = []
sleep = psycopg.Connection.notifies
def notifies(self, *args, **kwargs):
    if not first:
        first.append(sorted(sys.modules))
    return sleep(self, *args, **kwargs)
psycopg.Connection.notifies = notifies
from pgbg_cli.cli import run
code = run()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "modules": first[0] if first else None}) + "\\n")
"""


@pytest.mark.parametrize("fmt, renderer", [("plain", "pgbg_cli.plaintable"), ("table", "rich.table"), ("json", "json")])
def test_a_wait_loads_what_it_prints_before_it_sleeps(cli, test_db, fmt, renderer):
    # so that it prints and exits the moment its job ends (bench/bench_latency.py)
    handle = launch_handle(cli, test_db["app"], "SELECT pg_catalog.pg_sleep(60)")
    try:
        env = dict(os.environ, PGBG_DSN=test_db["app"], NO_COLOR="1", PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, "-c", WAIT_PROBE,
                              json.dumps(["wait", "--timeout", "1s", "--format", fmt, handle])],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        info = json.loads(res.stderr.rsplit("PROBE ", 1)[1])
        assert info["code"] == 124, res.stderr
        assert info["modules"] is not None, "it never slept on LISTEN"
        assert {renderer, "pgbg_cli.jobview", "pgbg_cli.progress"} <= set(info["modules"])
    finally:
        assert cli("cancel", handle, dsn=test_db["app"]).exit_code == 0
