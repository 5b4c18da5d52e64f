"""The SQL of pgbg's own schema: versioned table files, then function files re-applied on every init."""

from __future__ import annotations

import hashlib
import os
import re
from functools import cache

SCHEMA = "pgbg"
_HERE = os.path.dirname(os.path.abspath(__file__))  # the SQL files ship beside this module


@cache
def read(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


@cache
def migrations() -> list[tuple[int, str]]:
    """``(version, file name)`` of every ``vNNN_*.sql``, in order."""
    found = []
    for entry in os.listdir(_HERE):
        match = re.fullmatch(r"v(\d{3})_[a-z0-9_]+\.sql", entry)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


@cache
def function_files() -> list[str]:
    """The re-applied files, in order: the extension wrappers, then ``fn_NN_*.sql``."""
    names = sorted(
        entry for entry in os.listdir(_HERE) if re.fullmatch(r"fn_\d{2}_[a-z0-9_]+\.sql", entry)
    )
    return ["api.sql", *names]


def schema_version() -> int:
    """The version this pgbg installs: the newest table file."""
    return migrations()[-1][0]


def code_digest() -> str:
    """A digest of the re-applied function files, to tell an outdated install."""
    from pgbg_cli import queries

    h = hashlib.sha256()
    for name in function_files():
        h.update(read(name).encode())
    h.update(queries.text("worker_slots").encode())  # compiled into api.sql's pgbg.worker_slots()
    return h.hexdigest()[:16]
