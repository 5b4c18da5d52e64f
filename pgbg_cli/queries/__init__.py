"""Every SQL statement pgbg runs, one per ``.sql`` file, loaded by name.

A query may name the pg_background extension's schema as ``{ext}`` and pgbg's own
schema as ``{pgbg}``; both are filled in with ``psycopg.sql.Identifier``. Values are
always bound parameters.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def text(name: str) -> str:
    """The raw text of ``queries/<name>.sql``."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def names() -> list[str]:
    return sorted(
        p.name[: -len(".sql")]
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".sql")
    )
