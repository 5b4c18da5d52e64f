"""``pgbg stats``: statistics of the database's pgbg jobs (see issue: observability)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
