"""`--help` as a manual: examples that run, placeholders that say what goes there, choices
listed, one meaning per short option, and exit codes that the README, the help and the
behaviour agree on (Ctrl-C included, in a real process against the sandbox server).

The examples are run by a real shell against a server that answers nothing
(127.0.0.1:1): each must get as far as connecting (exit 3), which means that the command
line parsed and every value in it passed pgbg's own checks (exit 2 otherwise).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import typer
from conftest import ROOT, interrupt, interruptible, launch_handle, retry

from pgbg_cli import jobs
from pgbg_cli.app import app, split_examples
from pgbg_cli.commands import COMMANDS
from pgbg_cli.errors import ENVIRONMENT, EXIT_CODES, INTERRUPTED

README = (ROOT / "README.md").read_text(encoding="utf-8")
NOWHERE = "postgresql://nobody@127.0.0.1:1/x"
WIDTH = 80
# What Typer and click write when an option or argument has no metavar of its own
PLACEHOLDERS = re.compile(r"<(?:bool|str|int|float|path|file|list\[[^>]*\]|[a-z_]+)>|\bTEXT\b|\bINTEGER\b|"
                          r"\bFLOAT\b|\bBOOLEAN\b|\blist\[|\{[a-z_]+\}|\bPATH\b")
# psql's connection options (the conn work): these letters mean nothing else in pgbg
PSQL_LETTERS = {"-h": {"--host", "--help"}, "-p": {"--port"}, "-U": {"--username"}, "-d": {"--dbname", "--dsn"}}


def _help(*args: str) -> str:
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.stdout


def _section(text: str, title: str) -> list[str]:
    """The lines of a help section (``Examples:``), without their indentation."""
    match = re.search(rf"^{re.escape(title)}:\n((?:  .*\n?)+)", text, re.M)
    assert match, f"no {title} section in:\n{text}"
    return [line[2:] for line in match.group(1).splitlines()]


def _command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]


# --- examples ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_examples_of_itself(name):
    examples = _section(_help(name), "Examples")
    assert examples
    for line in examples:
        assert line == f"pgbg {name}" or line.startswith(f"pgbg {name} "), line
        assert len(line) + 2 <= WIDTH, f"longer than {WIDTH} columns: {line}"


def test_the_examples_are_the_docstrings_kept_line_by_line():
    text, examples = split_examples("""Do a thing.

    More about it, wrapped
    in the source.

    Examples:
      pgbg thing --a "x  y"
      pgbg thing
    """)
    assert examples == ['pgbg thing --a "x  y"', "pgbg thing"]
    assert text == "Do a thing.\n\nMore about it, wrapped\nin the source."
    assert split_examples("No examples.\n\nJust text.") == ("No examples.\n\nJust text.", [])


def test_root_help_has_examples_of_several_commands():
    examples = _section(_help(), "Examples")
    assert len({line.split()[1] for line in examples}) >= 3
    assert all(line.split()[0] == "pgbg" and line.split()[1] in COMMANDS for line in examples)


def _all_examples() -> list[str]:
    lines = _section(_help(), "Examples")
    for name in COMMANDS:
        lines += _section(_help(name), "Examples")
    return lines


@pytest.mark.parametrize("example", _all_examples())
def test_every_example_parses(example, tmp_path):
    """Run as written by a shell, against a server that answers nothing: exit 3, not 2."""
    for word in shlex.split(example):
        if word.endswith(".sql"):
            (tmp_path / word).write_text("SELECT 1\n", encoding="utf-8")
    env = dict(os.environ, PGBG_DSN=NOWHERE, NO_COLOR="1", PYTHONPATH=str(ROOT))
    env.pop("PGSERVICE", None)
    pgbg = f"{shlex.quote(sys.executable)} -m pgbg_cli"
    res = subprocess.run(["bash", "-c", "pgbg() { " + pgbg + ' "$@"; }; ' + example], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == ENVIRONMENT, res.stderr
    assert "cannot connect" in res.stderr and "Traceback" not in res.stderr


# --- placeholders, choices, short options ---------------------------------------------------

@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_no_placeholder_of_a_type(name):
    text = _help(*([name] if name else []))
    found = PLACEHOLDERS.findall(text.replace("{table}", "").replace("{schema}", "").replace("{name}", ""))
    assert not found, f"pgbg {name} --help: {found}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_choices_are_listed(name):
    """Every choice of every option and argument is in the help (not hidden behind a name)."""
    text = " ".join(_help(name).split())
    for param in _command(name).params:
        for choice in getattr(param.type, "choices", None) or []:
            value = getattr(choice, "value", choice)
            assert re.search(rf"\b{re.escape(value)}\b", text), f"pgbg {name}: {param.name} choice {value}"


def test_states_and_orders_are_listed():
    from pgbg_cli import fanout

    text = " ".join(_help("list").split())
    for state in jobs.STATES:
        assert re.search(rf"\b{state}\b", text.split("--state", 1)[1].split("-l,", 1)[0]), state
    order = " ".join(_help("fanout").split())
    for way in fanout.ORDERS:
        assert way in order


def _short_options() -> dict[str, dict[frozenset[str], list[str]]]:
    """Each short option: the long options it stands for, and in which commands."""
    group = typer.main.get_command(app)
    root = group.make_context("pgbg", [], resilient_parsing=True)
    seen: dict[str, dict[frozenset[str], list[str]]] = {}
    contexts = [("pgbg", group, root)] + [
        (f"pgbg {n}", group.commands[n], group.commands[n].make_context(n, [], parent=root, resilient_parsing=True))
        for n in COMMANDS]
    for where, command, ctx in contexts:
        for param in command.get_params(ctx):
            names = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
            longs = frozenset(n for n in names if n.startswith("--"))
            for short in (n for n in names if re.fullmatch(r"-[^-]", n)):
                seen.setdefault(short, {}).setdefault(longs, []).append(where)
    return seen


def test_each_short_option_means_one_thing():
    for short, meanings in _short_options().items():
        assert len(meanings) == 1, f"{short} means {sorted(sorted(m) for m in meanings)}"


def test_psql_letters_are_left_to_the_connection_options():
    for short, meanings in _short_options().items():
        if short in PSQL_LETTERS:
            (longs,) = meanings
            assert longs <= PSQL_LETTERS[short], f"{short} is {sorted(longs)}: psql's letters are for connecting"


def _readme_short_options() -> dict[str, str]:
    section = re.search(r"^### Short options\s*$(.*?)(?=^#)", README, re.M | re.S)
    assert section, "README.md has no '### Short options' section"
    rows = re.findall(r"^\|\s*`(-.)`\s*\|\s*`(--[a-z-]+)`", section.group(1), re.M)
    return dict(rows)


def test_readme_lists_every_short_option():
    tool = {short: min(longs) for short, meanings in _short_options().items() for longs in meanings}
    assert _readme_short_options() == tool


# --- exit codes ---------------------------------------------------------------------------------

def _readme_exit_codes() -> dict[int, str]:
    section = re.search(r"^## Exit codes\s*$(.*?)(?=^## )", README, re.M | re.S)
    assert section, "README.md has no '## Exit codes' section"
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.*?)\s*\|\s*$", section.group(1), re.M)
    return {int(code): text for code, text in rows}


def _help_exit_codes() -> dict[int, str]:
    codes: dict[int, str] = {}
    code = None
    for line in _section(_help(), "Exit codes"):
        first = re.match(r"(\d+)\s+(.*)", line)
        if first:
            code = int(first.group(1))
            codes[code] = first.group(2).strip()
        else:
            assert code is not None and line.startswith(" "), line
            codes[code] += " " + line.strip()
    return codes


def test_exit_codes_agree_in_readme_help_and_code():
    assert INTERRUPTED == 130 and INTERRUPTED in EXIT_CODES
    assert _readme_exit_codes() == EXIT_CODES
    assert _help_exit_codes() == EXIT_CODES


def test_bare_pgbg_prints_the_help_and_succeeds(pgbg_proc):
    res = pgbg_proc(env={"COLUMNS": str(WIDTH)})
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.startswith("Usage: pgbg ") and "Commands:" in res.stdout and "Exit codes:" in res.stdout


def test_usage_errors_speak_pgbg(pgbg_proc):
    """click's wording, in pgbg's voice: lower case, the hint, exit 2, no internals."""
    for args, words in ((["list", "--format", "yaml"], "'yaml' is not one of 'auto', 'table', 'plain', 'json', "
                         "'csv' (see pgbg list --help)"),
                        (["detach"], "missing argument 'HANDLE...' (see pgbg detach --help)"),
                        (["fanout", "VACUUM {table}", "--min-dead-tuples", "-1"],
                         "invalid --min-dead-tuples '-1': use a whole number from 0 to 9223372036854775807")):
        res = pgbg_proc(*args, dsn=NOWHERE)
        assert res.returncode == 2, res
        assert res.stderr.startswith("pgbg: ") and res.stderr.endswith(words + "\n"), res.stderr
        assert res.stderr.count("\n") == 1 and "Value error" not in res.stderr


def test_an_unknown_option_suggests_only_options_like_it(pgbg_proc):
    """click compares options with their dashes, which alone made `--bogus` look like `--host`
    and `--stat` like `--watch`: pgbg compares the names."""
    for args, words in ((["list", "--bogus"], "no such option: --bogus (see pgbg list --help)"),
                        (["list", "--st", "x"], "no such option: --st (see pgbg list --help)"),
                        (["list", "--stat", "x"], "no such option: --stat (Possible options: --state) "
                                                  "(see pgbg list --help)"),
                        (["list", "--lable", "x"], "no such option: --lable (Possible options: --label) "
                                                   "(see pgbg list --help)"),
                        (["list", "--hlep"], "no such option: --hlep (Possible options: --help) "
                                             "(see pgbg list --help)"),
                        (["--verison"], "no such option: --verison (Possible options: --version) "
                                        "(see pgbg --help)")):
        res = pgbg_proc(*args, dsn=NOWHERE)
        assert res.returncode == 2, res
        assert res.stderr == f"pgbg: {words}\n", res.stderr


# --- Ctrl-C: 130 in a real process -----------------------------------------------------------

LOOK_SQL = "SELECT j.* FROM pgbg.job j JOIN unnest"  # jobs.fetch_query, run on each turn of jobs.wait


def _popen(*args: str, dsn: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.Popen([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=interruptible)


def _waiting(sql_admin: Any) -> None:
    """Until a pgbg session of this database has looked at its jobs twice: it is in jobs.wait's
    loop, listening (the first look comes before the LISTEN)."""
    first: dict[int, Any] = {}

    def looked_twice() -> bool:
        rows = sql_admin("SELECT pid, query_start FROM pg_catalog.pg_stat_activity WHERE datname = "
                         "current_database() AND application_name = 'pgbg' AND starts_with(query, %s)", (LOOK_SQL,))
        return any(first.setdefault(row["pid"], row["query_start"]) != row["query_start"] for row in rows)

    retry(looked_twice, "pgbg waiting on its jobs", timeout=30)


def _interrupt(proc: subprocess.Popen[str], sql_admin: Any) -> tuple[int, str, str]:
    return interrupt(proc, lambda: _waiting(sql_admin))


def _state(sql_admin: Any, handle: str) -> str:
    job_id, cookie = handle.split(":")
    return sql_admin("SELECT state FROM pgbg.job WHERE id = %s AND cookie = %s", (int(job_id), int(cookie)))[0]["state"]


def test_ctrl_c_in_wait_exits_130_and_the_job_goes_on(test_db, sql_admin, cli):
    handle = launch_handle(cli, test_db["app"], "SELECT pg_sleep(60)")
    try:
        retry(lambda: _state(sql_admin, handle) == "running", "the job running", timeout=20)
        code, out, err = _interrupt(_popen("wait", handle, dsn=test_db["app"]), sql_admin)
        assert code == INTERRUPTED, err
        assert err == "pgbg: interrupted\n" and out == ""
        assert _state(sql_admin, handle) == "running"
    finally:
        cli("cancel", handle, dsn=test_db["app"])


def test_ctrl_c_in_launch_wait_cancels_and_exits_130(test_db, sql_admin):
    proc = _popen("launch", "--wait", "--format", "json", "--label", "help-ctrl-c", "SELECT pg_sleep(60)",
                  dsn=test_db["app"])
    code, out, err = _interrupt(proc, sql_admin)
    assert code == INTERRUPTED, err
    assert "pgbg: interrupted; canceling job " in err and "Traceback" not in err
    assert '"state": "canceled"' in out


def test_help_states_130_where_ctrl_c_matters():
    assert "130" in " ".join(_help("launch").split())
    assert "130 on Ctrl-C" in " ".join(_help("wait").split())
