"""Durations as people type them: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``, or bare seconds."""

from __future__ import annotations

import re

from pgbg_cli.errors import UsageError

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_ms(text: str, *, what: str = "duration") -> int:
    """Return milliseconds for a duration such as ``1h30m`` or ``2.5s``; bare numbers are seconds."""
    value = text.strip().lower()
    if not value:
        raise UsageError(f"empty {what}")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds:
            raise UsageError(f"{what} must not be negative: {text!r}")
        return int(round(seconds * 1000))
    pos = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise UsageError(
            f"invalid {what} {text!r}: use a number with a unit, such as 500ms, 30s, 5m, 1h30m or 2d"
        )
    return int(round(total))


def format_ms(ms: float | None) -> str:
    """A short human form: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
