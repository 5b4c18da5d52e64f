"""Find pg_background, read its version, and pick the function names that version has.

The version choice lives in one table, ``_NAMES``: 2.0 made the unsuffixed names
canonical (their ``_v2`` aliases go away in 3.0); 1.8 to 1.10 have only the ``_v2``
names for the cookie-protected API (their unsuffixed names are the old int4 API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgbg_cli import queries
from pgbg_cli.errors import ExtensionProblem, PrivilegeProblem

if TYPE_CHECKING:
    import psycopg

from pgbg_cli.versions import (  # noqa: F401  (the range, stated once, re-exported)
    MAX_SERVER,
    MAX_VERSION,
    MIN_SERVER,
    MIN_VERSION,
    SUPPORTED_RANGE,
    SUPPORTED_SERVERS,
)

# role -> (name from 2.0 on, name in 1.8 to 1.10). None: that version has no such function.
_NAMES: dict[str, tuple[str | None, str | None]] = {
    "launch": ("pg_background_launch", "pg_background_launch_v2"),
    "submit": ("pg_background_submit", "pg_background_submit_v2"),
    "result": ("pg_background_result", "pg_background_result_v2"),
    "detach": ("pg_background_detach", "pg_background_detach_v2"),
    "cancel": ("pg_background_cancel", "pg_background_cancel_v2_grace"),
    "wait": ("pg_background_wait", "pg_background_wait_v2_timeout"),
    "list": ("pg_background_list", "pg_background_list_v2"),
    "stats": ("pg_background_stats", "pg_background_stats_v2"),
    "get_progress": ("pg_background_get_progress", "pg_background_get_progress_v2"),
    "report_progress": ("pg_background_report_progress", "pg_background_progress"),
    "outcome": ("pg_background_outcome", "pg_background_outcome_v2"),
    "error_info": ("pg_background_error_info", "pg_background_error_info_v2"),
    "result_info": ("pg_background_result_info", "pg_background_result_info_v2"),
}
_REQUIRED = ("launch", "result", "detach", "cancel", "wait", "stats", "get_progress")


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Extension:
    """What pgbg knows of the installed pg_background."""

    schema: str
    version: str
    functions: dict[str, str]  # role -> function name present in ``schema``
    server_version_num: int
    current_user: str
    is_superuser: bool

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)

    def has(self, role: str) -> bool:
        return role in self.functions

    def fn(self, role: str) -> str:
        return self.functions[role]

    @property
    def labels(self) -> bool:
        return self.version_tuple >= (1, 9)

    @property
    def outcome_info(self) -> bool:
        """pg_background tells a job's outcome without consuming it (1.9 on); 1.8's is read
        from its result."""
        return self.has("error_info") and self.has("result_info")

    @property
    def worker_times(self) -> bool:
        """The worker's own start and finish times (2.0 on); before, pgbg's observations."""
        return self.version_tuple >= (2, 0) and self.outcome_info

    @property
    def list_view(self) -> bool:
        """The view pg_background_list (1.10 on); before, list_v2() with a column list."""
        return self.version_tuple >= (1, 10)

    def features(self) -> dict[str, bool]:
        """What this version offers, by the names the README's version table uses."""
        return {
            "labels": self.labels,
            "outcome without reading": self.outcome_info,
            "worker start/finish times": self.worker_times,
            "progress": self.has("get_progress"),
            "statistics": self.has("stats"),
        }


def choose_functions(version: str, present: set[str]) -> dict[str, str]:
    """Map each role to the function name this version offers, if present."""
    modern = parse_version(version) >= (2, 0)
    chosen: dict[str, str] = {}
    for role, (canonical, legacy) in _NAMES.items():
        for name in (canonical, legacy) if modern else (legacy,):
            if name and name in present:
                chosen[role] = name
                break
    return chosen


def check_server(server_version_num: int) -> None:
    """Refuse a PostgreSQL release outside the tested range, with the fix."""
    if server_version_num < MIN_SERVER:
        raise ExtensionProblem(
            f"PostgreSQL {server_version_num // 10000} is too old for pgbg: it works with "
            f"{SUPPORTED_SERVERS} (upgrade the server)")
    if server_version_num > MAX_SERVER:
        raise ExtensionProblem(
            f"PostgreSQL {server_version_num // 10000} is newer than this pgbg knows: it works with "
            f"{SUPPORTED_SERVERS} (upgrade pgbg: pip install -U pgbg-cli)")


def discover(conn: psycopg.Connection[Any]) -> Extension:
    """Find pg_background in whatever schema it was created in, or raise a one-line fix."""
    return found(conn, conn.execute(queries.text("discover_extension")).fetchone())


def found(conn: psycopg.Connection[Any], row: dict[str, Any] | None) -> Extension:
    """What a discover_extension row says (``discover``; preflight sends that query with others)."""
    if row is None:
        available = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_background'"
        ).fetchone()
        if available is None:
            raise ExtensionProblem(
                "pg_background is not installed on this server: install the package "
                "(e.g. postgresql-18-pg-background) and CREATE EXTENSION pg_background"
            )
        raise ExtensionProblem(
            "pg_background is not created in database "
            f"{conn.info.dbname!r}: run CREATE EXTENSION pg_background (as a superuser)"
        )
    version = row["version"]
    check_server(row["server_version_num"])
    if parse_version(version) < MIN_VERSION:
        raise ExtensionProblem(
            f"pg_background {version} is too old: pgbg needs pg_background {SUPPORTED_RANGE} "
            "(ALTER EXTENSION pg_background UPDATE)"
        )
    if parse_version(version) >= MAX_VERSION:
        raise ExtensionProblem(
            f"pg_background {version} is newer than this pgbg knows (it works with {SUPPORTED_RANGE}): "
            "upgrade pgbg (pip install -U pgbg-cli)"
        )
    functions = choose_functions(version, set(row["functions"]))
    missing = [role for role in _REQUIRED if role not in functions]
    if missing:
        raise ExtensionProblem(
            f"pg_background {version} in schema {row['schema']!r} lacks "
            f"{', '.join(missing)}: ALTER EXTENSION pg_background UPDATE"
        )
    executable = set(row["executable"])
    user = row["current_user"]
    if not row["schema_usage"]:
        raise PrivilegeProblem(
            f"role {user!r} may not use schema {row['schema']!r}, where pg_background lives: ask an "
            f"administrator to run pgbg grant {user} (or GRANT USAGE ON SCHEMA {row['schema']} TO {user})"
        )
    if functions["launch"] not in executable:
        raise PrivilegeProblem(
            f"role {row['current_user']!r} may not use pg_background: ask an administrator to run "
            f"GRANT pgbackground_role TO {row['current_user']} (or pgbg grant {row['current_user']})"
        )
    return Extension(
        schema=row["schema"],
        version=version,
        functions=functions,
        server_version_num=row["server_version_num"],
        current_user=row["current_user"],
        is_superuser=bool(row["is_superuser"]),
    )
