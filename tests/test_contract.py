"""The job record (README "JSON contract"): every command that prints jobs prints the same
fields, in the same order, with the same meanings, in JSON and CSV, the whole SQL included; and
a listing cut by its limit holds exactly that many rows and says so on stderr.

Real server: each job here is launched, waited for, canceled or detached through pgbg.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import extnames
import pytest
from conftest import ROOT, fresh_database, job_row, retry

from pgbg_cli import jobview

FIELDS = list(jobview.CONTRACT_FIELDS)
# longer than any preview, with white space a preview would fold
SQL = "SELECT pg_sleep(%s)\n  -- the whole statement,\ttabs and newlines included, in JSON and CSV: " + "x" * 60
TIMES = ("queued_at", "started_at", "finished_at")
# what every command must agree on for one job (what changes as it runs aside)
STABLE = ("pgbg_job", "id", "handle", "source", "label", "group", "owner", "sql", "queued_at",
          "timeout_ms", "client_addr")


def _label() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def _parse(text: str, fmt: str) -> list[dict[str, Any]] | dict[str, Any]:
    """What a script reads: JSON as is; CSV as dicts, after checking the header is the contract."""
    if fmt == "json":
        return json.loads(text)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == FIELDS, rows[0]
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def _as_csv(record: dict[str, Any]) -> dict[str, str]:
    """A JSON record as its CSV row reads: "" for null, JSON text for objects and lists."""
    out = {}
    for key, value in record.items():
        if value is None:
            out[key] = ""
        elif isinstance(value, dict | list):
            out[key] = json.dumps(value, ensure_ascii=False)
        else:
            out[key] = str(value)
    return out


def _check_record(rec: dict[str, Any]) -> None:
    """One JSON record: the contract's keys in order, and values of the documented types."""
    assert list(rec) == FIELDS, list(rec)
    assert rec["pgbg_job"] == jobview.CONTRACT_VERSION == 1
    assert rec["source"] in ("pgbg", "other", None)
    for key in TIMES:
        if rec[key] is not None:
            stamp = dt.datetime.fromisoformat(rec[key])
            assert stamp.utcoffset() == dt.timedelta(0), rec[key]  # ISO 8601, in UTC, offset written
    if rec["source"] == "pgbg":
        assert isinstance(rec["id"], int) and rec["handle"].startswith(f"{rec['id']}:")
        assert isinstance(rec["messages_dropped"], int)
        assert rec["messages"] is None or isinstance(rec["messages"], list)
    else:  # a worker pgbg did not launch (other), or a target that could not be used (None)
        assert rec["id"] is None and rec["handle"] is None and rec["messages"] is None
        assert rec["messages_dropped"] is None
        assert (rec["source"] is None) == (rec["state"] in ("unreachable", "unavailable"))
    if rec["started_at"] and rec["finished_at"]:
        took = dt.datetime.fromisoformat(rec["finished_at"]) - dt.datetime.fromisoformat(rec["started_at"])
        assert abs(rec["duration_ms"] - took.total_seconds() * 1000) <= 1, rec
    if rec["started_at"] is None:
        assert rec["duration_ms"] is None
    assert rec["progress"] is None or isinstance(rec["progress"], dict)


@pytest.fixture
def outputs(cli: Callable[..., Any], test_db: dict[str, str]) -> Callable[..., Any]:
    """``outputs(*args)``: the command's JSON and CSV, checked against each other and the contract.

    Returns the JSON (object or array). Only for jobs that no longer change (the JSON and CSV
    runs are two reads)."""

    def run(*args: str) -> Any:
        got = {}
        for fmt in ("json", "csv"):
            res = cli(*args, "--format", fmt, dsn=test_db["app"])
            assert res.exit_code in (0, 1), res
            assert "Traceback" not in res.stderr
            got[fmt] = _parse(res.stdout, fmt)
        records = got["json"] if isinstance(got["json"], list) else [got["json"]]
        for rec in records:
            _check_record(rec)
            assert rec["target"] is None  # one target
        assert [_as_csv(rec) for rec in records] == got["csv"]  # same columns, same values, whole SQL
        return got["json"]

    return run


