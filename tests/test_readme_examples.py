"""The README's examples run as written against the sandbox's sample database.

Every `$ pgbg ...` line of the README's `console` blocks is run, in the README's order, by a
shell (pipes and comments as written), with PGBG_DSN set to a database holding the sample
tables of `make shop` (scripts/shop.sql, fewer rows) as the role pgbg_app; pgbg's
administrative commands run as the superuser, and a line that says `# as ROLE` runs as that
role. A handle the README printed for an earlier example stands for the handle that example
printed here; any other long handle stands for a job of its own: still running where the
README shows the example timing out (124), finished otherwise. The README's `pgbg init` runs
on a database where pgbg is not installed yet. A console block after the comment
`<!-- situation: no free worker slot -->` runs with every free worker slot of the server
taken and no supervisor of pgbg_app alive; one after `<!-- situation: pgbg installed -->`
runs right after the README's `pgbg init`; before one after `<!-- situation: dead tuples -->`
every row of orders is updated (20,000 dead tuples; autovacuum is off for it). Each example must:

- exit with the code the README shows after it (`$ echo $?`), or else not with a usage
  error (2) nor a connection, extension, schema or privilege problem (3) it does not show;
- name nothing that does not exist, and never print a traceback.

`--watch` without `--count` runs until stopped: such lines are stopped after a few seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, interruptible, retry, sql_runner

README = ROOT / "README.md"
SHOP_SQL = ROOT / "scripts" / "shop.sql"
ADMIN_COMMANDS = {"init", "grant", "revoke", "dispatch", "doctor"}
HANDLE = re.compile(r"\b(\d+):(\d{10,})\b")  # short cookies are the README's wrong handles
WATCH_STOP_S = 4
EXTRA_ROLES = ("ops", "reporting", "etl")  # the README grants and revokes them; etl uses pg_background


SITUATION = re.compile(r"<!-- situation: (.+?) -->")
SITUATIONS = ("no free worker slot", "pgbg installed", "dead tuples")


@dataclass
class Example:
    line: int
    command: str
    situation: str | None = None
    situation_block: int | None = None  # the line of the comment that set the situation
    output: list[str] = field(default_factory=list)
    exit_code: int | None = None  # shown by a following `$ echo $?`


def examples(text: str) -> list[Example]:
    """The `$ pgbg` lines of the console blocks, with the output and exit code shown after each."""
    found: list[Example] = []
    in_console = False
    last: Example | None = None
    expect_code = False
    situation: str | None = None
    situation_line: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        said = SITUATION.search(raw)
        if said:
            situation, situation_line = said.group(1), number
            assert situation in SITUATIONS, f"README.md:{number}: no test knows situation {situation!r}"
            continue
        if raw.startswith("```"):
            if in_console:
                situation = None
            in_console = raw.strip() == "```console" if not in_console else False
            last, expect_code = None, False
            continue
        if not in_console:
            continue
        if raw.startswith("$ "):
            command = raw[2:]
            if command.strip() == "echo $?":
                expect_code = last is not None
                continue
            expect_code = False
            last = Example(number, command, situation, situation_line) if re.match(r"pgbg\b", command) else None
            if last:
                found.append(last)
            continue
        if expect_code and last is not None and raw.strip().isdigit():
            last.exit_code = int(raw.strip())
            expect_code = False
            continue
        if last is not None:
            last.output.append(raw)
    return found


def test_the_readme_has_examples_to_run():
    found = examples(README.read_text(encoding="utf-8"))
    assert len(found) >= 30
    assert any(e.exit_code == 3 for e in found) and any(e.exit_code == 2 for e in found)


@pytest.fixture(scope="module")
def shop(server_dsn: str) -> Iterator[dict[str, str]]:
    """A database like `make shop`'s (fewer rows) where pgbg is not installed yet (the README's
    `pgbg init` does it), and the roles the README grants and revokes."""
    from conftest import APP_PASSWORD, _drop_db, _make_db, _with_db

    with sql_runner(server_dsn) as run:
        for role in EXTRA_ROLES:
            if not run("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)):
                run(f"CREATE ROLE {role} LOGIN")
        run("GRANT pgbackground_role TO etl")  # before pgbg: `pgbg revoke etl` keeps it
    name = f"pgbg_readme_{uuid.uuid4().hex[:8]}"
    admin = _make_db(server_dsn, name, init=False)
    dsns = {"admin": admin, "app": _with_db(server_dsn, name, "pgbg_app", APP_PASSWORD),
            "plain": _with_db(server_dsn, name, "pgbg_plain", APP_PASSWORD), "name": name}
    try:
        with sql_runner(admin) as run:
            run("SET shop.rows = 5000")
            run(SHOP_SQL.read_text(encoding="utf-8"))
            run("ALTER TABLE public.orders SET (autovacuum_enabled = false)")
        yield dsns
        subprocess.run([sys.executable, "-m", "pgbg_cli", "dispatch", "disable"], capture_output=True,
                       env=dict(os.environ, PGBG_DSN=admin, PYTHONPATH=str(ROOT)), timeout=60)
    finally:
        _drop_db(server_dsn, name)
        with sql_runner(server_dsn) as run:
            for role in EXTRA_ROLES:
                run(f"DROP ROLE IF EXISTS {role}")


def _dsn_for(example: Example, shop: dict[str, str]) -> str:
    who = re.search(r"#\s*as (\w+)", example.command)
    if who:
        role = who.group(1)
        return {"pgbg_plain": shop["plain"], "pgbg_app": shop["app"], "postgres": shop["admin"]}[role]
    words = example.command.split()
    if words[1] in ADMIN_COMMANDS or (words[1] == "settings" and len([w for w in words[2:] if w[0] != "#"]) >= 2):
        return shop["admin"]
    return shop["app"]


def _run(command: str, dsn: str) -> tuple[int | None, str, str]:
    """Run one example line in bash with pgbg on PATH; None as exit code: stopped (a --watch)."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PGBG_DSN=dsn, NO_COLOR="1", COLUMNS="100", PATH=f"{bindir}:{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True, preexec_fn=interruptible)
    watching = "--watch" in command and "--count" not in command
    try:
        out, err = proc.communicate(timeout=WATCH_STOP_S if watching else 120)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        if not watching:
            raise AssertionError(f"README line {command!r} did not end in 120 s") from None
        return None, out, err


