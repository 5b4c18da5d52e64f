"""``pgbg list --watch`` and ``pgbg stats --watch`` on several targets: each refresh reads every
target at once (a thread and a kept connection each, made again when a target comes back) and
shows one view, the target named on every row; a target that cannot be read is counted and
named in the header (and, for stats, is a row saying so)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgbg_cli import jobview, output, stats, watch
from pgbg_cli.targets import SEPARATOR, Target

if TYPE_CHECKING:
    from rich.console import RenderableType


class _One:
    """One target's view over its own connection (None while it cannot be reached)."""

    def __init__(self, target: Target, make: Callable[[Any], Any]) -> None:
        self.target = target
        self.make = make  # the view of one connection
        self.view: Any = None
        self.error: str | None = None
        self.ever_failed = False

    def fetch(self) -> watch.Snapshot | None:
        from pgbg_cli import db, preflight
        from pgbg_cli.targets import _reason

        try:
            if self.view is None:
                conn = db.connect(self.target.dsn, pin=False)
                try:
                    preflight.check(conn)
                except BaseException:
                    conn.close()
                    raise
                self.view = self.make(conn)
            snap = self.view.fetch()
            self.error = None
            return snap
        except Exception as exc:
            self.error = _reason(exc)[0]
            self.ever_failed = True
            if self.view is not None:  # dropped: made again at the next refresh
                self.view.conn.close()
                self.view = None
            return None


def _read_all(ones: list[_One]) -> list[watch.Snapshot | None]:
    """Every target's snapshot, read at once (None for a target that could not be read)."""
    snaps: list[watch.Snapshot | None] = [None] * len(ones)

    def read(at: int) -> None:
        snaps[at] = ones[at].fetch()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(ones))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return snaps


def _busiest(snaps: list[watch.Snapshot | None]) -> stats.Slots:
    """Slots are a server's: the busiest target's (databases of one server share them)."""
    read = [snap.slots for snap in snaps if snap is not None]
    return stats.Slots(used=max((s.used for s in read), default=0),
                       max_worker_processes=max((s.max_worker_processes for s in read), default=0),
                       pg_background=max((s.pg_background for s in read), default=0))


def _close(ones: list[_One]) -> None:
    for one in ones:
        if one.view is not None:
            one.view.conn.close()
            one.view = None


