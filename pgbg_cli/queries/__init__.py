"""Every SQL statement pgbg runs, one per ``.sql`` file, loaded by name.

A query may name the pg_background extension's schema as ``{ext}`` and pgbg's own
schema as ``{pgbg}``; both are filled in with ``psycopg.sql.Identifier``. Values are
always bound parameters.
"""

from __future__ import annotations

import os
from functools import cache

# the package's own folder: the files ship beside this module (plain reads, without
# importlib.resources, which every command would otherwise import)
_HERE = os.path.dirname(os.path.abspath(__file__))


@cache
def text(name: str) -> str:
    """The raw text of ``queries/<name>.sql``."""
    with open(os.path.join(_HERE, f"{name}.sql"), encoding="utf-8") as f:
        return f.read()


def names() -> list[str]:
    return sorted(entry[: -len(".sql")] for entry in os.listdir(_HERE) if entry.endswith(".sql"))
