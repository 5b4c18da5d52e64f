"""Launching jobs: what ``pgbg launch`` and ``pgbg fanout`` share below what they print.

Several jobs are queued all or none (``queue_many``) while Ctrl-C waits, so that no job is
queued whose handle pgbg never learns: the command lets it in again where a Ctrl-C cancels
them or leaves them running (``cancel_and_wait``). Their group is the one named or a new one
(``group_for``). What is printed, and the exit codes, stay with the commands
(commands/launch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from pgbg_cli.batch import Piece
    from pgbg_cli.handles import Handle
    from pgbg_cli.jobs import Start

GROUP_LIMIT_MAX = 10_000  # --jobs N of launch and fanout
GROUP_NAME_MAX = 200

# The handles of the jobs this pgbg queued, as it prints them: when standard output cannot take
# them (a full disk), pgbg_cli.cli names them on stderr, or the user would launch the SQL again.
QUEUED: list[str] = []


def note_queued(*handles: str) -> None:
    """Remember handles (``ID:COOKIE``, or ``TARGET/ID:COOKIE``) of jobs just queued."""
    QUEUED.extend(handles)


@dataclass(frozen=True)
class Queued:
    """Jobs queued together, with Ctrl-C still held: ``let_go()`` first thing in the block where
    a Ctrl-C cancels them."""

    jobs: list[dict[str, Any]]  # id, cookie and owner of each, in the order of the pieces
    start: Start | None  # what starting the role's supervisor found (None: it was not needed)
    held: Any = field(default=None, repr=False)  # the signal mask to restore

    def let_go(self) -> None:
        """Let Ctrl-C in again: one that came while the jobs were queued is raised from here."""
        release_ctrl_c(self.held)


def queue_many(conn: psycopg.Connection[Any], pieces: list[Piece], *, file_text: str | None = None,
               source: str = "standard input", label: str | None = None, timeout_ms: int | None = None,
               queue_size: int = 0, group: str | None = None, group_limit: int | None = None) -> Queued:
    """One job per piece, queued all or none; Ctrl-C is held from before they are until the
    caller's ``Queued.let_go()`` (when nothing is queued, it is let in before the error is raised).

    ``file_text``: the text whose statements the pieces are (named ``source``), split again as
    the server reads it where standard_conforming_strings is off.
    """
    from pgbg_cli import batch

    if file_text is not None and conn.info.parameter_status("standard_conforming_strings") == "off":
        # backslashes escape in plain strings on this server: split as it reads them
        pieces = batch.from_statements(file_text, source, standard_strings=False)
    held = hold_ctrl_c()
    try:
        rows, first = batch.submit(conn, pieces, label=label, timeout_ms=timeout_ms, queue_size=queue_size,
                                   group=group, group_limit=group_limit)
    except BaseException:
        release_ctrl_c(held)
        raise
    note_queued(*(f"{row['id']}:{row['cookie']}" for row in rows))
    return Queued(rows, first, held)


def group_for(group: str | None, limit: int | None) -> str | None:
    """The group the jobs go in: the one named, a new one (``batch-<date>-<time>-<4 hex>``) when
    only a limit is given, or none. A name of no character but spaces, too long or with a NUL
    is a UsageError."""
    from pgbg_cli.errors import UsageError

    if group is not None:
        if not group.strip() or len(group) > GROUP_NAME_MAX or "\x00" in group:
            raise UsageError(f"--group takes a name of 1 to {GROUP_NAME_MAX} characters")
        return group
    if limit is None:
        return None
    import secrets
    import time

    return f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def cancel_and_wait(dsn: str | None, handles: Sequence[Handle]) -> list[dict[str, Any]]:
    """Cancel the jobs and wait for them to end (2 minutes at most), on a new connection: the
    one a Ctrl-C interrupted may be mid-query."""
    from pgbg_cli import db, jobs

    for handle in handles:  # canceled: no longer a job to name as queued (pgbg_cli.cli)
        if str(handle) in QUEUED:
            QUEUED.remove(str(handle))
    with db.connection(dsn) as fresh:
        jobs.cancel(fresh, handles)
        return jobs.wait(fresh, handles, timeout_s=120)


def hold_ctrl_c() -> Any:
    """Block SIGINT (where the platform can); returns what to restore."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def release_ctrl_c(held: Any) -> None:
    """Restore the signal mask; a Ctrl-C that came meanwhile is raised from here."""
    import signal

    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