def test_every_command_prints_the_same_record_in_json_and_csv(cli, outputs, test_db, sql_admin):
    app = test_db["app"]
    label = _label()
    quick = SQL % 0

    # launch --wait: one object (each format launches a job of its own)
    res = cli("launch", "--wait", "--label", label, "--format", "csv", quick, dsn=app)
    assert res.exit_code == 0, res
    [in_csv] = _parse(res.stdout, "csv")
    assert in_csv["sql"] == quick and in_csv["state"] == "succeeded" and in_csv["pgbg_job"] == "1"
    res = cli("launch", "--wait", "--label", label, "--format", "json", quick, dsn=app)
    assert res.exit_code == 0, res
    launched = json.loads(res.stdout)
    _check_record(launched)
    handle = launched["handle"]
    # show: one object; wait, list: arrays -- all of the same job
    assert launched["state"] == "succeeded" and launched["sql"] == quick
    shown = outputs("show", handle)
    [waited] = outputs("wait", handle)
    listed = next(r for r in outputs("list", "--label", label) if r["handle"] == handle)
    for rec in (shown, waited, listed):
        assert {k: rec[k] for k in STABLE} == {k: launched[k] for k in STABLE}
        assert (rec["state"], rec["command_tag"], rec["row_count"]) == ("succeeded", "SELECT", 1)
        assert rec["finished_at"] == launched["finished_at"] and rec["duration_ms"] == launched["duration_ms"]
    assert launched["owner"] == "pgbg_app" and launched["label"] == label and launched["group"] is None
    row = job_row(sql_admin, handle)  # the meanings: what the registry holds
    assert launched["id"] == row["id"] and launched["sql"] == row["sql"]
    assert dt.datetime.fromisoformat(launched["queued_at"]) == row["queued_at"]

    # launch (not waited): the record of a queued job, in JSON and in CSV
    for fmt in ("json", "csv"):
        res = cli("launch", "--label", label, "--format", fmt, SQL % 30, dsn=app)
        assert res.exit_code == 0, res
        got = _parse(res.stdout, fmt)
        rec = got if fmt == "json" else got[0]
        if fmt == "json":
            _check_record(rec)
        assert rec["sql"] == SQL % 30 and rec["label"] == label and rec["state"] in ("queued", "starting", "running")

    # cancel: an array of the records it stopped
    live = [r["handle"] for r in json.loads(cli("list", "--label", label, "--state", "running", "--state", "queued",
                                                "--state", "starting", "--format", "json", dsn=app).stdout)]
    assert len(live) == 2
    res = cli("cancel", *live, "--format", "json", dsn=app)
    assert res.exit_code == 0, res
    canceled = json.loads(res.stdout)
    for rec in canceled:
        _check_record(rec)
    assert [r["handle"] for r in canceled] == live and {r["state"] for r in canceled} == {"canceled"}
    assert outputs("cancel", *live)[0]["state"] == "canceled"  # ended already: exit 1, records all the same

    # detach: a running job (its worker ends on its own a moment later)
    detached = cli("launch", "--label", label, SQL % 1, dsn=app).stdout.strip()
    retry(lambda: job_row(sql_admin, detached)["state"] == "running", "the job runs", timeout=20)
    [rec] = outputs("detach", detached)
    assert rec["state"] == "detached" and rec["handle"] == detached and rec["sql"] == SQL % 1


def test_batches_groups_and_watch_lines_print_the_same_record(cli, outputs, test_db):
    app = test_db["app"]
    label, group = _label(), f"g-{uuid.uuid4().hex[:8]}"
    sqls = [SQL % 0, "SELECT 2"]
    # launch of several jobs: an array of records (JSON), one row each (CSV), in the given order
    res = cli("launch", "--group", group, "--jobs", "2", "--label", label, "--format", "json", *sqls, dsn=app)
    assert res.exit_code == 0, res
    batch = json.loads(res.stdout)
    for rec in batch:
        _check_record(rec)
    assert [r["sql"] for r in batch] == sqls and {r["group"] for r in batch} == {group}
    res = cli("launch", "--group", group, "--label", label, "--format", "csv", *sqls, dsn=app)
    assert res.exit_code == 0, res
    assert [r["sql"] for r in _parse(res.stdout, "csv")] == sqls
    # wait --group and list --group: the same records
    waited = outputs("wait", "--group", group)
    assert len(waited) == 4 and {r["handle"] for r in batch} <= {r["handle"] for r in waited}
    assert {r["state"] for r in waited} == {"succeeded"} and {r["group"] for r in waited} == {group}
    listed = outputs("list", "--group", group)
    assert {r["handle"] for r in listed} == {r["handle"] for r in waited}
    # list --watch's JSON lines: their jobs are records too
    res = cli("list", "--watch", "--count", "1", "--interval", "0.1", "--label", label, "--format", "json",
              dsn=app)
    assert res.exit_code == 0, res
    [line] = [json.loads(text) for text in res.stdout.splitlines()]
    for rec in line["jobs"]:
        _check_record(rec)
    assert {r["handle"] for r in line["jobs"]} == {r["handle"] for r in listed}
    assert {r["sql"] for r in line["jobs"]} == set(sqls)


@contextmanager
def _foreign_worker(dsn: str) -> Iterator[int]:
    """A pg_background worker that pgbg did not launch, running for a minute; its pid."""
    import psycopg

    def fn(role: str) -> str:
        return extnames.fn(dsn, role)

    with psycopg.connect(dsn, autocommit=True) as conn:
        pid, cookie = conn.execute(f"SELECT * FROM {fn('launch')}('SELECT pg_sleep(60) /* not pgbg''s */')"
                                   ).fetchone()
        try:
            yield pid
        finally:
            conn.execute(f"SELECT {fn('cancel')}(%s, %s, 0)", (pid, cookie))
            conn.execute(f"SELECT {fn('detach')}(%s, %s)", (pid, cookie))


