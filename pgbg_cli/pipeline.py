"""Several statements in one network round trip (libpq's pipeline mode, through psycopg).

A ``Batch`` queues statements, and the ends of transactions (``sync``), then sends them
all at once and reads every answer. Each stretch between two syncs is one implicit
transaction: a statement that fails skips the rest of its stretch only, and what the other
stretches did stays done. Every answer is kept in a ``Slot``: its rows, or the error the
server raised (the same psycopg exception ``execute`` would raise), or "skipped".

On a server far away this is what makes a command fast: each round trip costs a full
network delay, whatever the statements cost. The statements run in order, each parsed
after the previous one ran, so a ``set_config('search_path', ...)`` applies to the
statements queued after it.

Values are bound parameters (``%s`` or ``%(name)s`` placeholders, as in ``execute``);
statements without parameters are sent as they are (``%`` needs no doubling then).
"""

from __future__ import annotations

import re
import select
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg import pq

_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\))?s|%%|%(.)", re.DOTALL)


class Skipped(Exception):
    """A statement the server skipped, after an earlier statement of its transaction failed."""


class Slot:
    """The answer to one queued statement, filled in by ``Batch.run``."""

    def __init__(self) -> None:
        self.result: pq.abc.PGresult | None = None
        self.error: Exception | None = None
        self._rows: list[dict[str, Any]] | None = None
        self._tx: Any = None
        self._parse: Slot | None = None  # a describe's: the answer to its Parse

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts; raises the statement's error (or ``Skipped``) instead."""
        if self.error is not None:
            raise self.error
        if self._rows is None:
            res = self.result
            assert res is not None, "Batch.run() first"
            names = [(res.fname(i) or b"?column?").decode("utf-8", "replace") for i in range(res.nfields)]
            self._tx.set_pgresult(res)
            self._rows = [dict(zip(names, row, strict=True)) for row in self._tx.load_rows(0, res.ntuples, tuple)]
        return self._rows

    def one(self) -> dict[str, Any] | None:
        rows = self.rows()
        return rows[0] if rows else None


