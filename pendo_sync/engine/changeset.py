"""The change set: what a run must send, and which ids it must treat as deleted or duplicated.

The policy, whatever the run's mode: every row of the slice whose hash differs from what Pendo confirmed;
every row an earlier run rejected (kinds invalid, error, duplicate always, missing once
missing_retry_seconds have passed), joined back to the source by id whatever the cursor says; never a row
of an id that more than one source row carries (those are rejected as duplicates, every run).

How it is read depends on where the ledger is. In the warehouse, the diff is one SQL join, done by the
database at any size (warehouse/diff.py). In a separate state database (a read-only warehouse), the
source streams chunk by chunk and each chunk is looked up in the ledger, with memory bounded by the chunk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.state.bulk import chunks
from pendo_sync.state.store import StateStore
from pendo_sync.state.tables import utcnow
from pendo_sync.warehouse.diff import (
    PENDO_LACKS,
    UNKNOWN_PREV,
    ChangeSetSQL,
    DiffState,
    Part,
    count_of,
    rowid_end,
    rowid_pages,
    spooled_rows,
)
from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.record_sql import written_by
from pendo_sync.warehouse.slices import Slice, count_rows, stream_rows, stream_tuples

# DuckDB runs a sync's joins in the sync's own process, within its memory_limit (64 MB by default), and its
# hash join needs a floor that grows with the rows joined: a reconcile of 10,000,000 rows ran out of memory.
# A join over more rows than this is split by a hash of the id into parts, each joined apart (one more scan
# of both sides a part). The benchmark's 1,000,000-row diff fits in every run; parts of 2,000,000 were a
# third faster at ten million rows but failed one run in five.
DUCKDB_JOIN_ROWS = 1_000_000


# A changed row is the driver's own tuple, in ChangeSetSQL.records order: no object per row (a sync reads
# a million rows a minute, and an object each cost a tenth of its time). ROW_PREV is the ledger's hash:
# None when the ledger lacks the id, so confirming it needs no delete. ROW_RETRY is 1 when an earlier run
# rejected the row. ROW_JSON is the JSON object of the values the database wrote (warehouse/record_sql.py),
# or None. The mapped values follow from ROW_VALUES on, in spec.fields order, each None where the database
# wrote it; with a change log, the fields' fingerprints come last (diff.py FIELDS_COL).
ROW_ID, ROW_HASH, ROW_PREV, ROW_RETRY, ROW_JSON, ROW_VALUES = range(6)
ChangedRow = tuple[Any, ...]


def flagged(row: ChangedRow, new: bool, retried: bool) -> ChangedRow:
    """The row with its flags set: the ledger lacks the id (new), an earlier run rejected it (retried)."""
    return (
        row[ROW_ID],
        row[ROW_HASH],
        None if new else UNKNOWN_PREV,
        1 if retried else None,
        *row[ROW_JSON:],
    )


@dataclass
class ChangeSet:
    """The rows a run must send and the ids it must treat as deleted or duplicated."""

    spec: SyncSpec
    warehouse: Engine
    state: StateStore
    window: Slice
    full_refresh: bool = False
    column_types: dict[str, str] | None = None
    unique_ids: bool = False  # the source enforces one row per id (a primary key): no duplicates to find
    # A full refresh being continued: only what the ledger holds from this version on was sent by it.
    refresh_since: int | None = None
    missing_since: dt.datetime = field(init=False)
    # Nothing confirmed or rejected before this run: its change set is its whole slice, nothing can have
    # been deleted. Read once, when the run is planned, before its first batch lands in the ledger.
    fresh: bool = field(init=False)

    def __post_init__(self) -> None:
        self.missing_since = utcnow() - dt.timedelta(seconds=self.spec.missing_retry_seconds)
        self.fresh = self.state.ledger.is_fresh(self.spec.name)
        self.sql = ChangeSetSQL(
            self.spec,
            self.window,
            self.column_types,
            self.duplicated_ids > 0,
            self.full_refresh,
            fingerprints=self.spec.logs_changes,
            confirmed_since=self.refresh_since,
        )
        self.reader: _Reader = _JoinInWarehouse(self) if self.ledger_in_warehouse else _Streamed(self)

    @cached_property
    def written(self) -> tuple[bool, ...]:
        """Which mapped values the database writes into each record itself (warehouse/record_sql.py)."""
        return written_by(self.warehouse, self.spec, self.column_types)

    @property
    def ledger_in_warehouse(self) -> bool:
        return self.state.engine.url == self.warehouse.url

    @cached_property
    def duplicated_ids(self) -> int:
        """How many ids more than one source row carries (each is rejected, every run)."""
        if self.unique_ids:
            return 0
        with self.warehouse.connect() as conn:
            return int(
                conn.execute(count_of(ChangeSetSQL(self.spec, self.window, None).duplicate_ids())).scalar()
                or 0
            )

    @property
    def whole_slice(self) -> bool:
        """The change set is every row of the slice, no diff needed: a first sync, or a full refresh with no
        reject to retry."""
        if self.spec.existing_ids_only or self.duplicated_ids:
            return False
        return self.fresh or (self.full_refresh and not self._has_rejects)

    @cached_property
    def _has_rejects(self) -> bool:
        return bool(self.state.rejects.count_by_kind(self.spec.name))

    def diff_state(self) -> DiffState:
        t = self.state.tables
        return DiffState(
            self.spec.name,
            t.ledger,
            t.rejects,
            None if self.fresh else self.state.rejects.retry_flags(self.spec.name, self.missing_since),
            t.pendo_ids if self.spec.existing_ids_only else None,
        )

    # -- what the run reads ----------------------------------------------------------------------------
    def changed_rows(self, chunk_rows: int) -> Iterator[Sequence[ChangedRow]]:
        yield from self.reader.changed_rows(chunk_rows)

    def duplicates(self, chunk_rows: int) -> Iterator[list[tuple[str, int]]]:
        """(id, rows carrying it) for every duplicated id of the source, in chunks."""
        if not self.duplicated_ids:
            return
        for part in stream_rows(self.warehouse, self.sql.duplicate_ids(), chunk_rows):
            yield [(str(record_id), int(copies)) for record_id, copies in map(tuple, part)]

    def deleted_ids(self, chunk_rows: int) -> Iterator[list[str]]:
        """Ledger ids that are no longer in the source (meaningful only for a full slice)."""
        if not self.fresh:  # the ledger held nothing when the run began: all it holds now is in the source
            yield from self.reader.deleted_ids(chunk_rows)

    def vanished_rejects(self, chunk_rows: int) -> Iterator[list[str]]:
        """Rejected ids the ledger lacks that left the source: nothing is owed for them any more (but for
        the `error` rejects of a sync that clears deleted ids: owed_clears)."""
        if not self.fresh:
            yield from self.reader.gone_rejects(chunk_rows, other_than="error" if self._owes_clears else None)

    @property
    def _owes_clears(self) -> bool:
        return self.spec.on_delete == "clear"

    def owed_clears(self, chunk_rows: int, outside_ledger: bool) -> Iterator[list[str]]:
        """With on_delete: clear, the ids of `error` rejects that left the source, to clear: a write Pendo
        may have applied though its answer was lost, or a clear that failed. Every run clears them (a full
        run, which clears the ledger's ids gone from the source, asks for those `outside_ledger`)."""
        if self._owes_clears:
            yield from self.reader.gone_rejects(chunk_rows, only="error", in_ledger=not outside_ledger)

    # -- sizes, for progress ---------------------------------------------------------------------------
    def expected_total(self, with_deletes: bool) -> int:
        """Records a run will send, for progress and ETA, where knowing it up front is cheap; -1 otherwise
        (the run learns it exactly when its reader has seen every row). A first sync or a full refresh
        sends its whole slice, which a plain count says without hashing a row (a refresh's deleted ids come
        on top); an incremental window's diff is small enough to count twice. The diff of a whole table
        against a full ledger is not counted: that would double the cost of the run's largest pass."""
        if self.whole_slice:
            return count_rows(self.warehouse, self.spec, self.window)
        return -1 if with_deletes else self.count_changed()

    def count_changed(self) -> int:
        """Size of the change set; -1 with a separate state database (it would cost a pass)."""
        return self.reader.count_changed()

    @cached_property
    def parts(self) -> list[Part | None]:
        """The parts a join of the slice with the ledger is done in: DuckDB joins at most DUCKDB_JOIN_ROWS
        rows a side at once; other databases join it whole. Counted once, when a run first needs them."""
        if backend_of(self.warehouse) != "duckdb":
            return [None]
        rows = max(
            count_rows(self.warehouse, self.spec, self.window), self.state.ledger.count(self.spec.name)
        )
        n = -(-rows // DUCKDB_JOIN_ROWS)
        return [None] if n <= 1 else [(k, n) for k in range(n)]


class _Reader:
    """How a change set is read: one strategy per place of the ledger."""

    def __init__(self, changes: ChangeSet) -> None:
        self.changes = changes

    def changed_rows(self, chunk_rows: int) -> Iterator[Sequence[ChangedRow]]:
        raise NotImplementedError

    def deleted_ids(self, chunk_rows: int) -> Iterator[list[str]]:
        raise NotImplementedError

    def gone_rejects(
        self, chunk_rows: int, other_than: str | None = None, only: str | None = None, in_ledger: bool = False
    ) -> Iterator[list[str]]:
        """Rejected ids (diff.py ChangeSetSQL.gone_rejects says which) the source no longer holds."""
        raise NotImplementedError

    def count_changed(self) -> int:
        raise NotImplementedError


class _JoinInWarehouse(_Reader):
    """The ledger is in the warehouse: the diff is SQL joins, done where the data lives."""

    def changed_rows(self, chunk_rows: int) -> Iterator[Sequence[ChangedRow]]:
        yield from self._changed(chunk_rows)

    def _changed(self, chunk_rows: int) -> Iterator[Sequence[tuple[Any, ...]]]:
        """On DuckDB, a change set that is a whole table's slice (no join needed) is read by rowid range,
        hashing as it goes; any other diff through a scratch copy (see _read)."""
        c = self.changes
        on_duckdb = backend_of(c.warehouse) == "duckdb"
        end = rowid_end(c.warehouse, c.spec) if c.whole_slice and on_duckdb else None
        if end is None:
            state = c.diff_state()
            yield from self._read(
                lambda part: c.sql.records(c.sql.changed(state, part)), chunk_rows, "changes"
            )
            return
        # A first sync's rows are all new to the ledger (prev NULL); a refresh does not look.
        prev = None if c.full_refresh else sa.null()
        yield from rowid_pages(
            c.warehouse,
            lambda start, stop: c.sql.records(c.sql.rows(c.sql.source_rows(rowids=(start, stop)), prev)),
            end,
            chunk_rows,
        )

    def deleted_ids(self, chunk_rows: int) -> Iterator[list[str]]:
        state = self.changes.diff_state()
        for rows in self._read(lambda part: self.changes.sql.gone(state, part), chunk_rows, "gone"):
            yield [r[0] for r in rows]

    def gone_rejects(
        self, chunk_rows: int, other_than: str | None = None, only: str | None = None, in_ledger: bool = False
    ) -> Iterator[list[str]]:
        """One anti-join, where the data lives (a query per chunk of rejects, each an IN list over the
        source, ran DuckDB out of its memory cap in the benchmark)."""
        c = self.changes
        stmt = c.sql.gone_rejects(c.diff_state(), other_than, only, in_ledger)
        for rows in stream_rows(c.warehouse, stmt, chunk_rows):
            yield [r[0] for r in rows]

    def count_changed(self) -> int:
        c = self.changes
        state = c.diff_state()
        with c.warehouse.connect() as conn:
            return sum(
                int(conn.execute(count_of(c.sql.changed(state, part))).scalar() or 0) for part in c.parts
            )

    def _read(
        self, query: Callable[[Part | None], sa.Select[Any]], chunk_rows: int, purpose: str
    ) -> Iterator[Sequence[tuple[Any, ...]]]:
        """A query over the warehouse and the ledger, in chunks, while the run writes the ledger.
        PostgreSQL and Redshift stream it through one server-side cursor. DuckDB cannot: while any
        transaction is open it keeps the undo buffers of every later commit and does not checkpoint, so a
        read open across the run's ledger writes holds memory in proportion to the rows written. There the
        result is copied into a scratch table beside the ledger, one part of the ids at a time (parts),
        and read from it a range at a time."""
        c = self.changes
        if backend_of(c.warehouse) != "duckdb":
            yield from stream_tuples(c.warehouse, query(None), chunk_rows)
            return
        scratch = f"{purpose}_{c.spec.name}"  # one run of a sync at a time (the run lock)
        parts = [query(part) for part in c.parts]
        yield from spooled_rows(c.warehouse, parts, chunk_rows, c.state.schema, scratch)


class _Streamed(_Reader):
    """The ledger is in a separate state database: the source streams, and each chunk of it is looked up
    in the ledger and the rejects; then the rows to retry outside the slice are read by id."""

    def changed_rows(self, chunk_rows: int) -> Iterator[Sequence[ChangedRow]]:
        c = self.changes
        for rows in stream_tuples(
            c.warehouse, c.sql.records(c.sql.rows(c.sql.source_rows(), None)), chunk_rows
        ):
            changed = self._changed(rows)
            if changed:
                yield changed
        if c.fresh or c.window.mode == "full":
            return  # nothing to retry, or every row to retry was in the slice
        for ids in c.state.rejects.retry_ids(c.spec.name, c.missing_since, chunk_rows):
            for chunk in chunks(ids, 1000):
                retried = c.sql.records(c.sql.rows(c.sql.source_rows(ids=chunk), None))
                with c.warehouse.connect() as conn:
                    found = [tuple(r) for r in conn.execute(retried)]
                changed = self._changed(found)
                if changed:
                    yield changed

    def _changed(self, rows: Sequence[ChangedRow]) -> list[ChangedRow]:
        c = self.changes
        # A first sync has nothing to look up: what the ledger holds now, this run wrote (and looking
        # would probe a table growing under stale statistics, which PostgreSQL plans as a full scan).
        if c.fresh:
            changed = [flagged(r, new=not c.full_refresh, retried=r[ROW_RETRY] == 1) for r in rows]
        else:
            ids = [r[ROW_ID] for r in rows if r[ROW_ID] is not None]
            confirmed = {} if c.full_refresh else c.state.ledger.hashes(c.spec.name, ids, c.refresh_since)
            flags = c.state.rejects.flags_of(c.spec.name, ids, c.missing_since)
            changed = []
            for r in rows:
                record_id, row_hash = r[ROW_ID], r[ROW_HASH]
                retry, held = flags.get(record_id, (r[ROW_RETRY] == 1, None))
                if not c.full_refresh and held == row_hash:
                    continue  # Pendo reported the id missing recently: not again yet
                if c.full_refresh or retry or confirmed.get(record_id) != row_hash:
                    new = not c.full_refresh and record_id not in confirmed
                    changed.append(flagged(r, new=new, retried=bool(retry)))
        if changed and c.spec.existing_ids_only:  # rows of ids Pendo's list lacks: marked (diff.py)
            known = c.state.ledger.pendo_ids_among(c.spec.name, [r[ROW_ID] for r in changed])
            changed = [
                r if r[ROW_ID] in known else (*r[:ROW_PREV], PENDO_LACKS, *r[ROW_RETRY:]) for r in changed
            ]
        return changed

    def deleted_ids(self, chunk_rows: int) -> Iterator[list[str]]:
        for ids in self.changes.state.ledger.ids(self.changes.spec.name, chunk_rows):
            gone = self._absent(ids)
            if gone:
                yield gone

    def gone_rejects(
        self, chunk_rows: int, other_than: str | None = None, only: str | None = None, in_ledger: bool = False
    ) -> Iterator[list[str]]:
        c = self.changes
        for rejected in c.state.rejects.rejected_ids(c.spec.name, chunk_rows, only, other_than):
            if not in_ledger:
                confirmed = c.state.ledger.hashes(c.spec.name, rejected)
                rejected = [i for i in rejected if i not in confirmed]
            gone = self._absent(rejected)
            if gone:
                yield gone

    def _absent(self, ids: list[str]) -> list[str]:
        """Those of the ids the source does not hold."""
        c = self.changes
        present: set[str] = set()
        with c.warehouse.connect() as conn:
            for chunk in chunks(ids, 1000):
                present.update(r[0] for r in conn.execute(c.sql.present_ids(chunk)))
        return [i for i in ids if i not in present]

    def count_changed(self) -> int:
        return -1  # unknown without a full pass; progress shows no ETA
