"""Every number and duration a user types is checked before pgbg connects: no server needed.

Each refusal is exit 2 and one line on stderr, ``pgbg: invalid --OPTION '...': use ...``
naming the allowed range; never a traceback, never exit 3 (the DSN below answers nothing,
so a value that got through would end in exit 3, connection refused).
"""

from __future__ import annotations

import pytest

from pgbg_cli import durations, numbers
from pgbg_cli.errors import USAGE, UsageError

NOWHERE = "postgresql://nobody@127.0.0.1:1/x"

# What float() and int() accept but a command line must not.
NOT_A_NUMBER = ["inf", "-inf", "nan", "1e400", "1e3", "٣", "３", "1_000", "+5", "-1", "0x10", " ", "", "5\n5",
                "\u202e5"]

OPTIONS = [
    # (command line before the value, after it, option, range as the message states it)
    (["launch", "--timeout"], ["SELECT 1"], "--timeout", "from 0 to 36525d (100 years)"),
    (["wait", "--timeout"], ["1:2"], "--timeout", "from 0 to 36525d (100 years)"),
    (["cancel", "--grace"], ["1:2"], "--grace", "from 0 to 24d"),
    (["list", "--watch", "--interval"], [], "--interval", "from 50ms to 1d"),
    (["stats", "--watch", "--interval"], [], "--interval", "from 50ms to 1d"),
    (["stats", "--since"], [], "--since", "from 1ms to 36525d (100 years)"),
    (["prune", "--older-than"], [], "--older-than", "from 0 to 36525d (100 years)"),
    (["launch", "--queue-size"], ["SELECT 1"], "--queue-size",
     "0 (the server default) or a whole number from 4096 to 268435456"),
    (["list", "--limit"], [], "--limit", "a whole number from 1 to 1000000"),
    (["list", "-n"], [], "--limit", "a whole number from 1 to 1000000"),
    (["list", "--watch", "--count"], [], "--count", "a whole number from 1 to 1000000"),
    (["stats", "--watch", "--count"], [], "--count", "a whole number from 1 to 1000000"),
    (["capacity", "--plan"], [], "--plan", "a whole number from 1 to 262143"),
    (["fanout", "--min-dead-tuples"], ["VACUUM {table}"], "--min-dead-tuples",
     "a whole number from 0 to 9223372036854775807"),
    (["fanout", "--min-xid-age"], ["VACUUM {table}"], "--min-xid-age", "a whole number from 0 to 2147483647"),
]

OUT_OF_RANGE = {
    "--timeout": ["36525d1ms", "36526d", "99999999999999999999999999s", "9" * 400],
    "--grace": ["24d1ms", "2147483648ms", "25d"],
    "--interval": ["49ms", "0", "0.01", "1d1ms", "2d"],
    "--since": ["0", "0s", "0.0001s", "36526d"],
    "--older-than": ["36526d", "3155760000001ms"],
    "--queue-size": ["1", "4095", "268435457", "2147483648", "9" * 5000],
    "--limit": ["0", "1000001", "9" * 5000],
    "--count": ["0", "1000001"],
    "--plan": ["0", "262144", "9223372036854775808"],
    "--min-dead-tuples": ["9223372036854775808"],
    "--min-xid-age": ["2147483648"],
}

IN_RANGE = [  # the bounds themselves are accepted: these get as far as connecting (exit 3)
    ["launch", "--timeout", "36525d", "--queue-size", "268435456", "SELECT 1"],
    ["launch", "--timeout", "0", "--queue-size", "4096", "SELECT 1"],
    ["launch", "--queue-size", "0", "SELECT 1"],
    ["wait", "--timeout", "1.5", "1:2"],
    ["cancel", "--grace", "24d", "1:2"],
    ["list", "--limit", "1000000", "--watch", "--count", "1000000", "--interval", "1d"],
    ["list", "--limit", "1", "--watch", "--count", "1", "--interval", "50ms"],
    ["stats", "--since", "36525d"],
    ["stats", "--since", "1ms"],
    ["prune", "--older-than", "0"],
    ["capacity", "--plan", "262143"],
    ["fanout", "--min-dead-tuples", "9223372036854775807", "--min-xid-age", "2147483647", "VACUUM {table}"],
]


def _cases():
    for before, after, option, span in OPTIONS:
        for value in NOT_A_NUMBER + OUT_OF_RANGE[option]:
            yield pytest.param(before, value, after, option, span, id=f"{' '.join(before)} {value[:12]!r}")


def _refused(res, option: str, span: str) -> None:
    assert res.exit_code == 2, res
    assert res.stdout == ""
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"pgbg: invalid {option} "), res.stderr
    assert span in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "Error" not in res.stderr