class Batch:
    """Statements and syncs queued on ``conn``, sent together by ``run``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._steps: list[tuple[str, Any, Slot | None]] = []

    def query(self, statement: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Slot:
        """Queue a statement; its answer lands in the returned slot."""
        slot = Slot()
        self._steps.append(("query", (statement, params), slot))
        return slot

    def describe(self, statement: str, name: str = "") -> Slot:
        """Queue a Parse and Describe of ``statement`` (nothing is executed): the slot's
        ``result`` then tells its result columns (``nfields``, ``fname``, ``ftype``, ``fmod``).
        With a ``name``, the prepared statement stays (for EXECUTE, EXPLAIN, DEALLOCATE)."""
        slot = Slot()
        self._steps.append(("describe", (statement, name), slot))
        return slot

    def sync(self) -> None:
        """End the current transaction: what follows runs even if something before failed."""
        self._steps.append(("sync", None, None))

    def run(self) -> None:
        """Send everything queued (closing it with a sync), then read every answer."""
        from psycopg import errors, pq
        from psycopg.adapt import PyFormat, Transformer

        if not self._steps or self._steps[-1][0] != "sync":
            self.sync()
        pgconn = self.conn.pgconn
        encoding = self.conn.info.encoding
        expected: list[Slot | None] = []  # what each answer fills, in order: a slot, or None for a sync
        steps, self._steps = self._steps, []
        done = 0
        pgconn.enter_pipeline_mode()
        try:
            for kind, arg, slot in steps:
                if kind == "sync":
                    pgconn.pipeline_sync()
                    expected.append(None)
                elif kind == "describe":
                    statement, name = arg
                    pgconn.send_prepare(name.encode(encoding), statement.encode(encoding))
                    pgconn.send_describe_prepared(name.encode(encoding))
                    assert slot is not None
                    slot._parse = Slot()  # the Parse's own answer, kept for its error
                    expected += [slot._parse, slot]
                else:
                    statement, params = arg
                    assert slot is not None
                    slot._tx = tx = Transformer(self.conn)
                    text, values = _bind(statement, params)
                    if values is None:
                        pgconn.send_query_params(text.encode(encoding), None)
                    else:
                        dumped = tx.dump_sequence(values, [PyFormat.AUTO] * len(values))
                        pgconn.send_query_params(text.encode(encoding), dumped, tx.types, tx.formats)
                    expected.append(slot)
            _flush(pgconn)
            for done, slot in enumerate(expected):  # noqa: B007 (done: where an interruption stopped)
                res = _next_result(pgconn)
                if slot is None:
                    if res is None or res.status != pq.ExecStatus.PIPELINE_SYNC:
                        raise errors.InternalError("pgbg: the server's answers are out of step with the batch")
                    continue
                while _next_result(pgconn) is not None:  # the end of this statement's answers
                    pass
                if res is None:
                    raise errors.InternalError("pgbg: the server's answers are out of step with the batch")
                if res.status == pq.ExecStatus.FATAL_ERROR:
                    slot.error = errors.error_from_result(res, encoding=encoding)
                elif res.status == pq.ExecStatus.PIPELINE_ABORTED:
                    # a describe whose Parse failed reports the Parse's error, as describing alone would
                    parsed = slot._parse
                    slot.error = parsed.error if parsed is not None and parsed.error is not None else Skipped(
                        "skipped: an earlier statement failed")
                else:
                    slot.result = res
        except BaseException:
            # Ctrl-C (or a lost connection): stop the server's work, read what is left, so that
            # the connection can be used (and closed) as after an interrupted execute()
            _abandon(self.conn, syncs=sum(1 for slot in expected[done:] if slot is None))
            raise
        pgconn.exit_pipeline_mode()


def _bind(statement: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, list[Any] | None]:
    """``statement`` with $n placeholders, and the values in their order (psycopg's rules)."""
    if params is None:
        return statement, None
    values: list[Any] = []
    numbers: dict[str, int] = {}
    positional = iter(params) if not isinstance(params, Mapping) else None

    def swap(match: re.Match[str]) -> str:
        name, other = match.group(1), match.group(2)
        if match.group(0) == "%%":
            return "%"
        if other is not None:
            raise ValueError(f"only %s and %(name)s placeholders are supported, not %{other}")
        if name is None:
            if positional is None:
                raise ValueError("a %s placeholder with named parameters")
            values.append(next(positional))
            return f"${len(values)}"
        if not isinstance(params, Mapping):
            raise ValueError(f"a %({name})s placeholder with positional parameters")
        if name not in numbers:
            values.append(params[name])
            numbers[name] = len(values)
        return f"${numbers[name]}"

    text = _PLACEHOLDER.sub(swap, statement)
    if positional is not None and next(positional, _END) is not _END:
        raise ValueError("more parameters than %s placeholders")
    return text, values


_END = object()


def _abandon(conn: psycopg.Connection[Any], *, syncs: int) -> None:
    """Best effort, after an interruption: cancel, read up to the last sync, leave pipeline mode."""
    from psycopg import pq

    pgconn = conn.pgconn
    try:
        if pgconn.status != pq.ConnStatus.OK:
            return
        pgconn.pipeline_sync()  # closes a stretch left open by a failure while sending
        _flush(pgconn)
        conn.cancel_safe(timeout=5.0)
        seen = 0
        while seen < syncs + 1:
            res = _next_result(pgconn)
            if res is not None and res.status == pq.ExecStatus.PIPELINE_SYNC:
                seen += 1
        pgconn.exit_pipeline_mode()
    except BaseException:  # the interruption that brought us here is what the caller reports
        pass


def _wait(pgconn: pq.abc.PGconn, *, write: bool) -> None:
    fd = pgconn.socket
    if write:
        select.select([fd], [fd], [])
    else:
        select.select([fd], [], [])


def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush() != 0:
        _wait(pgconn, write=True)
        pgconn.consume_input()


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result, waiting (interruptibly) for the server's answer."""
    while pgconn.is_busy():
        _wait(pgconn, write=False)
        pgconn.consume_input()
    while notify := pgconn.notifies():  # LISTEN's notifications go where psycopg delivers them
        if pgconn.notify_handler:
            pgconn.notify_handler(notify)
    return pgconn.get_result()