@pytest.fixture(scope="module")
def counted_db(server_dsn: str) -> Iterator[dict[str, str]]:
    """A database of its own, so that the test knows how many jobs a listing holds."""
    with fresh_database(server_dsn, "pgbg_contract") as dsns:
        yield dsns


def _listed(cli: Callable[..., Any], dsn: str, *args: str) -> tuple[list[dict[str, Any]], str]:
    res = cli("list", *args, "--format", "json", dsn=dsn)
    assert res.exit_code == 0, res
    return json.loads(res.stdout), res.stderr


def test_a_limit_counts_exactly_and_a_cut_listing_says_so(cli, counted_db):
    app = counted_db["app"]
    label = _label()
    handles = [cli("launch", "--wait", "--label", label, "--format", "json", f"SELECT {i}", dsn=app)
               for i in range(5)]
    assert all(h.exit_code == 0 for h in handles), handles
    newest_first = [json.loads(h.stdout)["handle"] for h in reversed(handles)]

    rows, err = _listed(cli, app, "--label", label, "-n", "3")
    assert [r["handle"] for r in rows] == newest_first[:3]
    assert "pgbg: showing 3 of 5 (use -n/--limit to show more" in err
    rows, err = _listed(cli, app, "--label", label, "--limit", "5")
    assert len(rows) == 5 and "showing" not in err
    rows, err = _listed(cli, app, "--label", label, "--all", "-n", "4")
    assert len(rows) == 4 and "pgbg: showing 4 of 5 (use -n/--limit to show more)" in err

    # a worker pgbg did not launch is listed, and counted: -n 3 is still 3 rows
    with _foreign_worker(app) as pid:
        def seen() -> list[dict[str, Any]]:
            return [r for r in _listed(cli, app)[0] if r["source"] == "other"]

        [other] = retry(seen, "the other worker is listed", timeout=20)
        _check_record(other)
        assert other["worker_pid"] == pid and other["state"] == "running"
        assert other["sql"] == "SELECT pg_sleep(60) /* not pgbg's */"
        rows, err = _listed(cli, app, "-n", "3")
        assert len(rows) == 3 and rows[0]["source"] == "other"
        assert [r["handle"] for r in rows[1:]] == newest_first[:2]
        assert "pgbg: showing 3 of 6 (use -n/--limit to show more, --all for older jobs)" in err
        rows, err = _listed(cli, app, "-n", "6")
        assert len(rows) == 6 and "showing" not in err
        plain = cli("list", "-n", "3", "--format", "plain", dsn=app)
        assert len(plain.stdout.splitlines()) == 2 + 3 and "showing 3 of 6" in plain.stderr


def test_tables_preview_the_sql_and_scripts_get_it_whole(cli, test_db):
    label = _label()
    sql = SQL % 0
    assert cli("launch", "--wait", "--label", label, sql, dsn=test_db["app"]).exit_code == 0
    plain = cli("list", "--label", label, "--format", "plain", dsn=test_db["app"]).stdout
    assert jobview.preview(sql) in plain and len(jobview.preview(sql)) == jobview.PREVIEW
    assert "x" * 60 not in plain
    [rec] = json.loads(cli("list", "--label", label, "--format", "json", dsn=test_db["app"]).stdout)
    assert rec["sql"] == sql


def test_the_readme_documents_every_field_in_order():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## JSON contract\n", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert documented == FIELDS
    assert f'"pgbg_job": {jobview.CONTRACT_VERSION}' in section


def test_several_targets_print_the_same_record(cli, test_db):
    """With several targets each record names its own (``target``); one that cannot be reached
    is a record too, with its state and why in ``message``."""
    name = test_db["name"]
    assert cli("launch", "--wait", "--label", _label(), "SELECT 1", dsn=test_db["app"]).exit_code == 0
    nowhere = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=3"
    for fmt in ("json", "csv"):
        res = cli("list", "-n", "2", "-d", name, "-d", nowhere, "--format", fmt, dsn=test_db["app"])
        assert res.exit_code == 3, res
        rows = _parse(res.stdout, fmt)
        if fmt == "json":
            for rec in rows:
                _check_record(rec)
        assert [r["target"] for r in rows] == [name, name, "127.0.0.1:1/nowhere"]
        down = rows[-1]
        assert down["state"] == "unreachable" and "cannot connect" in down["message"]
        assert down["source"] in (None, "") and down["handle"] in (None, "")


def test_progress_keeps_the_keys_the_readme_documents():
    """``progress`` is part of the record: its keys (README, JSON contract) change only with the contract."""
    from pgbg_cli import progress

    assert list(progress.Progress().as_dict()) == ["percent", "reported_pct", "message", "command", "phase",
                                                    "done", "total", "unit", "rate_bytes_per_s", "eta_ms"]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `progress` |"))
    assert re.findall(r"`([a-z_]+)`", row.split("|")[3]) == list(progress.Progress().as_dict())