@pytest.mark.parametrize(("before", "value", "after", "option", "span"), list(_cases()))
def test_bad_values_exit_2_before_connecting(cli, before, value, after, option, span):
    _refused(cli(*before, value, *after, dsn=NOWHERE), option, span)


@pytest.mark.parametrize("args", IN_RANGE, ids=lambda a: " ".join(a))
def test_values_in_range_get_through(cli, args):
    res = cli(*args, dsn=NOWHERE)
    assert res.exit_code == 3, res
    assert "cannot connect" in res.stderr


def test_launch_checks_options_before_reading_the_sql(cli):
    res = cli("launch", "--timeout", "inf", "-", input="SELECT 1", dsn=NOWHERE)
    _refused(res, "--timeout", "36525d")


def test_a_long_value_is_cut_in_the_message(cli):
    res = cli("list", "--limit", "7" * 5000, dsn=NOWHERE)
    _refused(res, "--limit", "1 to 1000000")
    assert len(res.stderr) < 200


def test_control_characters_in_a_value_are_escaped_in_the_message(cli):
    res = cli("list", "--limit", "1\x1b[2J\r\u202e", dsn=NOWHERE)
    _refused(res, "--limit", "1 to 1000000")
    assert "\x1b" not in res.stderr and "\r" not in res.stderr and "\u202e" not in res.stderr
    assert "\\x1b" in res.stderr and "\\u202e" in res.stderr


@pytest.mark.parametrize("handle", ["١:2", "1:٢", "１:2", "1:2\u202e"])
def test_handles_take_ascii_digits_only(cli, handle):
    res = cli("show", handle, dsn=NOWHERE)
    assert res.exit_code == 2 and res.stderr.startswith("pgbg: invalid handle ") and res.stderr.count("\n") == 1


# --- the helpers themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("0", 0), ("1.5", 1500), (".5", 500), ("5.", 5000), ("2.5s", 2500), ("0.0004s", 0), ("0.0005s", 1),
     ("1h30m", 5_400_000), ("36525d", durations.MAX_MS), (" 10S ", 10_000), ("1d1ms", 86_400_001)],
)
def test_parse_ms_accepts(text, ms):
    assert durations.parse_ms(text) == ms


@pytest.mark.parametrize("text", NOT_A_NUMBER + ["1h 30m", "5 s", "s", "1.2.3s", "1y", "36525d1ms", "1" * 101])
def test_parse_ms_refuses(text):
    with pytest.raises(UsageError) as info:
        durations.parse_ms(text, what="--timeout")
    assert info.value.exit_code == USAGE
    assert info.value.message.startswith("invalid --timeout ")
    assert "36525d (100 years)" in info.value.message and "\n" not in info.value.message


def test_parse_ms_range_is_inclusive():
    assert durations.parse_ms("50ms", lo=50, hi=100) == 50
    assert durations.parse_ms("0.1", lo=50, hi=100) == 100
    with pytest.raises(UsageError, match="from 50ms to 100ms"):
        durations.parse_ms("101ms", lo=50, hi=100)


@pytest.mark.parametrize(("ms", "text"), [(0, "0"), (50, "50ms"), (1500, "1500ms"), (60_000, "1m"),
                                          (durations.MS_PER_DAY, "1d"), (durations.GRACE_MAX_MS, "24d"),
                                          (durations.MAX_MS, "36525d (100 years)")])
def test_spell(ms, text):
    assert durations.spell(ms) == text


def test_grace_fits_an_integer_column():
    assert durations.GRACE_MAX_MS <= 2**31 - 1
    assert durations.MAX_MS <= 2**63 - 1


@pytest.mark.parametrize(("text", "n"), [("1", 1), (" 42 ", 42), ("007", 7), ("1000000", 1_000_000)])
def test_parse_count_accepts(text, n):
    assert numbers.parse_count(text, "--limit", 1, 1_000_000) == n


@pytest.mark.parametrize("text", NOT_A_NUMBER + ["0", "1000001", "1.0", "1 000", None])
def test_parse_count_refuses(text):
    with pytest.raises(UsageError) as info:
        numbers.parse_count(text, "--limit", 1, 1_000_000)
    assert info.value.exit_code == USAGE
    assert info.value.message.startswith("invalid --limit ")
    assert info.value.message.endswith("use a whole number from 1 to 1000000")


def test_parse_count_zero_has_a_meaning():
    assert numbers.parse_count("0", "--queue-size", 4096, 8192, zero="the server default") == 0
    with pytest.raises(UsageError, match=r"use 0 \(the server default\) or a whole number from 4096 to 8192$"):
        numbers.parse_count("1", "--queue-size", 4096, 8192, zero="the server default")
