"""The change set: which rows of a slice differ from what Pendo last confirmed, and which ids left the source.

With the ledger in the warehouse the diff is one SQL join, done by the database at any size (DuckDB,
which joins inside the sync's own process, joins millions of rows in parts of the id space). With the
ledger in a separate state database (read-only warehouse) the diff streams chunk by chunk, with memory
bounded by the chunk size.
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
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.slices import (
    HASH_COL,
    ID_COL,
    ROWID,
    Slice,
    count_rows,
    id_text,
    row_hash,
    rowid_end,
    rowid_pages,
    slice_predicate,
    source_relation,
    spooled_rows,
    stream_rows,
)

# DuckDB runs a sync's joins in the sync's own process, within its memory_limit (64 MB by default), and its
# hash join needs a floor that grows with the rows joined: a reconcile of 10,000,000 rows ran out of memory.
# A join over more rows than this is split by a hash of the id into parts, each joined apart (one more scan
# of both sides a part). The benchmark's 1,000,000-row diff fits in every run; parts of 2,000,000 were a
# third faster at ten million rows but failed one run in five.
DUCKDB_JOIN_ROWS = 1_000_000

# A part of the id space: (k, n), the ids whose hash is k modulo n.
Part = tuple[int, int]

# One changed row: (record id as text, hash of mapped values, whether the ledger lacks the id, mapped values
# in spec.fields order).
ChangedRow = tuple[str, str, bool, tuple[Any, ...]]
PREV_COL = "__pendo_prev"
UNKNOWN_PREV = "?"


@dataclass
class ChangeSet:
    """The rows a run must send and the ids it must treat as deleted."""

    spec: SyncSpec
    warehouse: Engine
    state: StateStore
    window: Slice
    full_refresh: bool = False
    missing_since: dt.datetime | None = None
    column_types: dict[str, str] | None = None
    # Nothing confirmed or rejected before this run: its change set is its whole slice, nothing can have
    # been deleted. Read once, when the run is planned, before its first batch lands in the ledger.
    fresh: bool = field(init=False)

    def __post_init__(self) -> None:
        self.fresh = self.state.is_fresh(self.spec.name)

    @property
    def whole_slice(self) -> bool:
        """The change set is every row of the slice (a first sync or a full refresh), no diff needed."""
        return (self.fresh or self.full_refresh) and not self.spec.existing_ids_only

    @property
    def ledger_in_warehouse(self) -> bool:
        return self.state.engine.url == self.warehouse.url

    def _hashed_source(self, rowids: tuple[int, int] | None = None, part: Part | None = None) -> sa.Subquery:
        rel = source_relation(self.spec)
        source_id = id_text(rel, self.spec)
        stmt = sa.select(
            source_id.label(ID_COL),
            row_hash(rel, self.spec, self.column_types).label(HASH_COL),
            *[rel.c[m.column] for m in self.spec.fields],
        )
        predicate = slice_predicate(rel, self.spec, self.window)
        if predicate is not None:
            stmt = stmt.where(predicate)
        if rowids is not None:
            stmt = stmt.where(ROWID.between(rowids[0], rowids[1] - 1))
        # On the source's own id, below the hash: a part hashes only its own rows.
        return stmt.where(*in_part(source_id, part)).subquery("h")

    def _rows_of(self, hashed: sa.Subquery, prev: sa.ColumnElement[Any] | None) -> sa.Select[Any]:
        """Columns in ChangedRow order; prev None: whether the ledger has the id is not known here."""
        return sa.select(
            hashed.c[ID_COL],
            hashed.c[HASH_COL],
            (sa.literal(UNKNOWN_PREV) if prev is None else prev).label(PREV_COL),
            *[hashed.c[m.column] for m in self.spec.fields],
        )

    def changed_query(self, existing_only: bool = True, part: Part | None = None) -> sa.Select[Any]:
        """The SQL-join diff: hashed slice rows whose hash the ledger lacks, less ids recently reported missing
        (and, for existing_ids_only syncs, less ids not in the stored list of ids Pendo has); with `part`,
        only the ids of that part (on both sides of the join)."""
        hashed = self._hashed_source(part=part)
        # The ledger's hash of each row (NULL: the ledger lacks the id); a full refresh does not look.
        stmt = self._rows_of(hashed, None if self.full_refresh else self.state.ledger.c.row_hash)
        if self.spec.existing_ids_only and existing_only:
            known = self.state.pendo_ids
            stmt = stmt.where(
                sa.exists().where(
                    known.c.sync_name == self.spec.name,
                    known.c.record_id == hashed.c[ID_COL],
                    *in_part(known.c.record_id, part),
                )
            )
        if self.full_refresh:
            return stmt
        ledger, rejects = self.state.ledger, self.state.rejects
        stmt = stmt.outerjoin(
            ledger,
            sa.and_(
                ledger.c.sync_name == self.spec.name,
                ledger.c.record_id == hashed.c[ID_COL],
                *in_part(ledger.c.record_id, part),
            ),
        ).where(sa.or_(ledger.c.row_hash.is_(None), ledger.c.row_hash != hashed.c[HASH_COL]))
        if self.missing_since is not None:
            recently_missing = sa.exists().where(
                rejects.c.sync_name == self.spec.name,
                rejects.c.record_id == hashed.c[ID_COL],
                rejects.c.row_hash == hashed.c[HASH_COL],
                rejects.c.kind == "missing",
                rejects.c.rejected_at > self.missing_since,
            )
            stmt = stmt.where(~recently_missing)
        return stmt

    def expected_total(self, with_deletes: bool) -> int:
        """Records a run will send, for progress and ETA, where knowing it up front is cheap; -1 otherwise
        (the run learns it exactly when its reader has seen every row). A first sync or a full refresh
        sends its whole slice, which a plain count says without hashing a row (a refresh's deleted ids come
        on top); an incremental window's diff is small enough to count twice. The diff of a whole table
        against a full ledger is not counted: that would double the cost of the run's largest pass."""
        if self.whole_slice:
            return count_rows(self.warehouse, self.spec, self.window)
        return -1 if with_deletes else self.count_changed()

    def count_changed(self, existing_only: bool = True) -> int:
        """Size of the change set (for progress and ETA); -1 in separate-state mode (it would cost a pass)."""
        if self.ledger_in_warehouse:
            total = 0
            with self.warehouse.connect() as conn:
                for part in self.parts:
                    query = self.changed_query(existing_only, part).subquery()
                    total += int(conn.execute(sa.select(sa.func.count()).select_from(query)).scalar() or 0)
            return total
        return -1  # unknown without a full pass; progress shows no ETA

    def count_not_in_pendo(self) -> int:
        """Changed rows the existence filter skips (ids absent from Pendo's list); -1 when unknown."""
        if not self.spec.existing_ids_only or not self.ledger_in_warehouse:
            return -1 if self.spec.existing_ids_only else 0
        return self.count_changed(existing_only=False) - self.count_changed()

    def changed_rows(self, chunk_rows: int) -> Iterator[list[ChangedRow]]:
        if self.ledger_in_warehouse:
            for part in self._diff_parts(chunk_rows):
                yield [_changed_row(r) for r in part]
            return
        for part in stream_rows(self.warehouse, self._rows_of(self._hashed_source(), None), chunk_rows):
            rows = [_changed_row(r) for r in part]
            ids = [r[0] for r in rows if r[0] is not None]
            confirmed: dict[str, str] = {}
            skip: set[tuple[str, str]] = set()
            # A first sync has nothing to look up: what the ledger holds now, this run wrote (and looking
            # would probe a table growing under stale statistics, which PostgreSQL plans as a full scan).
            if not self.full_refresh and not self.fresh:
                confirmed = self.state.ledger_hashes(self.spec.name, ids)
                if self.missing_since is not None:
                    skip = self.state.recent_missing(self.spec.name, ids, self.missing_since)
            changed = [
                (r[0], r[1], not self.full_refresh and r[0] not in confirmed, r[3])
                for r in rows
                if confirmed.get(r[0]) != r[1] and (r[0], r[1]) not in skip
            ]
            if changed and self.spec.existing_ids_only:
                known = self.state.pendo_ids_among(self.spec.name, [r[0] for r in changed])
                changed = [r for r in changed if r[0] in known]
            if changed:
                yield changed

    def _diff_parts(self, chunk_rows: int) -> Iterator[Sequence[sa.Row[Any]]]:
        """The join diff in chunks. On DuckDB, a first sync or a full refresh (its change set is the whole
        slice, no join needed) reads the source table by rowid range, hashing as it goes."""
        on_duckdb = backend_of(self.warehouse) == "duckdb"
        end = rowid_end(self.warehouse, self.spec) if self.whole_slice and on_duckdb else None
        if end is None:
            yield from self._read(lambda part: self.changed_query(part=part), chunk_rows, "changes")
            return
        # A first sync's rows are all new to the ledger (prev NULL); a refresh does not look (as in changed_query).
        prev = None if self.full_refresh else sa.null()
        yield from rowid_pages(
            self.warehouse,
            lambda start, stop: self._rows_of(self._hashed_source((start, stop)), prev),
            end,
            chunk_rows,
        )

    def _read(
        self, query: Callable[[Part | None], sa.Select[Any]], chunk_rows: int, purpose: str
    ) -> Iterator[Sequence[sa.Row[Any]]]:
        """A query over the warehouse and the ledger, in chunks, while the run writes the ledger.
        PostgreSQL and Redshift stream it through one server-side cursor. DuckDB cannot: while any
        transaction is open it keeps the undo buffers of every later commit and does not checkpoint, so a
        read open across the run's ledger writes holds memory in proportion to the rows written. There the
        result is copied into a scratch table beside the ledger, one part of the ids at a time (parts),
        and read from it a range at a time."""
        if backend_of(self.warehouse) != "duckdb":
            yield from stream_rows(self.warehouse, query(None), chunk_rows)
            return
        scratch = f"{purpose}_{self.spec.name}"  # one run of a sync at a time (the run lock)
        parts = [query(part) for part in self.parts]
        yield from spooled_rows(self.warehouse, parts, chunk_rows, self.state.schema, scratch)

    @cached_property
    def parts(self) -> list[Part | None]:
        """The parts a join of the slice with the ledger is done in: DuckDB joins at most DUCKDB_JOIN_ROWS
        rows a side at once; other databases join it whole. Counted once, when a run first needs them."""
        if backend_of(self.warehouse) != "duckdb":
            return [None]
        rows = max(
            count_rows(self.warehouse, self.spec, self.window), self.state.ledger_count(self.spec.name)
        )
        n = -(-rows // DUCKDB_JOIN_ROWS)
        return [None] if n <= 1 else [(k, n) for k in range(n)]

    def deleted_ids(self, chunk_rows: int) -> Iterator[list[str]]:
        """Ids in the ledger that are no longer in the source (meaningful only for a full slice)."""
        if self.fresh:
            return  # the ledger held nothing when the run began: what it holds now is all in the source
        rel = source_relation(self.spec)
        source_id = id_text(rel, self.spec)
        ledger = self.state.ledger
        if self.ledger_in_warehouse:

            def gone(part: Part | None) -> sa.Select[Any]:
                return sa.select(ledger.c.record_id).where(
                    ledger.c.sync_name == self.spec.name,
                    *in_part(ledger.c.record_id, part),
                    ~sa.exists().where(source_id == ledger.c.record_id, *in_part(source_id, part)),
                )

            for rows in self._read(gone, chunk_rows, "gone"):
                yield [r[0] for r in rows]
            return
        for ids in self.state.ledger_ids(self.spec.name, chunk_rows):
            with self.warehouse.connect() as conn:
                present = {r[0] for r in conn.execute(sa.select(source_id).where(source_id.in_(ids)))}
            gone_ids = [i for i in ids if i not in present]
            if gone_ids:
                yield gone_ids


def in_part(column: sa.ColumnElement[Any], part: Part | None) -> list[sa.ColumnElement[bool]]:
    """DuckDB: the condition that the id is in the part (the same id hashes alike on both sides of a join),
    as a list to spread into a where() or an and_(); empty without a part."""
    if part is None:
        return []
    k, n = part
    return [sa.func.hash(column) % n == k]


def _changed_row(row: Any) -> ChangedRow:
    values = tuple(row)
    return values[0], values[1], values[2] is None, values[3:]
