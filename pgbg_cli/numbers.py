"""Whole numbers as people type them on the command line, checked before anything reaches the server,
and sizes in bytes as pgbg spells them for people (``spell_bytes``).

Python's ``int()`` (and so click's INTEGER type) takes far more than a command line should:
Arabic-Indic or fullwidth digits (``'٣'``, ``'３'``), underscores (``'1_000'``), a sign, and
values of any size. ``parse_count`` takes ASCII digits only, within a stated range, and
every refusal is one ``UsageError`` line that names the option and the range.
"""

from __future__ import annotations

import re
from typing import Literal

from pgbg_cli.errors import UsageError

_DIGITS = re.compile(r"[0-9]+")  # not \d: it matches every Unicode digit


def shown(text: str | None, limit: int = 40) -> str:
    """``text`` quoted for a message: ``repr`` (control characters escaped), cut when long."""
    text = "" if text is None else str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def parse_count(text: str | None, what: str, lo: int, hi: int, *, zero: str | None = None) -> int:
    """The whole number ``text`` (ASCII digits, surrounding spaces allowed) if ``lo <= n <= hi``.

    ``zero``, when given, says what 0 means for this option; 0 is then accepted too.
    """
    value = "" if text is None else str(text).strip()
    if _DIGITS.fullmatch(value) and len(value.lstrip("0")) <= len(str(hi)):
        n = int(value)
        if lo <= n <= hi or (zero is not None and n == 0):
            return n
    allowed = f"a whole number from {lo} to {hi}"
    if zero is not None:
        allowed = f"0 ({zero}) or {allowed}"
    raise UsageError(f"invalid {what} {shown(text)}: use {allowed}")


def spell_bytes(n: float, *, powers_of: Literal[1024, 1000] = 1024) -> str:
    """A size in bytes for people, in one of pgbg's two spellings, which differ on purpose:

    - ``powers_of=1024``, PostgreSQL's units (as its settings count them): ``512 bytes``,
      ``8.0 kB``, ``1.2 MB``, ``3.4 GB``, up to ``TB``, one decimal (fanout's sizes);
    - ``powers_of=1000``, for a pace: ``850 B``, ``8.5 kB``, ``31 MB``, ``1.2 GB``, one decimal
      below 10 and none from 10, ``GB`` at most (progress's ``31 MB/s``).
    """
    if powers_of == 1000:
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if n >= size:
                value = n / size
                return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        return f"{n:.0f} B"
    if powers_of != 1024:
        raise ValueError(f"powers_of is 1024 or 1000, not {powers_of!r}")
    value = float(n)
    if value < 1024:
        return f"{int(value)} bytes"
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TB"


# The ranges of pgbg's whole-number options (README and --help state them too).
QUEUE_SIZE_MIN = 4096  # launch --queue-size: pgbg's floor (pg_background's own is a few dozen bytes)
QUEUE_SIZE_MAX = 256 * 1024 * 1024  # pg_background refuses larger queues (PGBG_QUEUE_SIZE_MAX)
LIMIT_MAX = 1_000_000  # list --limit
COUNT_MAX = 1_000_000  # --count of the watch views: 11 days at --interval 1s
PLAN_MAX = 262_143  # capacity --plan: the largest max_worker_processes PostgreSQL accepts
