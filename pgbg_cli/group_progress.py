"""A group's progress for the live views: how many of its jobs are done, and, where its jobs
are VACUUMs or ANALYZEs of named tables (``pgbg fanout``), how many bytes of those tables.

Every refresh reads the group's jobs' states; a job's SQL is read once (it never changes) and
parsed by pgbg's lexer (``statements.vacuum_targets``); a table's size is read once, when first
named. Bytes done count the tables of the jobs that ended (whatever their outcome); they are
told only when every job of the group names tables whose size could be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries
from pgbg_cli import statements as st
from pgbg_cli.jobs import ACTIVE

if TYPE_CHECKING:
    import psycopg

# schema.name, each part plain or double-quoted: what to_regclass reads the same whatever the
# search_path (an unqualified name would be looked up in pgbg's pinned path, not the job's)
_PART = r'(?:"(?:[^"]|"")+"|[^".\s]+)'
_QUALIFIED = re.compile(rf"{_PART}\.{_PART}")


@dataclass(frozen=True)
class Status:
    counts: dict[str, int]  # jobs per state
    bytes_done: int | None = None
    bytes_total: int | None = None

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state not in ACTIVE)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class GroupProgress:
    def __init__(self, group: str, *, include_all: bool = False) -> None:
        self.group = group
        self.include_all = include_all
        self._tables: dict[int, list[str] | None] = {}  # job id: the tables it names (None: not told)
        self._sizes: dict[str, int | None] = {}

    def refresh(self, conn: psycopg.Connection[Any]) -> Status:
        rows = conn.execute(queries.text("group_jobs"), {"group": self.group, "all": self.include_all,
                                                         "known": list(self._tables)}).fetchall()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
            if row["id"] not in self._tables:
                self._tables[row["id"]] = _tables_of(row["sql"] or "")
        named = {t for r in rows for t in (self._tables.get(r["id"]) or []) if t not in self._sizes}
        asked = sorted(t for t in named if _QUALIFIED.fullmatch(t))
        if asked:
            for size in conn.execute(queries.text("relation_sizes"), {"names": asked}).fetchall():
                self._sizes[size["name"]] = size["bytes"]
        for name in named:
            self._sizes.setdefault(name, None)  # unqualified, or found nothing: not told
        done = total = 0
        for row in rows:
            tables = self._tables.get(row["id"])
            sizes = [self._sizes.get(t) for t in tables or []]
            if not tables or any(s is None for s in sizes):
                return Status(counts)
            job_bytes = sum(s for s in sizes if s is not None)
            total += job_bytes
            if row["state"] not in ACTIVE:
                done += job_bytes
        return Status(counts, done, total) if rows else Status(counts)


def _tables_of(sql: str) -> list[str] | None:
    """The tables one VACUUM or ANALYZE statement names, as written; None for anything else."""
    stmts = st.split(sql)
    if len(stmts) != 1:
        return None
    found = st.vacuum_targets(stmts[0])
    if not found or not found[1]:
        return None
    return [t.name for t in found[1]]
