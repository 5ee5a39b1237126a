"""The ledger (what Pendo confirmed, one row per sync and id) and the rejects beside it: each batch's writes,
and the lookups a run makes. Also the stored list of ids Pendo has (existing_ids_only syncs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.outcome import Reject
from pendo_sync.state.bulk import chunks, insert_columns
from pendo_sync.state.change_log import ChangeLog
from pendo_sync.state.tables import StateTables
from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.slices import stream_rows

# Ids per DELETE ... IN (...): a whole batch (at most max_batch_records, 5000) in one statement, since
# where no index serves the lookup (DuckDB, Redshift) each statement is a scan of the table.
ID_CHUNK = 5000
# A run that confirmed or cleared this many rows refreshes the ledger's planner statistics (PostgreSQL).
ANALYZE_AFTER_ROWS = 10_000


@dataclass
class BatchOutcome:
    """What one batch did, as the state store records it. Upserts Pendo confirmed come column by column:
    ids, hashes, and whether the ledger lacked each id when the change set was read (confirming it then
    needs no delete: a first sync issues none)."""

    ids: Sequence[str] = ()
    hashes: Sequence[str] = ()
    new: Sequence[bool] = ()
    rejects: Sequence[Reject] = ()
    forgotten: Sequence[str] = ()  # ids that leave the ledger: cleared, deleted, or no longer owed
    cleared: Sequence[str] = ()  # of the forgotten, those whose fields Pendo confirmed cleared (the log)
    field_hashes: Sequence[str] = ()  # with the change log: each confirmed row's field fingerprints
    fields: Sequence[str] = ()  # the mapped fields, in fingerprint order
    log: bool = False  # write the change log

    @classmethod
    def of(
        cls,
        confirmed: Sequence[tuple[str, str]] = (),
        new_ids: set[str] | frozenset[str] = frozenset(),
        **rest: Any,
    ) -> BatchOutcome:
        """From (id, hash) pairs and the set of ids new to the ledger."""
        ids = [record_id for record_id, _ in confirmed]
        return cls(ids, [h for _, h in confirmed], [i in new_ids for i in ids], **rest)


class Ledger:
    """Reads and writes the ledger, rejects and pendo_ids tables of one state schema."""

    def __init__(self, engine: Engine, tables: StateTables) -> None:
        self.engine = engine
        self.tables = tables
        self.change_log = ChangeLog(engine, tables)

    # -- one batch's outcome (in the caller's transaction) ---------------------------------------------
    def write(
        self,
        conn: Connection,
        sync_name: str,
        version: int,
        run_id: str,
        batch: BatchOutcome,
        now: dt.datetime,
        may_have_rejects: bool = True,
    ) -> None:
        """Confirmed rows replace the ids' ledger rows and clear their rejects; rejects replace the ids'
        outstanding rejects (keeping when they were first met and counting the runs); forgotten ids leave
        both. With `batch.log`, each row's change goes to the change log. `may_have_rejects` False: the
        sync has none (its run's writer knows), so none is looked for."""
        t = self.tables
        replaced = [] if all(batch.new) else list(compress(batch.ids, [not n for n in batch.new]))
        history = self._reject_history(conn, sync_name, [r.record_id for r in batch.rejects])
        previous = self._field_hashes(conn, sync_name, replaced) if batch.log else {}
        self._delete_ids(conn, sync_name, replaced + list(batch.forgotten), batch, may_have_rejects)
        if batch.ids:
            columns: dict[str, Sequence[Any]] = {"record_id": batch.ids, "row_hash": batch.hashes}
            if batch.log:
                columns["field_hashes"] = batch.field_hashes
            constants = {"sync_name": sync_name, "version": version, "confirmed_at": now}
            insert_columns(conn, t.ledger, t.quoted(conn, t.ledger), columns, constants)
        if batch.rejects:
            firsts = [history.get(r.record_id, (now, 0)) for r in batch.rejects]
            insert_columns(
                conn,
                t.rejects,
                t.quoted(conn, t.rejects),
                {
                    "record_id": [r.record_id for r in batch.rejects],
                    "row_hash": [r.row_hash for r in batch.rejects],
                    "kind": [r.kind for r in batch.rejects],
                    "reason": [r.reason[:1024] for r in batch.rejects],
                    "first_rejected_at": [first for first, _ in firsts],
                    "attempts": [attempts + 1 for _, attempts in firsts],
                },
                {"sync_name": sync_name, "run_id": run_id, "version": version, "rejected_at": now},
            )
        if batch.log:
            self.change_log.write_entries(conn, sync_name, version, run_id, batch, previous, now)

    def _reject_history(
        self, conn: Connection, sync_name: str, ids: list[str]
    ) -> dict[str, tuple[dt.datetime, int]]:
        """id -> (first rejected, runs that rejected it) for those of the ids already rejected."""
        rejects = self.tables.rejects
        if not ids or not _has_rows(conn, rejects, sync_name):
            return {}
        out: dict[str, tuple[dt.datetime, int]] = {}
        for chunk in chunks(ids, ID_CHUNK):
            rows = conn.execute(
                sa.select(
                    rejects.c.record_id,
                    rejects.c.first_rejected_at,
                    rejects.c.rejected_at,
                    rejects.c.attempts,
                ).where(rejects.c.sync_name == sync_name, rejects.c.record_id.in_(chunk))
            )
            out.update(
                {r.record_id: (r.first_rejected_at or r.rejected_at, int(r.attempts or 1)) for r in rows}
            )
        return out

    def _field_hashes(self, conn: Connection, sync_name: str, ids: list[str]) -> dict[str, str]:
        ledger = self.tables.ledger
        out: dict[str, str] = {}
        for chunk in chunks(ids, ID_CHUNK):
            rows = conn.execute(
                sa.select(ledger.c.record_id, ledger.c.field_hashes).where(
                    ledger.c.sync_name == sync_name, ledger.c.record_id.in_(chunk)
                )
            )
            out.update({r.record_id: r.field_hashes or "" for r in rows})
        return out

    def has_rejects(self, conn: Connection, sync_name: str) -> bool:
        return _has_rows(conn, self.tables.rejects, sync_name)

    def prune_change_log(self, sync_name: str, older_than: dt.datetime) -> int:
        return self.change_log.prune(sync_name, older_than)

    def _delete_ids(
        self,
        conn: Connection,
        sync_name: str,
        ledger_ids: list[str],
        batch: BatchOutcome,
        may_have_rejects: bool = True,
    ) -> None:
        """Forget `ledger_ids` in the ledger, and any outstanding reject of those and of the batch's ids."""
        ledger, rejects = self.tables.ledger, self.tables.rejects
        for chunk in chunks(ledger_ids, ID_CHUNK):
            conn.execute(
                sa.delete(ledger).where(ledger.c.sync_name == sync_name, ledger.c.record_id.in_(chunk))
            )
        # Most batches of most runs have no reject to clear: one indexed probe spares a DELETE whose
        # 5,000-value IN list alone takes DuckDB ~30 ms to plan (and PostgreSQL ~50 ms to run).
        if not (may_have_rejects and self.has_rejects(conn, sync_name)):
            return
        new = list(compress(batch.ids, batch.new))  # confirmed, new to the ledger: not in ledger_ids
        for chunk in chunks(ledger_ids + new + [r.record_id for r in batch.rejects], ID_CHUNK):
            conn.execute(
                sa.delete(rejects).where(rejects.c.sync_name == sync_name, rejects.c.record_id.in_(chunk))
            )

    def analyze(self, rows_written: int) -> None:
        """Statistics of a ledger that just grew from nothing say it is empty, and the next change set's
        cursor then joins it by nested loop over a full scan: seconds at 50,000 rows, minutes at a million.
        Autovacuum would fix them within a minute, where it runs; a run must not depend on it."""
        if backend_of(self.engine) == "postgresql" and rows_written >= ANALYZE_AFTER_ROWS:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"ANALYZE {self.tables.quoted(conn, self.tables.ledger)}"))

    # -- reads -----------------------------------------------------------------------------------------
    def hashes(self, sync_name: str, record_ids: Sequence[str], since: int | None = None) -> dict[str, str]:
        """id -> confirmed hash, for those of the ids the ledger has; with `since` (a full refresh being
        continued), '' for rows confirmed before that version, which match no row's hash."""
        ledger = self.tables.ledger
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(record_ids), 1000):
                rows = conn.execute(
                    sa.select(ledger.c.record_id, ledger.c.row_hash, ledger.c.version).where(
                        ledger.c.sync_name == sync_name, ledger.c.record_id.in_(chunk)
                    )
                )
                out.update(
                    {r.record_id: "" if since is not None and r.version < since else r.row_hash for r in rows}
                )
        return out

    def sample_ids(self, sync_name: str, size: int) -> list[str]:
        """`size` confirmed ids picked at random (pendo-sync verify)."""
        ledger = self.tables.ledger
        stmt = (
            sa.select(ledger.c.record_id)
            .where(ledger.c.sync_name == sync_name)
            .order_by(sa.func.random())
            .limit(size)
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(stmt)]

    def ids(self, sync_name: str, chunk_rows: int) -> Iterator[list[str]]:
        """Every id in the ledger for a sync, in chunks (for the streaming delete check)."""
        ledger = self.tables.ledger
        stmt = sa.select(ledger.c.record_id).where(ledger.c.sync_name == sync_name)
        for part in stream_rows(self.engine, stmt, chunk_rows):
            yield [r.record_id for r in part]

    @contextlib.contextmanager
    def seen_ids(self) -> Iterator[SeenIds]:
        """A temporary table of ids (verify --all: the ids Pendo has), on a connection of its own."""
        with self.engine.connect() as conn:
            seen = SeenIds(conn, self.tables.ledger)
            try:
                yield seen
            finally:
                conn.rollback()
                seen.table.drop(conn)
                conn.commit()

    def count(self, sync_name: str) -> int:
        ledger = self.tables.ledger
        stmt = sa.select(sa.func.count()).select_from(ledger).where(ledger.c.sync_name == sync_name)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def rows(self, sync_name: str) -> dict[str, str]:
        """The whole ledger of a sync as id -> hash; for tests and small inspections only."""
        ledger = self.tables.ledger
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ledger.c.record_id, ledger.c.row_hash).where(ledger.c.sync_name == sync_name)
            )
            return {r.record_id: r.row_hash for r in rows}

    def is_fresh(self, sync_name: str) -> bool:
        """Neither a confirmed row nor a reject for the sync: its next change set is its whole slice."""
        with self.engine.connect() as conn:
            return not (
                _has_rows(conn, self.tables.ledger, sync_name)
                or _has_rows(conn, self.tables.rejects, sync_name)
            )

    # -- the ids Pendo has (existing_ids_only) -----------------------------------------------------------
    def clear_pendo_ids(self, sync_name: str) -> None:
        known = self.tables.pendo_ids
        with self.engine.begin() as conn:
            conn.execute(sa.delete(known).where(known.c.sync_name == sync_name))

    def add_pendo_ids(self, sync_name: str, record_ids: Sequence[str]) -> None:
        """Append one page of the ids Pendo reported (clear_pendo_ids first)."""
        if record_ids:
            known = self.tables.pendo_ids
            with self.engine.begin() as conn:
                insert_columns(
                    conn,
                    known,
                    self.tables.quoted(conn, known),
                    {"record_id": record_ids},
                    {"sync_name": sync_name},
                )

    def pendo_ids_among(self, sync_name: str, record_ids: Sequence[str]) -> set[str]:
        """Which of these ids are in the stored list of ids Pendo has."""
        known = self.tables.pendo_ids
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(list(record_ids), 1000):
                found.update(
                    conn.execute(
                        sa.select(known.c.record_id).where(
                            known.c.sync_name == sync_name, known.c.record_id.in_(chunk)
                        )
                    ).scalars()
                )
        return found


