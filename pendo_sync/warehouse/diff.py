"""The change set's SQL: the source's rows, hashed, joined with what the state store holds about them.

A change set is the rows of a run's slice whose hash differs from the ledger's, and every row an earlier
run rejected and this one must retry, whatever the slice (joined back to the source by id), less the ids
Pendo recently reported missing and the ids more than one row carries. The state tables come in as
`DiffState`, so this module knows SQL and nothing of how state is kept.

DuckDB joins inside the sync's process, under its memory cap: it reads a diff from a scratch copy, a rowid
range at a time (no read held open across the run's ledger writes), and joins many rows in parts of the
id space. PostgreSQL and Redshift join in their own servers, whole, through one server-side cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.outcome import EMPTY_ID, MAX_ID_LENGTH, SHORT_ID_MARK, SHORT_ID_PREFIX, is_short_id
from pendo_sync.pendo.types import Wire
from pendo_sync.warehouse.catalog import describe_table
from pendo_sync.warehouse.hashes import field_fingerprints, row_hash
from pendo_sync.warehouse.record_sql import RawUnlessWritten, RecordValues
from pendo_sync.warehouse.slices import (
    HASH_COL,
    ID_COL,
    TEXT,
    Slice,
    fetcher,
    id_text,
    sent_value,
    slice_predicate,
    source_relation,
)

PREV_COL = "__pendo_prev"  # the ledger's hash (NULL: the ledger lacks the id; UNKNOWN_PREV: not looked up)
RETRY_COL = "__pendo_retry"  # 1: an outstanding reject this run retries
HELD_COL = "__pendo_held"  # the hash Pendo recently reported missing: not sent again yet
FIELDS_COL = "__pendo_fields"  # with a change log: each mapped value's fingerprint (hashes.py)
VALUES_COL = "__pendo_values"  # the JSON object of the values the database writes (record_sql.py)
UNKNOWN_PREV = "?"
# existing_ids_only: the prev of a changed row whose id Pendo's list lacks (no hash looks like it); the run
# rejects the row as missing (engine/runner.py) and every later run retries it as those are.
PENDO_LACKS = "(not in Pendo's list)"
# DuckDB's row number of a table row: `WHERE rowid BETWEEN a AND b` reads only the row groups that hold it.
ROWID: sa.ColumnElement[int] = sa.literal_column("rowid", sa.BigInteger())

# A part of the id space: (k, n), the ids whose hash is k modulo n (DuckDB only).
Part = tuple[int, int]


def short_id_text(relation: sa.FromClause, spec: SyncSpec) -> sa.ColumnElement[str]:
    """The id as its reject is kept (outcome.reject_id): an id too long to keep in its short form."""
    source_id = id_text(relation, spec)
    short = (
        sa.func.substr(source_id, 1, SHORT_ID_PREFIX).op("||")(SHORT_ID_MARK).op("||")(sa.func.md5(source_id))
    )
    return sa.case((sa.func.length(source_id) > MAX_ID_LENGTH, short), else_=source_id)


def _no_id(relation: sa.FromClause, spec: SyncSpec) -> sa.ColumnElement[bool]:
    """A source row without an id (rejected as outcome.EMPTY_ID)."""
    source_id = id_text(relation, spec)
    return sa.or_(source_id.is_(None), source_id == "")


@dataclass(frozen=True)
class DiffState:
    """What the change set joins with, from the state store (in the same database as the source)."""

    sync_name: str
    ledger: sa.Table
    rejects: sa.Table
    retry_flags: sa.Subquery | None  # one row per rejected id: retry, held_hash (None: no rejects)
    pendo_ids: sa.Table | None  # the ids Pendo has (existing_ids_only), or None


class ChangeSetSQL:
    """The statements of one change set: built from the sync, its slice and the source's column types."""

    def __init__(
        self,
        spec: SyncSpec,
        window: Slice,
        column_types: dict[str, str] | None,
        exclude_duplicates: bool = False,
        full_refresh: bool = False,
        fingerprints: bool = False,
        confirmed_since: int | None = None,
    ) -> None:
        self.spec, self.window, self.column_types = spec, window, column_types
        self.exclude_duplicates, self.full_refresh = exclude_duplicates, full_refresh
        self.fingerprints = fingerprints  # the change log's: a last column after the mapped values
        # A full refresh being continued: ledger rows of earlier versions are sent again.
        self.confirmed_since = confirmed_since

    # -- the source's rows -----------------------------------------------------------------------------
    def source_rows(
        self,
        retry: sa.Subquery | None = None,
        part: Part | None = None,
        rowids: tuple[Any, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> sa.Subquery:
        """The slice's rows, hashed: id, hash, retry, held, mapped values (and fingerprints). With `retry` (the rejects' flags)
        also every row to retry outside the slice; with `ids`, only those ids' rows outside the slice (the
        retries of a separate state database); with `part` or `rowids`, only those."""
        rel = source_relation(self.spec)
        source_id = id_text(rel, self.spec)
        predicate = slice_predicate(rel, self.spec, self.window)
        types, wire = self.column_types or {}, Wire(self.spec.time_format, self.spec.clear_with)

        def select(from_: sa.FromClause, retried: Any, held: Any) -> sa.Select[Any]:
            columns = [
                source_id.label(ID_COL),
                row_hash(rel, self.spec, self.column_types).label(HASH_COL),
                retried.label(RETRY_COL),
                held.label(HELD_COL),
                *[sent_value(rel, m, types.get(m.column), wire) for m in self.spec.fields],
            ]
            if self.fingerprints:
                columns.append(field_fingerprints(rel, self.spec, self.column_types).label(FIELDS_COL))
            stmt = sa.select(*columns).select_from(from_)
            if self.exclude_duplicates:
                dups = self.duplicate_ids().subquery("dup")
                stmt = stmt.outerjoin(dups, dups.c[ID_COL] == source_id).where(dups.c[ID_COL].is_(None))
            if rowids is not None:
                stmt = stmt.where(ROWID.between(rowids[0], rowids[1] - 1))
            # On the source's own id, below the hash: a part hashes only its own rows.
            return stmt.where(*in_part(source_id, part))

        no_hash = sa.cast(sa.null(), TEXT)
        key = rel.c[self.spec.replication_key] if self.spec.replication_key else None
        if predicate is None or key is None:
            outside = None
        elif self.window.holds_null_keys():  # rows without a key are in the slice: not outside it too
            outside = sa.not_(predicate)
        else:
            outside = sa.or_(key.is_(None), ~predicate)
        if ids is not None:  # retries of a separate state database, outside the slice
            by_id = select(rel, sa.cast(sa.literal(1), sa.Integer), no_hash).where(source_id.in_(list(ids)))
            return (by_id.where(outside) if outside is not None else by_id).subquery("h")
        if retry is None:
            in_slice = select(rel, sa.cast(sa.null(), sa.Integer), no_hash)
        else:
            in_slice = select(
                rel.outerjoin(retry, retry.c.record_id == source_id), retry.c.retry, retry.c.held_hash
            )
        if predicate is not None:
            in_slice = in_slice.where(predicate)
        if retry is None or outside is None:
            return in_slice.subquery("h")
        to_retry = rel.join(retry, sa.and_(retry.c.record_id == source_id, retry.c.retry == 1))
        retried = select(to_retry, retry.c.retry, retry.c.held_hash).where(outside)
        return sa.union_all(in_slice, retried).subquery("h")

    def rows(self, hashed: sa.Subquery, prev: sa.ColumnElement[Any] | None) -> sa.Select[Any]:
        """id, hash, prev, retry, mapped values (and fingerprints), and the values object the database
        writes: what `records` reads, and what counts and joins are built on."""
        return sa.select(
            hashed.c[ID_COL],
            hashed.c[HASH_COL],
            (sa.literal(UNKNOWN_PREV) if prev is None else prev).label(PREV_COL),
            hashed.c[RETRY_COL],
            *[hashed.c[m.column] for m in self.spec.fields],
            *([hashed.c[FIELDS_COL]] if self.fingerprints else []),
            RecordValues(self.spec, self.column_types, *[hashed.c[m.column] for m in self.spec.fields]).label(
                VALUES_COL
            ),
        )

    def records(self, rows: sa.Select[Any]) -> sa.Select[Any]:
        """A statement of `rows` as the run reads it, in ChangedRow order: id, hash, prev, retry, the values
        object, each mapped value where the database did not write it (else NULL: nothing to convert),
        and the fingerprints."""
        inner = rows.offset(0).subquery("changed")
        values = inner.c[VALUES_COL]
        return sa.select(
            inner.c[ID_COL],
            inner.c[HASH_COL],
            inner.c[PREV_COL],
            inner.c[RETRY_COL],
            values,
            *[
                RawUnlessWritten(self.spec, self.column_types, i, values, inner.c[m.column]).label(m.column)
                for i, m in enumerate(self.spec.fields)
            ],
            *([inner.c[FIELDS_COL]] if self.fingerprints else []),
        )

    # -- the diff, where the ledger is in the warehouse -----------------------------------------------
    def changed(self, state: DiffState, part: Part | None = None) -> sa.Select[Any]:
        """Rows whose hash the ledger lacks, or that an outstanding reject retries; less ids Pendo recently
        reported missing with the same hash (a full refresh looks at neither; one being continued counts
        only the ledger rows it confirmed). With existing_ids_only, the rows of ids the stored list of ids
        Pendo has lacks come with PENDO_LACKS as their prev. With `part`, one part of the ids (both join
        sides)."""
        hashed = self.source_rows(state.retry_flags, part)
        ledger = state.ledger
        prev: sa.ColumnElement[Any] = sa.literal(UNKNOWN_PREV) if self.full_refresh else ledger.c.row_hash
        if state.pendo_ids is not None:
            known = state.pendo_ids
            listed = sa.exists().where(
                known.c.sync_name == state.sync_name,
                known.c.record_id == hashed.c[ID_COL],
                *in_part(known.c.record_id, part),
            )
            prev = sa.case((~listed, sa.literal(PENDO_LACKS)), else_=prev)
        stmt = self.rows(hashed, prev)
        if self.full_refresh:
            return stmt
        on_ledger = sa.and_(
            ledger.c.sync_name == state.sync_name,
            ledger.c.record_id == hashed.c[ID_COL],
            *in_part(ledger.c.record_id, part),
        )
        before_refresh = [] if self.confirmed_since is None else [ledger.c.version < self.confirmed_since]
        return (
            stmt.select_from(hashed.outerjoin(ledger, on_ledger))
            .where(
                sa.or_(
                    ledger.c.row_hash.is_(None),
                    ledger.c.row_hash != hashed.c[HASH_COL],
                    hashed.c[RETRY_COL] == 1,
                    *before_refresh,
                )
            )
            .where(sa.or_(hashed.c[HELD_COL].is_(None), hashed.c[HELD_COL] != hashed.c[HASH_COL]))
        )

    def gone(self, state: DiffState, part: Part | None = None) -> sa.Select[Any]:
        """Ledger ids that are no longer in the source."""
        rel = source_relation(self.spec)
        source_id = id_text(rel, self.spec)
        ledger = state.ledger
        return sa.select(ledger.c.record_id).where(
            ledger.c.sync_name == state.sync_name,
            *in_part(ledger.c.record_id, part),
            ~sa.exists().where(source_id == ledger.c.record_id, *in_part(source_id, part)),
        )

    def gone_rejects(
        self,
        state: DiffState,
        other_than: str | None = None,
        only: str | None = None,
        in_ledger: bool = False,
    ) -> sa.Select[Any]:
        """Rejected ids (of kinds `other_than`, of kind `only`) the ledger lacks (or has too, with
        `in_ledger`) that are no longer in the source: nothing more is owed for them, or a clear
        (changeset.owed_clears)."""
        rel = source_relation(self.spec)
        rejects, ledger = state.rejects, state.ledger
        in_the_ledger = sa.exists().where(
            ledger.c.sync_name == state.sync_name, ledger.c.record_id == rejects.c.record_id
        )
        return (
            sa.select(rejects.c.record_id)
            .distinct()
            .where(
                rejects.c.sync_name == state.sync_name,
                rejects.c.kind != other_than if other_than else sa.true(),
                rejects.c.kind == only if only else sa.true(),
                sa.true() if in_ledger else ~in_the_ledger,
                ~sa.exists().where(id_text(rel, self.spec) == rejects.c.record_id),
                sa.or_(  # an id too long to keep was rejected in its short form
                    sa.func.strpos(rejects.c.record_id, SHORT_ID_MARK) == 0,
                    ~sa.exists().where(short_id_text(rel, self.spec) == rejects.c.record_id),
                ),
                sa.or_(rejects.c.record_id != EMPTY_ID, ~sa.exists().where(_no_id(rel, self.spec))),
            )
        )

    def present_ids(self, ids: Sequence[str]) -> sa.Select[Any]:
        """Which of these ids the source has (the delete check of a separate state database), the short
        forms of ids too long to keep included."""
        rel = source_relation(self.spec)
        source_id = id_text(rel, self.spec)
        present: sa.Select[Any] = sa.select(source_id).where(source_id.in_(list(ids)))
        short = [i for i in ids if is_short_id(i)]
        if short:
            short_id = short_id_text(rel, self.spec)
            present = sa.union_all(present, sa.select(short_id).where(short_id.in_(short)))  # type: ignore[assignment]
        if EMPTY_ID in ids:
            no_id = sa.select(sa.literal(EMPTY_ID)).where(sa.exists().where(_no_id(rel, self.spec)))
            present = sa.union_all(present, no_id)  # type: ignore[assignment]
        return present

    # -- duplicates --------------------------------------------------------------------------------------
    def duplicate_ids(self) -> sa.Select[str, int]:
        """(id, rows) for every id more than one row of the whole source carries (NULL and '' ids are the
        encoder's to reject, one row at a time)."""
        rel = source_relation(self.spec, alias="dup_source")
        source_id = id_text(rel, self.spec)
        return (
            sa.select(source_id.label(ID_COL), sa.func.count().label("copies"))
            .where(rel.c[self.spec.id_column].is_not(None), source_id != "")
            .group_by(source_id)
            .having(sa.func.count() > 1)
        )


def count_of(stmt: sa.Select[*tuple[Any, ...]]) -> sa.Select[int]:
    return sa.select(sa.func.count()).select_from(stmt.subquery())


def in_part(column: sa.ColumnElement[Any], part: Part | None) -> list[sa.ColumnElement[bool]]:
    """DuckDB: the condition that the id is in the part (the same id hashes alike on both sides of a join),
    as a list to spread into a where() or an and_(); empty without a part."""
    if part is None:
        return []
    k, n = part
    return [sa.func.hash(column) % n == k]


# -- DuckDB's ranged reads (ChangeSet picks them by dialect; test_redshift_sql.py checks the SELECT they
#    stand for) -------------------------------------------------------------------------------------------
def rowid_end(engine: Engine, spec: SyncSpec) -> int | None:
    """DuckDB: one past the largest rowid of the sync's source table; None where the source is a view or
    a query, which has no rowids."""
    table = describe_table(engine, spec.table) if spec.table else None
    if table is None or table.is_view:
        return None
    with engine.connect() as conn:
        rel = sa.table(table.name, schema=table.schema)
        last = conn.execute(sa.select(sa.func.max(ROWID)).select_from(rel)).scalar()
        return 0 if last is None else int(last) + 1


def rowid_pages(
    engine: Engine, page: Callable[[Any, Any], sa.Select[Any]], end: int, chunk_rows: int
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """The rows of page(start, stop) for consecutive rowid ranges [start, stop) of chunk_rows up to end,
    each fetched whole and its transaction ended before it is handed on; one statement, compiled once with
    the bounds as parameters, and one connection serve them all (a DuckDB connection costs tens of
    milliseconds to open); empty ranges are skipped."""
    start_at, stop_at = (
        sa.bindparam("rowid_start", 0, sa.BigInteger),
        sa.bindparam("rowid_stop", 0, sa.BigInteger),
    )
    with engine.connect() as conn:
        fetch = fetcher(conn, page(start_at, stop_at))
        for start in range(0, end, chunk_rows):
            rows = fetch({"rowid_start": start, "rowid_stop": start + chunk_rows})
            conn.commit()
            if rows:
                yield rows


def spooled_rows(
    engine: Engine, parts: Sequence[sa.Select[Any]], chunk_rows: int, schema: str, name: str
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """DuckDB: the rows of the statements (parts of one query, alike in columns), copied by one statement
    each into a scratch table, then read from it in rowid ranges (rowid_pages); the table is dropped at
    the end, and replaced if a crashed run left it."""
    first, *rest = parts
    create = first.into(name, schema=schema)
    spool = create.table
    drop = sa.schema.DropTable(spool, if_exists=True)
    with engine.begin() as conn:
        conn.execute(drop)
        conn.execute(create)
        for part in rest:
            conn.execute(sa.insert(spool).from_select(list(spool.c.keys()), part))
        end = int(conn.execute(sa.select(sa.func.count()).select_from(spool)).scalar() or 0)
    try:
        yield from rowid_pages(
            engine,
            lambda start, stop: sa.select(spool).where(ROWID.between(start, stop - 1)).order_by(ROWID),
            end,
            chunk_rows,
        )
    finally:
        with engine.begin() as conn:
            conn.execute(drop)
