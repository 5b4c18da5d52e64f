"""The bench scripts' own helpers (bench/scratch.py, bench/chaos.py's instance lock): a bench
with no server to talk to, or whose sandbox instance another chaos run holds, stops with one
line and exit code 2, never with a traceback."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import chaos  # noqa: E402


def _bench(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_a_bench_without_its_server_says_one_line() -> None:
    # port 1 on the loopback: nothing listens there
    res = _bench("bench_watch.py", "--dsn", "postgresql://postgres:not-this-secret@127.0.0.1:1/postgres")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bench_watch: cannot connect to "), lines
    assert "not-this-secret" not in res.stderr
    assert res.stdout == ""


def test_chaos_stops_when_another_run_holds_its_instance() -> None:
    instance = f"lockcheck{os.getpid()}"
    env = dict(os.environ, PGBG_CHAOS_INSTANCE=instance, PGBG_SANDBOX_INSTANCE="not-this-one")
    path = chaos.lock_path(instance)
    try:
        with open(path, "a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.write("pid 4242\n")
            held.flush()
            res = _bench("chaos.py", "--jobs", "1", env=env)
    finally:
        path.unlink(missing_ok=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"sandbox instance {instance}" in lines[0] and "another chaos run (pid 4242" in lines[0], lines
    assert res.stdout == ""
