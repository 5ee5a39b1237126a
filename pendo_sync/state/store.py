"""The state store: the state tables of one schema, in the warehouse (so the change set is one SQL join where
the data is) or in a separate database when the warehouse is read-only.

Its parts each hold one concern: `ledger` (what Pendo confirmed, and the rejects beside it), `rejects`
(what a run retries, what an operator reads), `versions` (one row per run, revert), `locks` (one writer per
sync). `record_batch` is the one transaction that spans them: a batch's outcome.
"""

from __future__ import annotations

import math
import time
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
        heartbeat: bool = True,
        may_have_rejects: bool = True,
    ) -> None:
        """record_batch's writes, in the caller's transaction (`may_have_rejects` False: the sync has no
        reject for this batch to clear)."""
        now = utcnow()
        self.ledger.write(conn, sync_name, version, run_id, batch, now, may_have_rejects)
        if heartbeat:
            self.locks.heartbeat(conn, sync_name, run_id, now)
        if counts is not None:
            self.versions.update_counts(conn, sync_name, version, counts)

    def batch_writer(self) -> BatchWriter:
        """A writer of one run's batch outcomes through one connection of its own (see BatchWriter)."""
        return BatchWriter(self)


# A run's figures reach its version row, and its lock's heartbeat the locks table, at most this often: a
# statement of each for every batch cost DuckDB 14 ms a batch, a third of a first sync's state writer. A
# killed run's version shows figures at most a second old (the ledger, written with every batch, is what
# counts); a lock is taken over only after 15 minutes without a heartbeat (state/lock.py).
FIGURES_EVERY_SECONDS = 1.0
HEARTBEAT_EVERY_SECONDS = 30.0


class BatchWriter:
    """Records a run's batch outcomes, each in its own transaction, through one connection that the first
    write opens and close() ends: used from one thread (the run's state writer). A DuckDB connection
    costs about 20 ms to open, a fifth of a 5,000-record batch's ledger write. It knows what the run wrote:
    whether the sync may have rejects to clear (probed once), and when it last wrote figures and beat."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._conn: Connection | None = None
        self._figures_at = self._beat_at = -math.inf
        self._may_have_rejects: bool | None = None  # unknown until the first batch

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
        now = time.monotonic()
        figures = counts if now - self._figures_at >= FIGURES_EVERY_SECONDS else None
        beat = now - self._beat_at >= HEARTBEAT_EVERY_SECONDS
        with self._conn.begin():
            if self._may_have_rejects is None:
                self._may_have_rejects = self.store.ledger.has_rejects(self._conn, sync_name)
            may_have_rejects = self._may_have_rejects or bool(batch.rejects)
            self.store.write_batch(
                self._conn, sync_name, version, run_id, batch, figures, beat, may_have_rejects
            )
        self._may_have_rejects = may_have_rejects
        if figures is not None:
            self._figures_at = now
        if beat:
            self._beat_at = now

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
