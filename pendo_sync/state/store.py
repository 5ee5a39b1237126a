"""State beside the warehouse: the ledger of confirmed hashes, outstanding rejects, state versions, a run lock.

Tables live in one schema (default `pendo_sync`) of the warehouse, so the change set is one SQL join where
the data is; or in a separate database when the warehouse is read-only. Every write is Redshift-safe: no
ON CONFLICT, upserts are delete-and-insert inside one transaction.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.slices import stream_rows

COUNTERS = ("rows_read", "sent", "updated", "missing", "rejected", "cleared", "deleted", "calls", "retries")
# A lock whose holder has not written a batch for this long is taken to be dead (runs heartbeat per batch).
LOCK_STALE_AFTER = dt.timedelta(minutes=15)
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
# Ids per DELETE ... IN (...): a whole batch (at most max_batch_records, 5000) in one statement, since
# where no index serves the lookup (DuckDB, Redshift) each statement is a scan of the table.
ID_CHUNK = 5000
# A run that confirmed or cleared this many rows refreshes the ledger's planner statistics (PostgreSQL).
ANALYZE_AFTER_ROWS = 10_000


class StateError(RuntimeError):
    """State cannot be read or written as asked; the message says what to do."""


class SyncLocked(StateError):
    """Another run of the same sync holds the lock."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def encode_cursor(value: Any) -> tuple[str | None, str | None]:
    """Cursor value as (text, type) so it survives the round trip through a VARCHAR column."""
    if value is None:
        return None, None
    if isinstance(value, dt.datetime):
        return value.isoformat(), "timestamp"
    if isinstance(value, dt.date):
        return value.isoformat(), "date"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value), "number"
    return str(value), "string"


def decode_cursor(text: str | None, kind: str | None) -> Any:
    if text is None:
        return None
    if kind == "timestamp":
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "number":
        return float(text) if any(c in text for c in ".eE") else int(text)
    return text


@dataclass
class StateVersion:
    """One run's (or one revert's) record: what it did and where the cursor stands after it."""

    sync_name: str
    version: int
    run_id: str
    mode: str
    status: str
    cursor: Any
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""

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
            "counts": self.counts,
            "note": self.note,
        }


@dataclass(frozen=True)
class Reject:
    record_id: str
    row_hash: str
    kind: str  # "missing" | "invalid" | "error"
    reason: str


