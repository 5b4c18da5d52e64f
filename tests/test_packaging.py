"""What ships: the wheel carries every SQL file, every query file is used, and the CLI's
help and version start without psycopg (they must stay fast and work without a server)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pgbg_cli import __version__

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "pgbg_cli"
QUERY_FILES = sorted((PKG / "queries").glob("*.sql"))
SCHEMA_FILES = sorted((PKG / "schema").glob("*.sql"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the sources (so no stale build/ folder can leak into it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PKG, src / "pgbg_cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--disable-pip-version-check", "-q",
         "-w", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, f"pip wheel failed:\n{res.stdout}\n{res.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        yield zf


def test_there_are_sql_files_to_check():
    assert QUERY_FILES and SCHEMA_FILES


def test_wheel_contains_every_query_and_schema_file(wheel):
    names = set(wheel.namelist())
    missing = [f"pgbg_cli/{p.parent.name}/{p.name}" for p in QUERY_FILES + SCHEMA_FILES
               if f"pgbg_cli/{p.parent.name}/{p.name}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for p in QUERY_FILES + SCHEMA_FILES:
        assert wheel.read(f"pgbg_cli/{p.parent.name}/{p.name}").decode() == p.read_text(encoding="utf-8")


def test_wheel_metadata_and_console_script(wheel):
    dist = f"pgbg_cli-{__version__}.dist-info"
    meta = wheel.read(f"{dist}/METADATA").decode()
    assert re.search(r"^Name: pgbg-cli$", meta, re.M)
    assert re.search(rf"^Version: {re.escape(__version__)}$", meta, re.M)
    entry_points = wheel.read(f"{dist}/entry_points.txt").decode()
    assert re.search(r"^pgbg\s*=\s*pgbg_cli\.cli:main$", entry_points, re.M)


def test_wheel_has_no_tests_or_build_leftovers(wheel):
    for name in wheel.namelist():
        assert not name.startswith(("tests/", "bench/", "scripts/")), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name


def _package_text(excluding: Path) -> str:
    parts = []
    for path in sorted(PKG.rglob("*")):
        if path.suffix in (".py", ".sql") and path != excluding and "__pycache__" not in path.parts:
            parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.name)
def test_every_query_file_is_used(path):
    name = path.stem
    assert re.search(rf"[\"']{re.escape(name)}[\"']", _package_text(path)), (
        f"queries/{path.name} is used nowhere in pgbg_cli/ (load it with queries.text({name!r}) or delete it)"
    )


def test_every_query_named_in_code_exists():
    text = _package_text(PKG / "nothing")
    named = set(re.findall(r"queries\.text\(\s*[\"']([A-Za-z0-9_]+)[\"']", text))
    existing = {p.stem for p in QUERY_FILES}
    assert named, "no queries.text(...) call found: has the loader been renamed?"
    assert named <= existing, f"queries.text() of missing files: {sorted(named - existing)}"


# One interpreter per check, as a user's shell would start one.
PROBE = """
import json, sys
sys.argv = ["pgbg", *json.loads(sys.argv[1])]
from pgbg_cli.cli import run  # what the console script's main() runs before its fast exit
code = run()
loaded = sorted(m for m in sys.modules if m == "psycopg" or m.startswith(("psycopg.", "psycopg_")))
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "psycopg": loaded}) + "\\n")
"""


def _probe(*args: str) -> tuple[int, list[str], str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    env.pop("PGBG_DSN", None)
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    marker = res.stderr.rsplit("PROBE ", 1)
    assert len(marker) == 2, f"probe crashed:\n{res.stderr}"
    info = json.loads(marker[1])
    return info["code"], info["psycopg"], res.stdout


def _commands() -> list[str]:
    import typer

    from pgbg_cli.cli import app

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("args", [["--help"], ["-?"], ["--version"], ["-V"]], ids=" ".join)
def test_help_and_version_do_not_import_psycopg(args):
    code, loaded, out = _probe(*args)
    assert code == 0
    assert loaded == [], f"pgbg {' '.join(args)} imported {loaded}"
    if "--version" in args or "-V" in args:
        assert out == f"pgbg {__version__}\n"
    else:
        assert "Usage" in out and "launch" in out


@pytest.mark.parametrize("command", _commands())
def test_command_help_does_not_import_psycopg(command):
    code, loaded, out = _probe(command, "--help")
    assert code == 0, out
    assert loaded == [], f"pgbg {command} --help imported {loaded}"
    assert f"pgbg {command}" in out


@pytest.mark.parametrize("args", [["--help"], ["--version"]], ids=" ".join)
def test_python_dash_m_exits_0(args):
    res = subprocess.run([sys.executable, "-m", "pgbg_cli", *args], capture_output=True, text=True,
                         env=dict(os.environ, NO_COLOR="1"), cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert ("Usage" in res.stdout) if args == ["--help"] else (res.stdout == f"pgbg {__version__}\n")


def test_console_script_is_installed_in_the_venv():
    script = Path(sys.executable).parent / "pgbg"
    assert script.exists(), f"no pgbg beside {sys.executable}: run make venv (pip install -e '.[dev]')"
    assert os.access(script, os.X_OK)
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"pgbg {__version__}\n"


def test_installed_wheel_runs_a_job_outside_the_source_tree(wheel, tmp_path, test_db):
    """``pip install`` of the wheel into a new virtualenv gives a pgbg that finds its SQL files
    (package data, not the source tree) and runs a job against the real server."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          wheel.filename], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYTHON"))}
    env.update(PGBG_DSN=test_db["app"], NO_COLOR="1")
    pgbg = str(venv / "bin" / "pgbg")
    version = subprocess.run([pgbg, "--version"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("pgbg "), version.stderr
    run = subprocess.run([pgbg, "launch", "--wait", "--format", "json", "SELECT 41 + 1"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert '"state": "succeeded"' in run.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import pgbg_cli; print(pgbg_cli.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert str(venv) in where.stdout, "pgbg_cli was imported from outside the new virtualenv"