def _has_rows(conn: Connection, table: sa.Table, sync_name: str) -> bool:
    """One indexed probe: does the sync have any row in this table."""
    found = conn.execute(sa.select(table.c.record_id).where(table.c.sync_name == sync_name).limit(1))
    return found.first() is not None


class SeenIds:
    """Ledger ids met elsewhere (among the records Pendo has), kept in a temporary table of the state
    database; then the ledger's ids that were not met, in chunks. Memory holds a page of ids, never every
    id. Each write commits (a temporary table outlives its transactions), so no transaction stays open
    while the caller waits for Pendo."""

    def __init__(self, conn: Connection, ledger: sa.Table) -> None:
        self.conn, self.ledger = conn, ledger
        self.table = sa.Table(
            f"pendo_sync_seen_{uuid.uuid4().hex[:12]}",
            sa.MetaData(),
            sa.Column("record_id", sa.String(512), nullable=False),
            prefixes=["TEMPORARY"],
        )
        self.table.create(conn)
        conn.commit()
        self._quoted = conn.dialect.identifier_preparer.quote(self.table.name)

    def add(self, ids: Sequence[str]) -> None:
        """Ids the ledger holds (so each fits its column)."""
        insert_columns(self.conn, self.table, self._quoted, {"record_id": list(ids)}, {})
        self.conn.commit()

    def unseen(self, sync_name: str, chunk_rows: int = 1000) -> Iterator[list[str]]:
        """The sync's ledger ids not among the ids added."""
        ledger, seen = self.ledger, self.table
        stmt = sa.select(ledger.c.record_id).where(
            ledger.c.sync_name == sync_name, ~sa.exists().where(seen.c.record_id == ledger.c.record_id)
        )
        result = self.conn.execute(stmt.execution_options(yield_per=chunk_rows))  # this statement only
        for part in result.partitions(chunk_rows):
            yield [row.record_id for row in part]
