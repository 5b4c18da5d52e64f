"""pgbg job handles: ``<id>:<cookie>``.

The id names the job in pgbg's registry; the cookie is a random 63-bit number
that only the launcher was told. A handle whose cookie does not match is treated
exactly like one that does not exist, so ids cannot be guessed into handles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgbg_cli.errors import UsageError

_HANDLE = re.compile(r"^\s*([0-9]{1,18}):(-?[0-9]{1,19})\s*$")  # [0-9]: \d matches any Unicode digit


@dataclass(frozen=True, order=True)
class Handle:
    id: int
    cookie: int

    def __str__(self) -> str:
        return f"{self.id}:{self.cookie}"


def parse(text: str) -> Handle:
    match = _HANDLE.match(text or "")
    if not match:
        raise UsageError(f"invalid handle {text!r}: expected <id>:<cookie> as printed by pgbg launch")
    cookie = int(match.group(2))
    if not -(2**63) <= cookie < 2**63:
        raise UsageError(f"invalid handle {text!r}: cookie out of range")
    return Handle(int(match.group(1)), cookie)


def parse_many(texts: list[str]) -> list[Handle]:
    seen: dict[Handle, None] = {}
    for text in texts:
        for piece in text.split():
            seen[parse(piece)] = None
    if not seen:
        raise UsageError("no handle given")
    return list(seen)
