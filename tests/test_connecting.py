"""Connections the way PostgreSQL users expect: libpq's environment, service file, .pgpass,
--dsn over PGBG_DSN, and application_name=pgbg."""

from __future__ import annotations

import json
import os
import stat

from psycopg.conninfo import conninfo_to_dict


def _env_without_dsn(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def test_libpq_environment_and_pgpass(test_db, pgbg_proc, tmp_path):
    params = conninfo_to_dict(test_db["app"])
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{params['host']}:{params['port']}:{params['dbname']}:{params['user']}:{params['password']}\n")
    passfile.chmod(stat.S_IRUSR | stat.S_IWUSR)
    env = _env_without_dsn(PGHOST=params["host"], PGPORT=str(params["port"]), PGDATABASE=params["dbname"],
                           PGUSER=params["user"], PGPASSFILE=str(passfile))
    res = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["owner"] == "pgbg_app"


def test_service_file(test_db, pgbg_proc, tmp_path):
    params = conninfo_to_dict(test_db["app"])
    services = tmp_path / "pg_service.conf"
    services.write_text("[pgbg-test]\n" + "".join(f"{k}={params[k]}\n" for k in
                                                 ("host", "port", "dbname", "user", "password")))
    env = _env_without_dsn(PGSERVICEFILE=str(services), PGSERVICE="pgbg-test")
    res = pgbg_proc("list", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    by_dsn = pgbg_proc("list", "--format", "json", "-d", "service=pgbg-test",
                       env=_env_without_dsn(PGSERVICEFILE=str(services)))
    assert by_dsn.returncode == 0, by_dsn.stderr


def test_dsn_option_wins_over_pgbg_dsn(test_db, cli):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1", "-d", test_db["other"], dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)["owner"] == "pgbg_other"


def test_application_name_is_pgbg(test_db, cli, sql_admin):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1", dsn=test_db["app"])
    assert res.exit_code == 0, res
    job = json.loads(res.stdout)
    row = sql_admin("SELECT client_app FROM pgbg.job WHERE id = %s", (int(job["handle"].split(":")[0]),))
    assert row[0]["client_app"] == "pgbg"
