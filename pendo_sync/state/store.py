"""The state store: the state tables of one schema, in the warehouse (so the change set is one SQL join where
the data is) or in a separate database when the warehouse is read-only.

Its parts each hold one concern: `ledger` (what Pendo confirmed, and the rejects beside it), `rejects`
(what a run retries, what an operator reads), `versions` (one row per run, revert), `locks` (one writer per
sync). `record_batch` is the one transaction that spans them: a batch's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.outcome import Reject, RunCounts
from pendo_sync.state.ledger import BatchOutcome, Ledger
from pendo_sync.state.lock import Locks
from pendo_sync.state.rejects import Rejects
from pendo_sync.state.tables import StateTables, ensure_schema, utcnow
from pendo_sync.state.versions import Versions


class StateStore:
    """The state of every sync kept in one database and schema."""

    def __init__(self, engine: Engine, schema: str = "pendo_sync") -> None:
        self.engine = engine
        self.schema = schema
        self.tables = StateTables(schema)
        self.ledger = Ledger(engine, self.tables)
        self.rejects = Rejects(engine, self.tables)
        self.versions = Versions(engine, self.tables)
        self.locks = Locks(engine, self.tables)
        self._ready = False

    def ensure_schema(self) -> None:
        """Create or migrate the state tables, once per store."""
        if not self._ready:
            ensure_schema(self.engine, self.tables)
            self._ready = True

    def lock(self, sync_name: str, run_id: str) -> AbstractContextManager[None]:
        """`with store.lock(sync, run_id):` the run is the sync's only writer."""
        return self.locks.hold(sync_name, run_id)

    def record_batch(
        self,
        sync_name: str,
        version: int,
        run_id: str,
        confirmed: Sequence[tuple[str, str]] = (),
        rejects: Sequence[Reject] = (),
        forgotten: Sequence[str] = (),
        counts: RunCounts | None = None,
        new_ids: set[str] | frozenset[str] = frozenset(),
        batch: BatchOutcome | None = None,
    ) -> None:
        """One batch's outcome in one transaction: confirmed rows, rejects, forgotten ids (or all of them as
        `batch`, with the change log), the run's figures so far and the lock's heartbeat. A crash loses at
        most the batches not yet written; nothing unconfirmed is ever recorded as confirmed (invariant 1)."""
        batch = batch or BatchOutcome.of(confirmed, new_ids, rejects=rejects, forgotten=forgotten)
        with self.engine.begin() as conn:
            self.write_batch(conn, sync_name, version, run_id, batch, counts)

    def write_batch(
        self,
        conn: Connection,
        sync_name: str,
        version: int,
        run_id: str,
        batch: BatchOutcome,
        counts: RunCounts | None,
    ) -> None:
        """record_batch's writes, in the caller's transaction."""
        now = utcnow()
        self.ledger.write(conn, sync_name, version, run_id, batch, now)
        self.locks.heartbeat(conn, sync_name, run_id, now)
        if counts is not None:
            self.versions.update_counts(conn, sync_name, version, counts)

    def batch_writer(self) -> BatchWriter:
        """A writer of one run's batch outcomes through one connection of its own (see BatchWriter)."""
        return BatchWriter(self)


class BatchWriter:
    """Records a run's batch outcomes, each in its own transaction, through one connection that the first
    write opens and close() ends: used from one thread (the run's state writer). A DuckDB connection
    costs about 20 ms to open, a fifth of a 5,000-record batch's ledger write."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._conn: Connection | None = None

    def record_batch(
        self, sync_name: str, version: int, run_id: str, batch: BatchOutcome, counts: RunCounts | None = None
    ) -> None:
        """One batch's outcome in its own transaction. A connection the server dropped since the last batch
        (a restart, an idle timeout) is replaced once: its transaction wrote nothing, so it is done again."""
        try:
            self._write(sync_name, version, run_id, batch, counts)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self.close()
            self._write(sync_name, version, run_id, batch, counts)

    def _write(
        self, sync_name: str, version: int, run_id: str, batch: BatchOutcome, counts: RunCounts | None
    ) -> None:
        if self._conn is None or self._conn.invalidated:
            self.close()
            self._conn = self.store.engine.connect()
        with self._conn.begin():
            self.store.write_batch(self._conn, sync_name, version, run_id, batch, counts)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
