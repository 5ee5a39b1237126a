"""State versions: one row per run (or revert, or import) of a sync, with its mode, status, cursor and
figures. A run opens a version `running`, updates its figures with every batch, and closes it; a revert
steps back to an earlier version as a new one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.errors import UsageError
from pendo_sync.outcome import STATUSES, RunCounts
from pendo_sync.state.cursor import decode_cursor, encode_cursor
from pendo_sync.state.tables import VERSION_FIGURES, StateTables, lock_table, utcnow


class StateError(UsageError):
    """State cannot be read or written as asked; the message says what to do."""


@dataclass
class StateVersion:
    """One run's (or one revert's) record: what it did and where the cursor stands after it."""

    sync_name: str
    version: int
    run_id: str
    mode: str
    status: str
    cursor: Any
    started_at: Any
    finished_at: Any
    counts: RunCounts = field(default_factory=RunCounts)
    note: str = ""
    refresh_since: int | None = None  # a full refresh: the version it began in

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync_name,
            "version": self.version,
            "run_id": self.run_id,
            "mode": self.mode,
            "status": self.status,
            "cursor": encode_cursor(self.cursor)[0],
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "counts": self.counts.as_dict(),
            "note": self.note,
            "refresh_since": self.refresh_since,
        }


def figures(counts: RunCounts) -> dict[str, int]:
    """The version row's figure columns for these counts."""
    values = counts.as_dict()
    return {name: values[name] for name in VERSION_FIGURES}


