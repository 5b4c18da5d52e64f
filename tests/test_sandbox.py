"""scripts/sandbox.sh itself: a server whose processes were killed without a shutdown starts
again, even when the pid its lock files name now belongs to another process (instance
<yours>-stale of the test server's sandbox server)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import SANDBOX
from psycopg.conninfo import conninfo_to_dict


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_lock_files_naming_a_live_process_of_another_server_do_not_stop_a_start(server_dsn):
    if os.environ.get("PGBG_TEST_DSN"):
        pytest.skip("PGBG_TEST_DSN names one server: no sandbox instance to start beside it")
    env = dict(os.environ, PGBG_SANDBOX_INSTANCE=os.environ.get("PGBG_SANDBOX_INSTANCE", "main") + "-stale")

    def sandbox(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SANDBOX), *args], check=check, capture_output=True, text=True,
                              env=env, timeout=600)

    sandbox("start")
    dsn = sandbox("dsn", "admin").stdout.strip()
    port = conninfo_to_dict(dsn)["port"]
    base = Path(sandbox("logfile").stdout.strip()).parent  # <root>/var/lib/pgbg-sandbox/<instance>
    root = base.parents[3]
    pidfile, socket_lock = base / "data" / "postmaster.pid", root / "tmp" / f".s.PGSQL.{port}.lock"
    saved = {pidfile: pidfile.read_text(), socket_lock: socket_lock.read_text()}
    sandbox("stop")
    assert not pidfile.exists()

    # What a server killed with all its processes leaves, when its pid has since been taken by a
    # process of the same uid: here the checkpointer of the test server, from the same root.
    with psycopg.connect(server_dsn) as conn:
        other = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'").fetchone()[0]
    for path, text in saved.items():
        path.write_text("\n".join([str(other), *text.split("\n")[1:]]))
    try:
        status = sandbox("status", check=False)
        assert status.returncode == 3 and status.stdout.startswith("stopped"), status.stdout
        sandbox("stop")  # nothing to stop, and the other process is left alone
        assert _alive(other)

        started = sandbox("start", check=False)
        assert started.returncode == 0, started.stderr
        assert "removing the postmaster.pid of a server that no longer runs" in started.stderr
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != other
        new_pid = int(pidfile.read_text().split("\n")[0])
        assert new_pid != other and _alive(new_pid)
        assert sandbox("status").stdout.startswith("running")
        assert _alive(other)
    finally:
        sandbox("stop", check=False)
        for path in saved:  # never leave a lock file that names the other server's process
            if path.exists() and path.read_text().split("\n")[0] == str(other):
                path.unlink()
