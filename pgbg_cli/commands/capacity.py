"""``pgbg capacity``: worker slots, who holds them, and how many more jobs fit."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