class Versions:
    """The versions table of one state schema."""

    def __init__(self, engine: Engine, tables: StateTables) -> None:
        self.engine = engine
        self.tables = tables
        self.table = tables.versions

    def begin(
        self,
        sync_name: str,
        run_id: str,
        mode: str,
        cursor: Any,
        mapping: str | None = None,
        refresh_since: int | None = None,
        refresh: bool = False,
    ) -> int:
        """Open a new state version (status 'running') carrying the cursor the run starts from, the digest
        of the mapping it sends with, and the full refresh it belongs to: one it continues
        (`refresh_since`), or one it begins (`refresh`)."""
        with self.engine.begin() as conn:
            return self._insert(
                conn, sync_name, run_id, mode, "running", cursor, "", False, mapping, refresh_since, refresh
            )

    def owed_refresh(self, sync_name: str) -> int | None:
        """The version a full refresh began in, when the latest full or incremental run belongs to one that
        did not go through (the budget stopped it, it failed, or it was killed): the next run continues
        it. None when no refresh is owed."""
        t = self.table
        stmt = (
            sa.select(t.c.status, t.c.refresh_since)
            .where(t.c.sync_name == sync_name, t.c.mode.in_(("full", "incremental")))
            .order_by(t.c.version.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.refresh_since is None or row.status in ("complete", "with_rejects"):
            return None
        return int(row.refresh_since)

    def last_mapping(self, sync_name: str) -> tuple[int, str] | None:
        """(version, mapping digest) of the latest full or incremental run that went through (complete or
        with rejects; a backfill covers only its window, an import or a revert sends nothing), or None
        where there is none since the column exists."""
        t = self.table
        stmt = (
            sa.select(t.c.version, t.c.mapping)
            .where(
                t.c.sync_name == sync_name,
                t.c.status.in_(("complete", "with_rejects")),
                t.c.mode.in_(("full", "incremental")),
                t.c.mapping.is_not(None),
            )
            .order_by(t.c.version.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else (int(row.version), str(row.mapping))

    def _insert(
        self,
        conn: Connection,
        sync_name: str,
        run_id: str,
        mode: str,
        status: str,
        cursor: Any,
        note: str,
        finished: bool,
        mapping: str | None = None,
        refresh_since: int | None = None,
        refresh: bool = False,
    ) -> int:
        lock_table(conn, self.tables, self.table)
        version = self._next(conn, sync_name)
        if refresh and refresh_since is None:
            refresh_since = version
        text, kind = encode_cursor(cursor)
        now = utcnow()
        conn.execute(
            sa.insert(self.table).values(
                sync_name=sync_name,
                version=version,
                run_id=run_id,
                mode=mode,
                status=status,
                cursor_value=text,
                cursor_type=kind,
                started_at=now,
                finished_at=now if finished else None,
                note=note[:1024],
                mapping=mapping,
                refresh_since=refresh_since,
                **figures(RunCounts()),
            )
        )
        return version

    def _next(self, conn: Connection, sync_name: str) -> int:
        current = conn.execute(
            sa.select(sa.func.max(self.table.c.version)).where(self.table.c.sync_name == sync_name)
        ).scalar()
        return int(current or 0) + 1

    def abandon_running(self, sync_name: str) -> int:
        """Mark versions left 'running' by a dead run as abandoned; call holding the sync's lock."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(self.table)
                .where(self.table.c.sync_name == sync_name, self.table.c.status == "running")
                .values(status="abandoned", note=STATUSES["abandoned"])
            )
        return int(result.rowcount or 0)

    def update_counts(self, conn: Connection, sync_name: str, version: int, counts: RunCounts) -> None:
        """A running version's figures so far (in the caller's transaction: a batch's outcome)."""
        conn.execute(
            sa.update(self.table)
            .where(self.table.c.sync_name == sync_name, self.table.c.version == version)
            .values(figures(counts))
        )

    def finish(
        self, sync_name: str, version: int, status: str, cursor: Any, counts: RunCounts, note: str = ""
    ) -> None:
        text, kind = encode_cursor(cursor)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(self.table)
                .where(self.table.c.sync_name == sync_name, self.table.c.version == version)
                .values(
                    status=status,
                    cursor_value=text,
                    cursor_type=kind,
                    finished_at=utcnow(),
                    note=note[:1024],
                    **figures(counts),
                )
            )

    def record(self, sync_name: str, run_id: str, mode: str, cursor: Any, note: str) -> int:
        """A finished version that only sets the cursor (a revert, an import)."""
        with self.engine.begin() as conn:
            return self._insert(conn, sync_name, run_id, mode, "complete", cursor, note, finished=True)

    def all(self, sync_name: str) -> list[StateVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.table)
                .where(self.table.c.sync_name == sync_name)
                .order_by(self.table.c.version)
            ).all()
        return [_version(row) for row in rows]

    def get(self, sync_name: str, version: int | None = None) -> StateVersion | None:
        """One version, or the newest with `version` None."""
        stmt = sa.select(self.table).where(self.table.c.sync_name == sync_name)
        if version is None:
            stmt = stmt.order_by(self.table.c.version.desc()).limit(1)
        else:
            stmt = stmt.where(self.table.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _version(row) if row is not None else None

    def require(self, sync_name: str, version: int) -> StateVersion:
        found = self.get(sync_name, version)
        if found is None:
            known = [v.version for v in self.all(sync_name)]
            raise StateError(
                f"sync {sync_name!r} has no state version {version}; versions are {known or 'none yet'}"
            )
        return found

    def current_cursor(self, sync_name: str) -> Any:
        """The cursor of the newest version: partial and failed runs carry the old cursor over."""
        latest = self.get(sync_name)
        return latest.cursor if latest else None

    # -- revert --------------------------------------------------------------------------------------
    def revert_plan(self, sync_name: str, to_version: int) -> int:
        """How many confirmed rows a revert to `to_version` forgets (so the next run resends them)."""
        self.require(sync_name, to_version)
        ledger = self.tables.ledger
        stmt = (
            sa.select(sa.func.count())
            .select_from(ledger)
            .where(ledger.c.sync_name == sync_name, ledger.c.version > to_version)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def revert(self, sync_name: str, to_version: int, run_id: str = "revert") -> StateVersion:
        """Step back to a version, as a new version: forget every row confirmed after it, so the next run
        resends them. The rows forgotten may have keys at or below that version's cursor (a full run or a
        look-back confirmed them), so the cursor is cleared: the next incremental run diffs the whole
        table with the ledger, as a first run does, and sends what the ledger lacks. Rejects stay: a row
        still owed is retried by the next run whatever its mode."""
        self.require(sync_name, to_version)
        forgotten = self.revert_plan(sync_name, to_version)
        ledger = self.tables.ledger
        note = (
            f"reverted to version {to_version}; {forgotten} confirmed rows forgotten, the next run diffs the "
            "whole table and resends them"
        )
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(ledger).where(ledger.c.sync_name == sync_name, ledger.c.version > to_version)
            )
            version = self._insert(conn, sync_name, run_id, "revert", "complete", None, note, finished=True)
        return self.require(sync_name, version)

    def as_json(self, sync_name: str) -> str:
        return json.dumps([v.as_dict() for v in self.all(sync_name)], indent=2)


def _version(row: sa.Row[Any]) -> StateVersion:
    mapping = row._mapping
    return StateVersion(
        sync_name=row.sync_name,
        version=row.version,
        run_id=row.run_id,
        mode=row.mode,
        status=row.status,
        cursor=decode_cursor(row.cursor_value, row.cursor_type),
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=RunCounts.from_dict({k: mapping.get(k) for k in VERSION_FIGURES}),
        note=row.note or "",
        refresh_since=mapping.get("refresh_since"),
    )
