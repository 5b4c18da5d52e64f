"""Docs kept true by tests (sqlite-utils' habit): every command and option has help text,
every command is in the README, and the README's exit-code table is errors.EXIT_CODES."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from pgbg_cli.cli import app
from pgbg_cli.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
INTERRUPTED = 130  # Ctrl-C (errors.INTERRUPTED, in EXIT_CODES)


def test_there_are_commands():
    assert {"launch", "wait", "cancel", "detach", "show", "list", "init", "grant", "revoke"} <= set(COMMANDS)


def test_the_group_has_help():
    assert (GROUP.help or "").strip()


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_text(name):
    command = GROUP.commands[name]
    assert (command.help or "").strip(), f"pgbg {name} has no help text (give its function a docstring)"
    assert not command.hidden or name.startswith("_")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_parameter_has_help_text(name):
    command = GROUP.commands[name]
    for param in command.params:
        if param.name == "help":
            continue
        text = getattr(param, "help", None)
        assert (text or "").strip(), f"pgbg {name}: {param.name} has no help text"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_in_the_readme(name):
    assert re.search(rf"\bpgbg {re.escape(name)}\b", README), f"README.md never mentions `pgbg {name}`"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_a_reference_section(name):
    headings = re.findall(r"^#{2,4} .*$", README, re.M)
    assert any(re.search(rf"`pgbg {re.escape(name)}\b", h) for h in headings), (
        f"README.md has no heading for `pgbg {name}` in its command reference"
    )


def _readme_exit_codes() -> dict[int, str]:
    section = re.search(r"^## Exit codes\s*$(.*?)(?=^## )", README, re.M | re.S)
    assert section, "README.md has no '## Exit codes' section"
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.*?)\s*\|\s*$", section.group(1), re.M)
    return {int(code): text for code, text in rows}


def test_readme_exit_code_table_matches_errors_module():
    table = _readme_exit_codes()
    assert INTERRUPTED in table, "the exit-code table lacks 130 (Ctrl-C)"
    assert table == EXIT_CODES


def test_help_epilog_lists_every_exit_code():
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert res.exit_code == 0
    flat = " ".join(res.stdout.split())
    for code, text in EXIT_CODES.items():
        assert f"{code} {text}" in flat


def test_readme_quick_start_is_two_make_commands():
    section = re.search(r"^## Quick start\s*$(.*?)(?=^## )", README, re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", section.group(1), re.S)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make demo", "make test"]


def test_readme_never_shows_a_password():
    for secret in ("sandbox-app-secret", "sandbox-admin-secret"):
        assert secret not in README
    assert not re.search(r"postgres(?:ql)?://[^:\s/@]+:(?!\*\*\*@)[^@\s]+@", README)