def _job(shop: dict[str, str], *, running: bool) -> str:
    """The handle of a job of pgbg_app's own: one that sleeps on, or one that has ended."""
    sql = "SELECT pg_sleep(300)" if running else "SELECT 1"
    code, out, err = _run(f"pgbg launch {'' if running else '--wait '}-F json '{sql}'", shop["app"])
    found = HANDLE.search(out)
    assert code == 0 and found, (code, out, err)
    return found.group(0)


def _make_dead_tuples(shop: dict[str, str]) -> None:
    with sql_runner(shop["admin"]) as run:
        run("UPDATE public.orders SET total_cents = coalesce(total_cents, 0) + 1")
        run("SELECT pg_stat_force_next_flush()")
        retry(lambda: run("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'public.orders'::regclass")
              [0]["n_dead_tup"] >= 10000, "the server counts orders' dead tuples", timeout=30)


def _in_situation(example: Example, shop: dict[str, str], server_dsn: str) -> tuple[int | None, str, str]:
    from test_dispatch import slots_filled

    with sql_runner(shop["admin"]) as run:
        run("SELECT pg_terminate_backend(pgbg.supervisor_pid('pgbg_app'))")
        retry(lambda: run("SELECT pgbg.supervisor_pid('pgbg_app') IS NULL AS gone")[0]["gone"],
              "no supervisor of pgbg_app", timeout=20)
    with slots_filled(server_dsn):
        return _run(example.command, _dsn_for(example, shop))


def _in_order(found: list[Example]) -> list[Example]:
    """The README's order, but what needs pgbg installed right after the first `pgbg init`."""
    later = [e for e in found if e.situation == "pgbg installed"]
    ordered = [e for e in found if e.situation != "pgbg installed"]
    at = next(i for i, e in enumerate(ordered) if e.command.split()[:2] == ["pgbg", "init"]
              and "--check" not in e.command)
    return ordered[:at + 1] + later + ordered[at + 1:]


def test_every_example_runs_as_written(shop, server_dsn):
    handles: dict[str, str] = {}
    failures: list[str] = []
    dead_for: int | None = None
    for example in _in_order(examples(README.read_text(encoding="utf-8"))):
        command = example.command
        for shown in dict.fromkeys(m.group(0) for m in HANDLE.finditer(command)):
            if shown not in handles:
                handles[shown] = _job(shop, running=example.exit_code == 124)
            command = command.replace(shown, handles[shown])
        if example.situation == "dead tuples" and dead_for != example.situation_block:
            _make_dead_tuples(shop)
            dead_for = example.situation_block
        if example.situation == "no free worker slot":
            code, out, err = _in_situation(Example(example.line, command), shop, server_dsn)
        else:
            code, out, err = _run(command, _dsn_for(example, shop))
        # handles this example printed stand, in later examples, for those the README shows
        shown_handles = [m.group(0) for m in HANDLE.finditer("\n".join(example.output))]
        real_handles = [m.group(0) for m in HANDLE.finditer(out + err)]
        for shown, real in zip(shown_handles, real_handles, strict=False):
            handles.setdefault(shown, real)
        where = f"README.md:{example.line}: {example.command}"
        if "Traceback" in err:
            failures.append(f"{where}: a traceback: {err[-500:]}")
            continue
        if example.exit_code is not None:
            if code != example.exit_code:
                failures.append(f"{where}: exit {code}, the README shows {example.exit_code}: {err.strip()[:300]}")
            continue
        if code in (2, 3) and not _shown_as_error(example, err):
            failures.append(f"{where}: exit {code}: {err.strip()[:300]}")
        elif re.search(r"does not exist|no such (table|database)|\[42P01\]|\[3D000\]", err):
            failures.append(f"{where}: names something the sandbox lacks: {err.strip()[:300]}")
    assert not failures, "\n".join(failures)


def _shown_as_error(example: Example, err: str) -> bool:
    """The README shows this example failing this way (its output has the same pgbg: line start),
    or it needs what this server lacks (pg_cron, for `pgbg dispatch`)."""
    if example.command.split()[1] == "dispatch" and "pg_cron is not loaded" in err:
        return True
    wanted = [line for line in example.output if line.startswith("pgbg: ")]
    return any(err.startswith(line[:30]) for line in wanted)