class StateStore:
    """Reads and writes the state tables; one instance per state database and schema."""

    def __init__(self, engine: Engine, schema: str = "pendo_sync") -> None:
        self.engine = engine
        self.schema = schema
        md = sa.MetaData(schema=schema)
        self.ledger = sa.Table(
            "ledger",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
            sa.Column("row_hash", sa.String(32), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("confirmed_at", sa.DateTime, nullable=False),
        )
        self.rejects = sa.Table(
            "rejects",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
            sa.Column("row_hash", sa.String(32), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(1024), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("rejected_at", sa.DateTime, nullable=False),
        )
        self.versions = sa.Table(
            "versions",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("mode", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("cursor_value", sa.String(256)),
            sa.Column("cursor_type", sa.String(16)),
            *[sa.Column(name, sa.BigInteger, nullable=False, default=0) for name in COUNTERS],
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("note", sa.String(1024), nullable=False, default=""),
        )
        self.locks = sa.Table(
            "locks",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("holder", sa.String(256), nullable=False, default=""),  # host:pid
            sa.Column("acquired_at", sa.DateTime, nullable=False),  # refreshed by every batch
        )
        # The ids Pendo has, fetched through the aggregation API for syncs with existing_ids_only: kept
        # here (not in memory) so the change set can join against it at any size.
        self.pendo_ids = sa.Table(
            "pendo_ids",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
        )
        self.metadata = md
        # Lookups by id: each batch's delete-and-insert and the change set's join with the ledger.
        self.indexes = (
            sa.Index("ledger_by_record", self.ledger.c.sync_name, self.ledger.c.record_id),
            sa.Index("rejects_by_record", self.rejects.c.sync_name, self.rejects.c.record_id),
        )
        self._ready = False

    @property
    def backend(self) -> str:
        return backend_of(self.engine)

    def ensure_schema(self) -> None:
        """Create the schema and tables if they are missing. Creating the schema needs CREATE on the
        database; where a DBA made the schema and granted it to the sync, owning it is enough."""
        if self._ready:
            return
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :schema"),
                {"schema": self.schema},
            ).scalar()
            if not exists:
                conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
            for table in self.metadata.sorted_tables:
                conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
            if self.backend == "postgresql":
                # Without them every batch's delete scans the ledger (quadratic over a full sync), and a
                # cursor's fast-start plan joins the ledger by nested loop. Redshift has no indexes (its
                # sort keys serve), and a DuckDB ART index makes these deletes slower, not faster.
                for index in self.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        self._ready = True

    # -- lock -------------------------------------------------------------------------------------
    def acquire_lock(self, sync_name: str, run_id: str) -> None:
        """The last line of defence against two writers of one sync (Dagster pools are the first)."""
        with self.engine.begin() as conn:
            self._lock_table(conn, self.locks)
            row = conn.execute(
                sa.select(self.locks.c.run_id, self.locks.c.holder, self.locks.c.acquired_at).where(
                    self.locks.c.sync_name == sync_name
                )
            ).first()
            if row and row.run_id != run_id and not _lock_is_stale(row.holder, row.acquired_at):
                raise SyncLocked(
                    f"sync {sync_name!r} is being written by run {row.run_id} since {row.acquired_at:%Y-%m-%d %H:%M} UTC; "
                    f"wait for it, or if that run is dead: pendo-sync state unlock {sync_name}"
                )
            conn.execute(sa.delete(self.locks).where(self.locks.c.sync_name == sync_name))
            conn.execute(
                sa.insert(self.locks).values(
                    sync_name=sync_name, run_id=run_id, holder=HOLDER, acquired_at=utcnow()
                )
            )

    def release_lock(self, sync_name: str, run_id: str | None = None) -> None:
        stmt = sa.delete(self.locks).where(self.locks.c.sync_name == sync_name)
        if run_id:
            stmt = stmt.where(self.locks.c.run_id == run_id)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def _lock_table(self, conn: Connection, table: sa.Table) -> None:
        if self.backend in ("postgresql", "redshift"):
            conn.execute(sa.text(f"LOCK TABLE {self._quoted(table)}"))
        # DuckDB: one writer process per file, and conflicting transactions abort.

    def _quoted(self, table: sa.Table) -> str:
        prep = self.engine.dialect.identifier_preparer
        return f"{prep.quote_schema(self.schema)}.{prep.quote(table.name)}"

    # -- versions ---------------------------------------------------------------------------------
    def begin_version(self, sync_name: str, run_id: str, mode: str, cursor: Any) -> int:
        """Open a new state version (status 'running') carrying the cursor the run starts from."""
        with self.engine.begin() as conn:
            self._lock_table(conn, self.versions)
            version = self._next_version(conn, sync_name)
            text, kind = encode_cursor(cursor)
            conn.execute(
                sa.insert(self.versions).values(
                    sync_name=sync_name,
                    version=version,
                    run_id=run_id,
                    mode=mode,
                    status="running",
                    cursor_value=text,
                    cursor_type=kind,
                    started_at=utcnow(),
                    note="",
                    **dict.fromkeys(COUNTERS, 0),
                )
            )
        return version

    def _next_version(self, conn: Connection, sync_name: str) -> int:
        current = conn.execute(
            sa.select(sa.func.max(self.versions.c.version)).where(self.versions.c.sync_name == sync_name)
        ).scalar()
        return int(current or 0) + 1

    def abandon_running(self, sync_name: str) -> int:
        """Mark versions left 'running' by a dead run as abandoned; call holding the sync's lock."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(self.versions)
                .where(self.versions.c.sync_name == sync_name, self.versions.c.status == "running")
                .values(
                    status="abandoned",
                    note="the run stopped without finishing (killed?); its confirmed batches are in the ledger",
                )
            )
        return int(result.rowcount or 0)

    def finish_version(
        self, sync_name: str, version: int, status: str, cursor: Any, counts: dict[str, int], note: str = ""
    ) -> None:
        text, kind = encode_cursor(cursor)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(self.versions)
                .where(self.versions.c.sync_name == sync_name, self.versions.c.version == version)
                .values(
                    status=status,
                    cursor_value=text,
                    cursor_type=kind,
                    finished_at=utcnow(),
                    note=note[:1024],
                    **{k: int(counts.get(k, 0)) for k in COUNTERS},
                )
            )
        if (
            self.backend == "postgresql"
            and counts.get("sent", 0) + counts.get("cleared", 0) >= ANALYZE_AFTER_ROWS
        ):
            # Statistics of a ledger that just grew from nothing say it is empty, and the next change set's
            # cursor then joins it by nested loop over a full scan: seconds at 50,000 rows, minutes at a million.
            # Autovacuum would fix them within a minute, where it runs; a run must not depend on it.
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"ANALYZE {self._quoted(self.ledger)}"))

    def versions_of(self, sync_name: str) -> list[StateVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.versions)
                .where(self.versions.c.sync_name == sync_name)
                .order_by(self.versions.c.version)
            ).all()
        return [self._version(row) for row in rows]

    def version(self, sync_name: str, version: int | None = None) -> StateVersion | None:
        found = self.versions_of(sync_name)
        if version is None:
            return found[-1] if found else None
        return next((v for v in found if v.version == version), None)

    def current_cursor(self, sync_name: str) -> Any:
        """The cursor of the newest version that set one: partial and failed runs carry the old cursor over."""
        latest = self.version(sync_name)
        return latest.cursor if latest else None

    def _version(self, row: sa.Row[Any]) -> StateVersion:
        return StateVersion(
            sync_name=row.sync_name,
            version=row.version,
            run_id=row.run_id,
            mode=row.mode,
            status=row.status,
            cursor=decode_cursor(row.cursor_value, row.cursor_type),
            started_at=row.started_at,
            finished_at=row.finished_at,
            counts={k: int(getattr(row, k)) for k in COUNTERS},
            note=row.note or "",
        )

    # -- outcome of one batch ---------------------------------------------------------------------
    def record_batch(
        self,
        sync_name: str,
        version: int,
        run_id: str,
        confirmed: Sequence[tuple[str, str]] = (),
        rejects: Sequence[Reject] = (),
        forgotten: Sequence[str] = (),
        counts: dict[str, int] | None = None,
        new_ids: Collection[str] = (),
    ) -> None:
        """One transaction: confirmed (id, hash) into the ledger, rejects stored, deleted ids forgotten,
        and the version's running counts, so a crash between batches loses nothing and claims nothing.
        `new_ids`: confirmed ids the change set found absent from the ledger, which need no delete
        (on a first sync that is every id: no DELETE scans a growing ledger)."""
        now = utcnow()
        with self.engine.begin() as conn:
            self._delete_ids(
                conn,
                sync_name,
                [rid for rid, _ in confirmed if rid not in new_ids] + list(forgotten),
                [r.record_id for r in rejects] + [rid for rid, _ in confirmed if rid in new_ids],
            )
            if confirmed:
                self._insert(
                    conn,
                    self.ledger,
                    {"record_id": [rid for rid, _ in confirmed], "row_hash": [h for _, h in confirmed]},
                    {"sync_name": sync_name, "version": version, "confirmed_at": now},
                )
            if rejects:
                self._insert(
                    conn,
                    self.rejects,
                    {
                        "record_id": [r.record_id for r in rejects],
                        "row_hash": [r.row_hash for r in rejects],
                        "kind": [r.kind for r in rejects],
                        "reason": [r.reason[:1024] for r in rejects],
                    },
                    {"sync_name": sync_name, "run_id": run_id, "version": version, "rejected_at": now},
                )
            conn.execute(
                sa.update(self.locks)
                .where(self.locks.c.sync_name == sync_name, self.locks.c.run_id == run_id)
                .values(acquired_at=now)
            )
            if counts:
                conn.execute(
                    sa.update(self.versions)
                    .where(self.versions.c.sync_name == sync_name, self.versions.c.version == version)
                    .values({k: int(v) for k, v in counts.items() if k in COUNTERS})
                )

    def _delete_ids(
        self, conn: Connection, sync_name: str, ledger_ids: list[str], reject_ids: list[str]
    ) -> None:
        """Forget `ledger_ids` in the ledger, and any outstanding reject of those and of `reject_ids`."""
        for chunk in _chunks(ledger_ids, ID_CHUNK):
            conn.execute(
                sa.delete(self.ledger).where(
                    self.ledger.c.sync_name == sync_name, self.ledger.c.record_id.in_(chunk)
                )
            )
        # Most batches of most runs have no reject to clear: one indexed probe spares a DELETE whose
        # 5,000-value IN list alone takes DuckDB ~30 ms to plan (and PostgreSQL ~50 ms to run).
        if not self._has_rows(conn, self.rejects, sync_name):
            return
        for chunk in _chunks(ledger_ids + reject_ids, ID_CHUNK):
            conn.execute(
                sa.delete(self.rejects).where(
                    self.rejects.c.sync_name == sync_name, self.rejects.c.record_id.in_(chunk)
                )
            )

    def _has_rows(self, conn: Connection, table: sa.Table, sync_name: str) -> bool:
        """One indexed probe: does the sync have any row in this table."""
        found = conn.execute(sa.select(table.c.record_id).where(table.c.sync_name == sync_name).limit(1))
        return found.first() is not None

    def _insert(
        self, conn: Connection, table: sa.Table, columns: dict[str, Sequence[Any]], constants: dict[str, Any]
    ) -> None:
        """Insert rows given column by column (equal lengths), with `constants` the same in every row."""
        if not any(columns.values()):
            return
        names = list(columns) + list(constants)
        quoted = ", ".join(self.engine.dialect.identifier_preparer.quote(name) for name in names)
        into = f"INSERT INTO {self._quoted(table)} ({quoted})"
        if self.backend == "duckdb":
            # DuckDB's executemany runs row by row, and SQLAlchemy spends ~100 us a row compiling a
            # multi-VALUES statement; one list per column, unnested side by side, is one cheap statement.
            marks = ", ".join(["unnest(?)"] * len(columns) + ["?"] * len(constants))
            conn.exec_driver_sql(
                f"{into} SELECT {marks}", (*map(list, columns.values()), *constants.values())
            )
        elif self.backend == "postgresql" and self.engine.dialect.driver == "psycopg2":
            # COPY: 2 us a ledger row in Python and 7 us in all here, against 31 us for multi-row INSERTs
            # (the index included); it runs in the batch's transaction like any statement.
            tail = "".join("\t" + _copy_text(v) for v in constants.values()) + "\n"
            lines = (
                "\t".join(cells)
                for cells in zip(*(map(_copy_text, c) for c in columns.values()), strict=True)
            )
            buffer = io.StringIO(tail.join(lines) + tail)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.copy_expert(f"COPY {self._quoted(table)} ({quoted}) FROM STDIN", buffer)
            finally:
                cursor.close()
        else:
            # Redshift (no COPY from a client) and other drivers: one multi-row INSERT per 1,000 rows,
            # values bound by the driver (SQLAlchemy's insertmanyvalues costs ~10 us a row in Python).
            row_marks = "(" + ", ".join(["%s"] * len(names)) + ")"
            fixed = tuple(constants.values())
            rows = list(zip(*columns.values(), strict=True))
            for chunk in _chunks(rows, 1000):
                conn.exec_driver_sql(
                    f"{into} VALUES " + ", ".join([row_marks] * len(chunk)),
                    tuple(value for row in chunk for value in (*row, *fixed)),
                )

    # -- reads ------------------------------------------------------------------------------------
    def ledger_hashes(self, sync_name: str, record_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(record_ids), 1000):
                rows = conn.execute(
                    sa.select(self.ledger.c.record_id, self.ledger.c.row_hash).where(
                        self.ledger.c.sync_name == sync_name, self.ledger.c.record_id.in_(chunk)
                    )
                )
                out.update({r.record_id: r.row_hash for r in rows})
        return out

    def recent_missing(
        self, sync_name: str, record_ids: Sequence[str], since: dt.datetime
    ) -> set[tuple[str, str]]:
        """(id, hash) pairs Pendo reported missing since `since`: not worth a call again yet."""
        out: set[tuple[str, str]] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(list(record_ids), 1000):
                rows = conn.execute(
                    sa.select(self.rejects.c.record_id, self.rejects.c.row_hash).where(
                        self.rejects.c.sync_name == sync_name,
                        self.rejects.c.kind == "missing",
                        self.rejects.c.rejected_at > since,
                        self.rejects.c.record_id.in_(chunk),
                    )
                )
                out.update((r.record_id, r.row_hash) for r in rows)
        return out

    def ledger_ids(self, sync_name: str, chunk_rows: int) -> Iterator[list[str]]:
        """Every id in the ledger for a sync, in chunks (for the streaming delete check)."""
        stmt = sa.select(self.ledger.c.record_id).where(self.ledger.c.sync_name == sync_name)
        for part in stream_rows(self.engine, stmt, chunk_rows):
            yield [r.record_id for r in part]

    def clear_pendo_ids(self, sync_name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.pendo_ids).where(self.pendo_ids.c.sync_name == sync_name))

    def add_pendo_ids(self, sync_name: str, record_ids: Sequence[str]) -> None:
        """Append one page of the ids Pendo reported (clear_pendo_ids first)."""
        if record_ids:
            with self.engine.begin() as conn:
                self._insert(conn, self.pendo_ids, {"record_id": record_ids}, {"sync_name": sync_name})

    def pendo_ids_among(self, sync_name: str, record_ids: Sequence[str]) -> set[str]:
        """Which of these ids are in the stored list of ids Pendo has."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(list(record_ids), 1000):
                found.update(
                    conn.execute(
                        sa.select(self.pendo_ids.c.record_id).where(
                            self.pendo_ids.c.sync_name == sync_name, self.pendo_ids.c.record_id.in_(chunk)
                        )
                    ).scalars()
                )
        return found

    def is_fresh(self, sync_name: str) -> bool:
        """Neither a confirmed row nor a reject for the sync: its next change set is its whole slice."""
        with self.engine.connect() as conn:
            return not (
                self._has_rows(conn, self.ledger, sync_name) or self._has_rows(conn, self.rejects, sync_name)
            )

    def ledger_count(self, sync_name: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(self.ledger)
                    .where(self.ledger.c.sync_name == sync_name)
                ).scalar()
                or 0
            )

    def ledger_rows(self, sync_name: str) -> dict[str, str]:
        """The whole ledger of a sync as id -> hash; for tests and small inspections only."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.ledger.c.record_id, self.ledger.c.row_hash).where(
                    self.ledger.c.sync_name == sync_name
                )
            )
            return {r.record_id: r.row_hash for r in rows}

    def rejects_of(self, sync_name: str, limit: int | None = None) -> list[dict[str, Any]]:
        stmt = (
            sa.select(self.rejects)
            .where(self.rejects.c.sync_name == sync_name)
            .order_by(self.rejects.c.record_id)
        )
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def rejects_of_run(
        self, sync_name: str, run_id: str, chunk_rows: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """The rejects a run recorded that are still outstanding, chunk by chunk (a run may reject a table)."""
        stmt = (
            sa.select(self.rejects)
            .where(self.rejects.c.sync_name == sync_name, self.rejects.c.run_id == run_id)
            .order_by(self.rejects.c.record_id)
        )
        for part in stream_rows(self.engine, stmt, chunk_rows):
            yield [dict(r._mapping) for r in part]

    # -- revert and import ------------------------------------------------------------------------
    def revert_plan(self, sync_name: str, to_version: int) -> int:
        """How many confirmed rows a revert to `to_version` forgets (so the next run resends them)."""
        self._require_version(sync_name, to_version)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(self.ledger)
                    .where(self.ledger.c.sync_name == sync_name, self.ledger.c.version > to_version)
                ).scalar()
                or 0
            )

    def revert(self, sync_name: str, to_version: int, run_id: str = "revert") -> StateVersion:
        """Step back to a version: forget every row confirmed after it and restore its cursor, as a new version."""
        target = self._require_version(sync_name, to_version)
        forgotten = self.revert_plan(sync_name, to_version)
        with self.engine.begin() as conn:
            self._lock_table(conn, self.versions)
            conn.execute(
                sa.delete(self.ledger).where(
                    self.ledger.c.sync_name == sync_name, self.ledger.c.version > to_version
                )
            )
            conn.execute(
                sa.delete(self.rejects).where(
                    self.rejects.c.sync_name == sync_name, self.rejects.c.version > to_version
                )
            )
            version = self._next_version(conn, sync_name)
            text, kind = encode_cursor(target.cursor)
            now = utcnow()
            conn.execute(
                sa.insert(self.versions).values(
                    sync_name=sync_name,
                    version=version,
                    run_id=run_id,
                    mode="revert",
                    status="complete",
                    cursor_value=text,
                    cursor_type=kind,
                    started_at=now,
                    finished_at=now,
                    note=f"reverted to version {to_version}; {forgotten} confirmed rows forgotten, the next run resends them",
                    **dict.fromkeys(COUNTERS, 0),
                )
            )
        reverted = self.version(sync_name, version)
        assert reverted is not None
        return reverted

    def _require_version(self, sync_name: str, version: int) -> StateVersion:
        found = self.version(sync_name, version)
        if found is None:
            known = [v.version for v in self.versions_of(sync_name)]
            raise StateError(
                f"sync {sync_name!r} has no state version {version}; versions are {known or 'none yet'}"
            )
        return found

    def import_version(self, sync_name: str, cursor: Any, note: str) -> int:
        """A version that only sets the cursor (used by the Singer import)."""
        version = self.begin_version(sync_name, "import", "import", cursor)
        self.finish_version(sync_name, version, "complete", cursor, {}, note)
        return version

    def as_json(self, sync_name: str) -> str:
        return json.dumps([v.as_dict() for v in self.versions_of(sync_name)], indent=2)


def _lock_is_stale(holder: str, heartbeat: dt.datetime) -> bool:
    """A lock is stale when its holder stopped writing batches, or was a process of this host that is gone."""
    if utcnow() - heartbeat >= LOCK_STALE_AFTER:
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


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in COPY's text format: backslash escapes, NULL as \\N."""
    if value is None:
        return "\\N"
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return text.translate(_COPY_ESCAPES)


def _chunks(items: Sequence[Any] | Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
