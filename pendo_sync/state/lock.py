"""The run lock: the last line of defence against two writers of one sync (Dagster's pool and run queue
are the first). `with store.lock(sync, run_id):` holds it for the body; every batch's transaction
refreshes its heartbeat, so a lock whose holder stopped writing is known to be dead."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.errors import EXIT_FAILED
from pendo_sync.state.tables import StateTables, lock_table, utcnow
from pendo_sync.state.versions import StateError

# A lock whose holder has not written a batch for this long is taken to be dead (runs heartbeat per batch).
LOCK_STALE_AFTER = dt.timedelta(minutes=15)
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


class SyncLocked(StateError):
    """Another run of the same sync holds the lock."""

    exit_code = EXIT_FAILED


class Locks:
    """The locks table of one state schema."""

    def __init__(self, engine: Engine, tables: StateTables) -> None:
        self.engine = engine
        self.tables = tables
        self.table = tables.locks

    @contextmanager
    def hold(self, sync_name: str, run_id: str) -> Iterator[None]:
        """Hold the sync's lock for the body, and release it however the body ends."""
        self.acquire(sync_name, run_id)
        try:
            yield
        finally:
            self.release(sync_name, run_id)

    def acquire(self, sync_name: str, run_id: str) -> None:
        locks = self.table
        with self.engine.begin() as conn:
            lock_table(conn, self.tables, locks)
            row = conn.execute(
                sa.select(locks.c.run_id, locks.c.holder, locks.c.acquired_at).where(
                    locks.c.sync_name == sync_name
                )
            ).first()
            if row and row.run_id != run_id and not is_stale(row.holder, row.acquired_at):
                raise SyncLocked(
                    f"sync {sync_name!r} is being written by run {row.run_id} since "
                    f"{row.acquired_at:%Y-%m-%d %H:%M} UTC; wait for it, or if that run is dead: "
                    f"pendo-sync state unlock {sync_name}"
                )
            conn.execute(sa.delete(locks).where(locks.c.sync_name == sync_name))
            conn.execute(
                sa.insert(locks).values(
                    sync_name=sync_name, run_id=run_id, holder=HOLDER, acquired_at=utcnow()
                )
            )

    def heartbeat(self, conn: Connection, sync_name: str, run_id: str, now: dt.datetime) -> None:
        """In a batch's transaction: the holder is alive."""
        locks = self.table
        conn.execute(
            sa.update(locks)
            .where(locks.c.sync_name == sync_name, locks.c.run_id == run_id)
            .values(acquired_at=now)
        )

    def release(self, sync_name: str, run_id: str | None = None) -> None:
        """Release the lock (any holder's, with run_id None: `pendo-sync state unlock`)."""
        stmt = sa.delete(self.table).where(self.table.c.sync_name == sync_name)
        if run_id:
            stmt = stmt.where(self.table.c.run_id == run_id)
        with self.engine.begin() as conn:
            conn.execute(stmt)


def is_stale(holder: str, heartbeat: dt.datetime, now: dt.datetime | None = None) -> bool:
    """A lock is stale when its holder stopped writing batches, or was a process of this host that is gone."""
    if (now or utcnow()) - heartbeat >= LOCK_STALE_AFTER:
        return True
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
