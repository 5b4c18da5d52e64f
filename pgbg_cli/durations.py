"""Durations as people type them: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``, or bare seconds.

Strict on purpose, since what is typed here ends up in the server's bigint and integer
columns: ASCII digits only (``float()`` would take ``'٣'``, ``'inf'``, ``'nan'``, ``'1e400'``
or ``'1_0'``), no sign, no exponent, and every option states its range (``lo``/``hi``).
"""

from __future__ import annotations

import decimal
import re

from pgbg_cli.errors import UsageError
from pgbg_cli.numbers import shown

MS_PER_DAY = 86_400_000
MAX_MS = 36_525 * MS_PER_DAY  # 100 years: the ceiling of every duration option
GRACE_MAX_MS = 24 * MS_PER_DAY  # cancel_grace_ms is an integer column (at most 2147483647 ms, 24.8 days)
INTERVAL_MIN_MS = 50  # --interval of the watch views
INTERVAL_MAX_MS = MS_PER_DAY

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": MS_PER_DAY}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # [0-9], not \d: \d matches every Unicode digit
_BARE = re.compile(_NUMBER)
_PARTS = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_LONGEST = 100  # characters: longer is no duration anyone means (and keeps the arithmetic small)


def spell(ms: int) -> str:
    """A range bound as the user would type it: ``0``, ``50ms``, ``1d``, ``36525d (100 years)``."""
    if ms == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            text = f"{ms // _UNIT_MS[unit]}{unit}"
            return f"{text} ({ms // (MAX_MS // 100)} years)" if ms % (MAX_MS // 100) == 0 else text
    return f"{ms}ms"


def parse_ms(text: str | None, *, what: str = "duration", lo: int = 0, hi: int = MAX_MS) -> int:
    """Milliseconds for a duration such as ``1h30m`` or ``2.5s`` (bare numbers are seconds),
    from ``lo`` to ``hi`` ms; anything else is a ``UsageError`` naming ``what`` and the range."""
    value = "" if text is None else str(text).strip()
    span = f"from {spell(lo)} to {spell(hi)}"
    if not value.isascii() or not (_BARE.fullmatch(value.lower()) or _PARTS.fullmatch(value.lower())):
        raise UsageError(
            f"invalid {what} {shown(text)}: use a number with a unit, such as 500ms, 30s, 5m, 1h30m or 2d, {span}"
        )
    value = value.lower()
    total = None
    if len(value) <= _LONGEST:
        if _BARE.fullmatch(value):
            total = decimal.Decimal(value) * 1000
        else:
            total = sum(decimal.Decimal(m.group(1)) * _UNIT_MS[m.group(2)] for m in _PART.finditer(value))
        total = int(total.to_integral_value(rounding=decimal.ROUND_HALF_UP))
    if total is None or not lo <= total <= hi:
        raise UsageError(f"invalid {what} {shown(text)}: use a duration {span}")
    return total


def format_ms(ms: float | None) -> str:
    """The one form every duration is shown in, as people type them (``parse_ms`` reads it
    back): ``850ms``, ``2s``, ``12.3s``, ``4m05s``, ``5m``, ``2h03m``, ``1h``, ``30d``, ``2d03h``:
    the two largest units, the second dropped when it is zero."""
    if ms is None:
        return ""
    whole = int(decimal.Decimal(str(max(0.0, float(ms)))).to_integral_value(rounding=decimal.ROUND_HALF_UP))
    if whole < 1000:
        return f"{whole}ms"
    tenths = (whole + 50) // 100
    if tenths < 600:
        return f"{tenths // 10}.{tenths % 10}s" if tenths % 10 else f"{tenths // 10}s"
    seconds = (whole + 500) // 1000
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return _two(minutes, "m", sec, "s")
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _two(hours, "h", minutes, "m")
    days, hours = divmod(hours, 24)
    return _two(days, "d", hours, "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small:02d}{small_unit}" if small else f"{big}{big_unit}"
