"""Pure functions, no server: durations, handles, rendering, redaction, version choice."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import uuid

import pytest

from pgbg_cli import durations, extension, handles, output
from pgbg_cli.db import first_line, redact
from pgbg_cli.errors import USAGE, UsageError
from pgbg_cli.jobs import glob_to_like
from pgbg_cli.output import Column, Format

# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        ("2.5s", 2_500),
        ("1m30s500ms", 90_500),
        ("1.5", 1_500),  # a bare number is seconds
        ("0", 0),
        ("  10S ", 10_000),  # case and spaces do not matter
    ],
)
def test_parse_ms(text, ms):
    assert durations.parse_ms(text) == ms


@pytest.mark.parametrize("text", ["", "   ", "abc", "10x", "5 m", "m5", "1h 30m", "-1", "-5s", "1h-", "nan"])
def test_parse_ms_rejects_with_usage_error(text):
    with pytest.raises(UsageError) as info:
        durations.parse_ms(text, what="--timeout")
    assert info.value.exit_code == USAGE
    assert "\n" not in info.value.message


def test_parse_ms_names_the_option():
    with pytest.raises(UsageError, match="--grace"):
        durations.parse_ms("soon", what="--grace")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, ""),
        (0, "0ms"),
        (999, "999ms"),
        (999.6, "1s"),
        (1_000, "1s"),
        (12_345, "12.3s"),
        (59_950, "1m"),
        (60_000, "1m"),
        (245_000, "4m05s"),
        (3_600_000, "1h"),
        (3_599_999, "1h"),
        (7_380_000, "2h03m"),
        (47 * 3_600_000, "47h"),
        (48 * 3_600_000, "2d"),
        (180_000_000, "2d02h"),
        (30 * 86_400_000, "30d"),
    ],
)
def test_format_ms(ms, text):
    assert durations.format_ms(ms) == text


@pytest.mark.parametrize("ms", [0, 850, 1_000, 12_300, 245_000, 300_000, 7_380_000, 172_800_000, 2_592_000_000])
def test_format_ms_reads_back_as_typed(ms):
    """One form for every duration shown, and the one people type: parse_ms reads it back."""
    assert durations.parse_ms(durations.format_ms(ms)) == ms


# --- handles -----------------------------------------------------------------------------


def test_handle_round_trip():
    h = handles.parse("12:8586162300879765309")
    assert h == handles.Handle(12, 8586162300879765309)
    assert str(h) == "12:8586162300879765309"
    assert handles.parse(str(h)) == h


def test_handle_allows_surrounding_space_and_negative_cookie():
    assert handles.parse("  7:-42\n") == handles.Handle(7, -42)


@pytest.mark.parametrize(
    "text",
    ["", "12", "12:", ":5", "a:b", "12:34:56", "12 :34", "1:99999999999999999999", "1:9223372036854775808",
     "-1:5", "1.0:5"],
)
def test_bad_handles_are_usage_errors(text):
    with pytest.raises(UsageError) as info:
        handles.parse(text)
    assert info.value.exit_code == USAGE
    assert "<id>:<cookie>" in info.value.message or "out of range" in info.value.message


def test_cookie_bounds():
    assert handles.parse(f"1:{2**63 - 1}").cookie == 2**63 - 1
    assert handles.parse(f"1:{-(2**63)}").cookie == -(2**63)


def test_parse_many_splits_whitespace_and_drops_duplicates_in_order():
    got = handles.parse_many(["3:30 1:10", "3:30", "2:20\n1:10"])
    assert got == [handles.Handle(3, 30), handles.Handle(1, 10), handles.Handle(2, 20)]


def test_parse_many_needs_one():
    with pytest.raises(UsageError, match="no handle"):
        handles.parse_many(["  "])


# --- output ------------------------------------------------------------------------------

COLUMNS = [Column("id", "ID"), Column("state", "STATE"), Column("info", "INFO"),
           Column("at", "AT"), Column("ms", "ELAPSED", lambda v, row: durations.format_ms(v))]
ROWS = [
    {"id": 1, "state": "succeeded", "info": {"k": [1, "é"]}, "at": dt.datetime(2026, 11, 25, 14, 0, 5),
     "ms": 1500},
    {"id": 2, "state": "failed", "info": None, "at": None, "ms": None},
]


def test_resolve_auto_is_plain_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert output.resolve(Format.auto) is Format.plain
    assert output.resolve(None) is Format.plain
    assert output.resolve("json") is Format.json
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert output.resolve("auto") is Format.table


def test_plain_table_uses_headers_and_human_renderers():
    text = output.render_rows(ROWS, COLUMNS, Format.plain)
    lines = text.splitlines()
    assert lines[0].split() == ["ID", "STATE", "INFO", "AT", "ELAPSED"]
    assert set(lines[1]) <= {"-", " "}
    assert "succeeded" in lines[2] and "1.5s" in lines[2] and '{"k": [1, "é"]}' in lines[2]
    assert "2026-11-25 14:00:05" in lines[2]
    assert lines[3].split() == ["2", "failed"]
    assert "\x1b" not in text


def test_plain_table_of_no_rows_says_so():
    assert output.render_rows([], COLUMNS, Format.plain) == "ID  STATE  INFO  AT  ELAPSED\n(no rows)\n"


def test_json_keeps_raw_values_and_keys():
    data = json.loads(output.render_rows(ROWS, COLUMNS, Format.json))
    assert data == [
        {"id": 1, "state": "succeeded", "info": {"k": [1, "é"]}, "at": "2026-11-25T14:00:05", "ms": 1500},
        {"id": 2, "state": "failed", "info": None, "at": None, "ms": None},
    ]


def test_csv_has_keys_as_header_and_empty_for_null():
    rows = list(csv.reader(io.StringIO(output.render_rows(ROWS, COLUMNS, Format.csv))))
    assert rows[0] == ["id", "state", "info", "at", "ms"]
    assert rows[1] == ["1", "succeeded", '{"k": [1, "é"]}', "2026-11-25T14:00:05", "1500"]
    assert rows[2] == ["2", "failed", "", "", ""]


def test_jsonable_converts_database_types():
    value = {
        "t": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "d": dt.date(2026, 1, 2),
        "i": dt.timedelta(seconds=1.5),
        "n": decimal.Decimal("3"),
        "f": decimal.Decimal("2.5"),
        "u": uuid.UUID(int=1),
        "b": b"\x00\xff",
        "l": (1, [memoryview(b"\x01")]),
        1: "int key",
    }
    assert output.jsonable(value) == {
        "t": "2026-01-02T03:04:05+00:00",
        "d": "2026-01-02",
        "i": 1.5,
        "n": 3,
        "f": 2.5,
        "u": "00000000-0000-0000-0000-000000000001",
        "b": "00ff",
        "l": [1, ["01"]],
        "1": "int key",
    }


def test_emit_record_plain_aligns_and_compact_drops_empty(capsys):
    record = {"handle": "1:2", "state": "failed", "message": "division by zero\nsecond line", "hint": None,
              "changes": ["one", "two"]}
    fields = [Column("handle", "handle"), Column("state", "state"), Column("hint", "hint"),
              Column("message", "message"), Column("changes", "changes", lambda v, r: v)]
    output.emit_record(record, fields, Format.plain, compact=True)
    assert capsys.readouterr().out == (  # a newline in a value is escaped; a renderer's list is lines
        "handle   1:2\n"
        "state    failed\n"
        "message  division by zero\\nsecond line\n"
        "changes  one\n"
        "         two\n"
    )


def test_emit_record_json_keeps_empty_fields(capsys):
    output.emit_record({"handle": "1:2"}, [Column("handle"), Column("hint")], Format.json, compact=True)
    assert json.loads(capsys.readouterr().out) == {"handle": "1:2", "hint": None}


@pytest.mark.parametrize(
    ("pct", "text"),
    [(None, ""), (0, "[----------]   0%"), (42, "[####------]  42%"), (100, "[##########] 100%"),
     (150, "[##########] 100%"), (-3, "[----------]   0%")],
)
def test_bar(pct, text):
    assert output.bar(pct) == text


def test_say_writes_to_stderr_only(capsys):
    output.say("pgbg: hello", style="bold")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "pgbg: hello\n"


# --- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgresql://app:s3cret@db.example:5432/x", "postgresql://app:***@db.example:5432/x"),
        ("postgres://app:p%40ss@h/x and more", "postgres://app:***@h/x and more"),
        ("postgresql://app@h/x", "postgresql://app@h/x"),
        ("host=h password=s3cret user=u", "host=h password=*** user=u"),
        ("host=h password = 's3 cret\\' x' user=u", "host=h password = *** user=u"),
        ("PASSWORD=abc", "PASSWORD=***"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(text, redacted):
    assert redact(text) == redacted


def test_redact_known_secrets_but_not_tiny_ones():
    assert redact('FATAL: password authentication failed ("hunter2")', ("hunter2",)) == (
        'FATAL: password authentication failed ("***")'
    )
    assert redact("a b c", ("a", "")) == "a b c"


def test_first_line():
    assert first_line("\n  ERROR: boom \n DETAIL: more\n") == "ERROR: boom"
    assert first_line("   ") == ""


# --- extension version choice ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [("2.0", (2, 0)), ("2.0.3", (2, 0, 3)), ("1.8", (1, 8)), ("1.10", (1, 10)),
     ("2", (2,)), ("x.1", (0, 1))],
)
def test_parse_version(text, version):
    assert extension.parse_version(text) == version


def test_versions_compare_numerically():
    assert extension.parse_version("1.10") > extension.parse_version("1.9")
    assert extension.parse_version("1.8") >= extension.MIN_VERSION
    assert extension.parse_version("1.7") < extension.MIN_VERSION


V2_ALL = {
    "pg_background_launch", "pg_background_submit", "pg_background_result", "pg_background_detach",
    "pg_background_cancel", "pg_background_wait", "pg_background_list", "pg_background_stats",
    "pg_background_get_progress", "pg_background_report_progress", "pg_background_outcome",
    "pg_background_error_info", "pg_background_result_info",
}
V18_ALL = {
    "pg_background_launch", "pg_background_result", "pg_background_detach",  # the old int4 API
    "pg_background_launch_v2", "pg_background_submit_v2", "pg_background_result_v2",
    "pg_background_detach_v2", "pg_background_cancel_v2", "pg_background_cancel_v2_grace",
    "pg_background_wait_v2", "pg_background_wait_v2_timeout", "pg_background_list_v2",
    "pg_background_stats_v2", "pg_background_get_progress_v2", "pg_background_progress",
}


def test_version_2_uses_the_unsuffixed_names():
    chosen = extension.choose_functions("2.0", V2_ALL | {n + "_v2" for n in V2_ALL})
    assert chosen["launch"] == "pg_background_launch"
    assert chosen["wait"] == "pg_background_wait"
    assert chosen["cancel"] == "pg_background_cancel"
    assert chosen["report_progress"] == "pg_background_report_progress"
    assert all(not name.endswith("_v2") for name in chosen.values())


def test_version_2_falls_back_to_a_v2_alias_when_the_name_is_missing():
    present = (V2_ALL - {"pg_background_outcome"}) | {"pg_background_outcome_v2"}
    assert extension.choose_functions("2.0.3", present)["outcome"] == "pg_background_outcome_v2"


def test_version_1_8_never_picks_the_old_int4_api():
    chosen = extension.choose_functions("1.8", V18_ALL)
    assert chosen["launch"] == "pg_background_launch_v2"
    assert chosen["result"] == "pg_background_result_v2"
    assert chosen["detach"] == "pg_background_detach_v2"
    assert chosen["cancel"] == "pg_background_cancel_v2_grace"
    assert chosen["wait"] == "pg_background_wait_v2_timeout"
    assert chosen["report_progress"] == "pg_background_progress"
    assert "outcome" not in chosen and "error_info" not in chosen  # 1.10 and later


def test_roles_missing_from_the_schema_are_left_out():
    chosen = extension.choose_functions("2.0", {"pg_background_launch"})
    assert chosen == {"launch": "pg_background_launch"}


# --- label patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "like"),
    [("nightly-*", "nightly-%"), ("job?", "job_"), ("100%_done", "100\\%\\_done"), ("a\\b", "a\\\\b"),
     ("plain", "plain")],
)
def test_glob_to_like(glob, like):
    assert glob_to_like(glob) == like


@pytest.mark.parametrize(("given", "shown"), [
    (23605, 23605), (1, 1), (4194304, 4194304),
    # pg_background's handle of a job that ended at once, now and then (the facts document)
    (-1415848960, None), (0, None), (271133952, None), (None, None),
])
def test_a_worker_pid_no_process_can_have_is_shown_as_none(given, shown):
    from pgbg_cli import jobview

    row = {"id": 7, "cookie": 11, "state": "lost", "worker_pid": given}
    assert jobview.record(row)["worker_pid"] == shown
    (column,) = [c for c in jobview.RECORD_FIELDS if c.key == "worker_pid"]
    assert column.human(given, row) == ("" if shown is None else str(shown))


def test_the_last_words_of_a_wait_name_the_jobs_left_or_their_group():
    from pgbg_cli import jobs

    one = [handles.parse("5:6425128483357306956")]
    assert jobs.going_on(one) == ("job 5:6425128483357306956 goes on: pgbg wait 5:6425128483357306956 "
                                  "once the server answers")
    # its last look: only the jobs that had not ended
    seen = [{"id": i, "cookie": i * 7, "state": "succeeded" if i < 3 else "running", "group_name": None}
            for i in range(1, 5)]
    assert jobs.going_on([jobs.handle_of(j) for j in seen], seen) == (
        "the 2 jobs go on: pgbg wait 3:21 4:28 once the server answers")
    # many of one group (launch --lines --wait of hundreds): by the group
    batch = [{"id": i, "cookie": i, "state": "queued", "group_name": "g1"} for i in range(1, 40)]
    assert jobs.going_on([jobs.handle_of(j) for j in batch], batch) == (
        "the 39 jobs of group g1 that had not ended go on: pgbg wait --group g1 once the server answers")
    # many of no group: every handle, or the user could not find them
    loose = [{**job, "group_name": None} for job in batch]
    assert jobs.going_on([jobs.handle_of(j) for j in loose], loose).endswith(" 39:39 once the server answers")
    # a wait --any: the command it gives waits for the first of them again, not for all
    assert jobs.going_on([jobs.handle_of(j) for j in seen], seen, any_=True) == (
        "the 2 jobs go on: pgbg wait --any 3:21 4:28 once the server answers")
    assert jobs.going_on([jobs.handle_of(j) for j in batch], batch, any_=True).endswith(
        ": pgbg wait --any --group g1 once the server answers")


def test_why_a_queued_job_waits_under_a_live_supervisor():
    from pgbg_cli.waiting import held_why

    row = {"id": 7, "owner": "app", "group_name": None, "group_limit": None, "reason": None,
           "role_running": 2, "max_running": 8, "group_running": 0}
    assert held_why(row) is None  # nothing holds it: it starts soon
    assert held_why({**row, "role_running": 8}).startswith(
        "8 jobs of app are starting or running, as many as max_running_per_role (8) allows")
    assert held_why({**row, "role_running": 1, "max_running": 1}).startswith("1 job of app is starting")
    grouped = {**row, "group_name": "nightly", "group_limit": 2, "group_running": 2}
    assert held_why(grouped) == "group nightly runs 2 at once, its limit; it starts when one of them ends"
    # the group's limit is named before the role's
    assert held_why({**grouped, "role_running": 8}).startswith("group nightly runs 2 at once")
    assert held_why({**row, "reason": "waiting for a free worker slot"}) == (
        "waiting for a free worker slot (pgbg capacity shows the slots)")