class ManyListView:
    """The list view of several targets (watch.View)."""

    def __init__(self, targets: list[Target], **options: Any) -> None:
        self.ones = [_One(t, lambda conn: watch.ListView(conn, **options)) for t in targets]

    def fetch(self) -> watch.Snapshot:
        snaps = _read_all(self.ones)
        rows: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for one, snap in zip(self.ones, snaps, strict=True):
            if snap is None:
                continue
            for row in snap.jobs:
                rows.append(dict(row, target=one.target.name))
            for state, n in snap.counts.items():
                counts[state] = counts.get(state, 0) + n
        return watch.Snapshot(at=dt.datetime.now(dt.timezone.utc), slots=_busiest(snaps),
                              jobs=watch.by_importance(rows), counts=counts)

    def _failed(self) -> list[_One]:
        return [one for one in self.ones if one.error is not None]

    def line(self, snap: watch.Snapshot) -> list[str]:
        c = watch._counts(snap)
        counts = " ".join(f"{state}={c[state]}" for state in watch.LINE_STATES)
        down = self._failed()
        return [f"{stats.utc_stamp(snap.at)} {counts} targets={len(self.ones) - len(down)}/{len(self.ones)}"
                + "".join(f" unread={one.target.name}" for one in down)]

    def csv_rows(self, snap: watch.Snapshot) -> list[dict[str, Any]]:
        return [{"at": stats.utc_stamp(snap.at), **watch._counts(snap),
                 "targets_read": len(self.ones) - len(self._failed()), "targets": len(self.ones)}]

    def record(self, snap: watch.Snapshot) -> dict[str, Any]:
        return {"at": snap.at, "counts": snap.counts,
                "targets": [{"target": one.target.name, "error": one.error} for one in self.ones],
                "jobs": [jobview.record(j, now=snap.at) for j in snap.jobs]}  # each naming its target

    def render(self, snap: watch.Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        c = watch._counts(snap)
        down = self._failed()
        head = [f"{snap.at.astimezone():%H:%M:%S}  {c['running']} running, {c['queued']} queued"
                f" · {len(self.ones) - len(down)} of {len(self.ones)} targets read",
                "last 1h: " + ", ".join(f"{c[state]} {state}" for state in watch.LINE_STATES[2:])]
        head += [f"{one.target.name}: {one.error}" for one in down]
        parts: list[RenderableType] = [Text(output.printable(line), no_wrap=True, overflow="ellipsis",
                                            style="bold" if i == 0 else None) for i, line in enumerate(head)]
        named = [dict(row, handle=f"{row['target']}{SEPARATOR}{row.get('handle') or row.get('id')}",
                      id=f"{row['target']}{SEPARATOR}{row.get('id')}") for row in snap.jobs]
        parts += watch.jobs_table(named, width, height - len(head))
        return Group(*parts)

    def close(self) -> None:
        _close(self.ones)


class ManyStatsView:
    """The stats view of several targets (watch.View): one row per target (per target and
    group with ``by``); a target that cannot be read is a row saying so."""

    def __init__(self, targets: list[Target], *, window_ms: int, window_text: str, by: str | None = None,
                 group: str | None = None) -> None:
        self.window_ms = window_ms
        self.window_text = window_text
        self.by = by
        self.ones = [_One(t, lambda conn: watch.StatsView(conn, window_ms=window_ms, window_text=window_text,
                                                          by=by, group=group)) for t in targets]

    @property
    def unread_ever(self) -> bool:
        """Whether some refresh could not read some target (the exit status says so)."""
        return any(one.ever_failed for one in self.ones)

    def fetch(self) -> watch.Snapshot:
        snaps = _read_all(self.ones)
        groups: list[dict[str, Any]] = []
        live: list[dict[str, Any]] = []
        hidden = 0
        for one, snap in zip(self.ones, snaps, strict=True):
            name = one.target.name
            if snap is None:
                groups.append({"target": name, "group": None, "error": one.error})
                continue
            slots = {"slots_used": snap.slots.used, "max_worker_processes": snap.slots.max_worker_processes}
            for row in snap.groups:
                groups.append({"target": name, **row, **slots, "error": None})
            live += [dict(job, target=name) for job in snap.jobs]
            hidden += snap.hidden_jobs
        return watch.Snapshot(at=dt.datetime.now(dt.timezone.utc), slots=_busiest(snaps), groups=groups,
                              jobs=watch.by_importance(live), hidden_jobs=hidden)

    def _failed(self) -> list[_One]:
        return [one for one in self.ones if one.error is not None]

    def line(self, snap: watch.Snapshot) -> list[str]:
        stamp = stats.utc_stamp(snap.at)
        lines = []
        for row in snap.groups:
            head = f"{stamp} target={output.printable(row['target'])}"
            if row["error"] is not None:
                lines.append(f"{head} unread: {output.printable(row['error'])}")
                continue
            group = f" {self.by}={watch._one_line(row['group']) or '-'}" if self.by else ""
            figures = " ".join(f"{short}={watch._figure(row.get(key))}" for key, short in watch.LINE_FIELDS)
            lines.append(f"{head}{group} window={self.window_text} {figures}"
                         f" slots={row['slots_used']}/{row['max_worker_processes']}")
        return lines

    def record(self, snap: watch.Snapshot) -> dict[str, Any]:
        return {"at": snap.at, "window_s": self.window_ms / 1000,
                "targets": [{"target": one.target.name, "error": one.error} for one in self.ones],
                ("groups" if self.by else "stats"): [
                    {k: v for k, v in row.items() if self.by or k != "group"} for row in snap.groups]}

    def csv_rows(self, snap: watch.Snapshot) -> list[dict[str, Any]]:
        rows = []
        for row in snap.groups:
            rec: dict[str, Any] = {"at": stats.utc_stamp(snap.at), "target": row["target"]}
            if self.by:
                rec[self.by] = row.get("group")
            rec["window_s"] = self.window_ms / 1000
            rec.update({key: row.get(key) for key, _ in watch.LINE_FIELDS})
            rec.update(slots_used=row.get("slots_used"), max_worker_processes=row.get("max_worker_processes"),
                       error=row["error"])
            rows.append(rec)
        return rows

    def render(self, snap: watch.Snapshot, width: int, height: int) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        down = self._failed()
        head = [f"{snap.at.astimezone():%H:%M:%S} · last {self.window_text} · "
                f"{len(self.ones) - len(down)} of {len(self.ones)} targets read"]
        head += [f"{one.target.name}: {one.error}" for one in down]
        parts: list[RenderableType] = [Text(output.printable(line), no_wrap=True, overflow="ellipsis",
                                            style="bold" if i == 0 else None) for i, line in enumerate(head)]
        # the first column names the target (and the group with --by); an unread target's figures are "-"
        named = [dict(row, group=(f"{row['target']}{SEPARATOR}{'(none)' if row['group'] is None else row['group']}"
                                  if self.by and row["error"] is None else row["target"]))
                 for row in snap.groups]
        room = height - len(head)
        table, shown = watch.stats_table(named, f"target{SEPARATOR}{self.by}" if self.by else "target", width, room)
        parts += table
        room -= 2 + shown + (1 if shown < len(named) else 0)
        if snap.jobs and room >= 5:  # a blank line, the header and its rule, two jobs
            jobs = [dict(row, handle=f"{row['target']}{SEPARATOR}{row.get('handle') or row.get('id')}",
                         id=f"{row['target']}{SEPARATOR}{row.get('id')}") for row in snap.jobs]
            parts.append(Text(""))
            parts += watch.jobs_table(jobs, width, room - 1, hidden=snap.hidden_jobs)
        return Group(*parts)

    def close(self) -> None:
        _close(self.ones)
