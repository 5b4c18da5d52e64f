"""Shell completion: the committed completions/ files are what the generator makes today,
and the installed `pgbg` really answers a shell's completion requests (bash for real;
zsh and fish too where they are installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgbg_cli import completions

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PGBG = str(BIN / "pgbg")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PGBG", "COMP_", "_TYPER"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_committed_scripts_are_up_to_date(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pgbg_cli.completions", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, env=_env())
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(completions.FILES.values())
    for name in completions.FILES.values():
        committed = (ROOT / "completions" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, (
            f"completions/{name} is stale: run make completions (python -m pgbg_cli.completions completions/)")


def test_the_generator_wants_a_directory():
    res = subprocess.run([sys.executable, "-m", "pgbg_cli.completions"], capture_output=True, text=True,
                         env=_env())
    assert res.returncode == 2 and "usage" in res.stderr


def test_scripts_name_pgbg_and_its_variable():
    for shell in completions.FILES:
        text = completions.script(shell)
        assert "_PGBG_COMPLETE=complete_" + shell in text
        assert "pgbg" in text
    assert completions.script("zsh").startswith("#compdef pgbg\n")


@pytest.mark.parametrize("instruction", ["bash_complete", "complete_bash"])
def test_installed_pgbg_answers_bash_completion(instruction):
    res = subprocess.run([PGBG], capture_output=True, text=True, timeout=60,
                         env=_env(_PGBG_COMPLETE=instruction, COMP_WORDS="pgbg li", COMP_CWORD="1"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["list"]


@pytest.mark.parametrize("words, cword, expected", [
    ("pgbg stats --by ", "3", ["label", "role", "group"]),
    ("pgbg list --wa", "2", ["--watch"]),
    ("pgbg pr", "1", ["prune"]),
    ("pgbg list --format j", "3", ["json"]),
])
def test_completion_knows_options_and_choices(words, cword, expected):
    res = subprocess.run([PGBG], capture_output=True, text=True, timeout=60,
                         env=_env(_PGBG_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == expected


def test_bash_sourcing_the_script_completes(tmp_path):
    script = ROOT / "completions" / "pgbg.bash"
    probe = (f"source {script}\n"
             "COMP_WORDS=(pgbg li); COMP_CWORD=1; _pgbg_completion pgbg\n"
             "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
             "COMP_WORDS=(pgbg stats --by ''); COMP_CWORD=3; _pgbg_completion pgbg\n"
             "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
             "complete -p pgbg\n")
    res = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=60, env=_env())
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["list", "label", "role", "group", "complete -o default -F _pgbg_completion pgbg"]


@pytest.mark.skipif(shutil.which("fish") is None and not os.environ.get("CI"),
                    reason="fish is not installed here (make test installs it; CI never skips)")
def test_fish_completes():
    script = ROOT / "completions" / "pgbg.fish"
    res = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C 'pgbg li'"],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\t")[0] == "list"


@pytest.mark.skipif(shutil.which("zsh") is None and not os.environ.get("CI"),
                    reason="zsh is not installed here (make test installs it; CI never skips)")
def test_zsh_script_parses_and_pgbg_answers_zsh():
    assert subprocess.run(["zsh", "-n", str(ROOT / "completions" / "_pgbg")]).returncode == 0
    res = subprocess.run([PGBG], capture_output=True, text=True, timeout=60,
                         env=_env(_PGBG_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="pgbg sta"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("_arguments") and '"stats"' in res.stdout
