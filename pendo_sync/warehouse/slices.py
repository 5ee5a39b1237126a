"""The one place that builds SQL over a sync's source: the source relation, row hashes, slices, chunked reads.

Identifiers are always quoted by SQLAlchemy; values are always bound parameters.
Every statement here must also run on Redshift (tested by compiling with its dialect).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.warehouse.catalog import describe_table

# Redshift's bare VARCHAR is VARCHAR(256) and would truncate long text before hashing.
TEXT = sa.String(65535)
ID_COL = "__pendo_id"
HASH_COL = "__pendo_hash"
KEY_COL = "__pendo_rk"


@dataclass(frozen=True)
class Slice:
    """Which rows a run looks at: all, a cursor window (incremental), or a key window (backfill)."""

    mode: str  # "full" | "incremental" | "backfill"
    lower: Any = None  # exclusive for incremental, inclusive for backfill
    upper: Any = None  # inclusive for incremental, exclusive for backfill

    def describe(self) -> str:
        if self.mode == "full":
            return "all rows"
        if self.mode == "incremental":
            if self.lower is None:
                return f"replication key up to {self.upper} (first run)"
            return f"replication key in ({self.lower}, {self.upper}]"
        return f"replication key in [{self.lower}, {self.upper})"


def split_table_name(qualified: str) -> tuple[str | None, str]:
    schema, _, name = qualified.rpartition(".")
    return (schema or None), name


def source_relation(spec: SyncSpec, extra_columns: Sequence[str] = ()) -> sa.FromClause:
    """The sync's source as a selectable aliased `s`: a quoted table, or the user's SELECT as a subquery."""
    names = list(
        dict.fromkeys(
            [
                spec.id_column,
                *spec.columns,
                *([spec.replication_key] if spec.replication_key else []),
                *extra_columns,
            ]
        )
    )
    if spec.table:
        schema, name = split_table_name(spec.table)
        return sa.table(name, *[sa.column(c) for c in names], schema=schema).alias("s")
    assert spec.query is not None
    return sa.text(spec.query).columns(*[sa.column(c) for c in names]).subquery("s")


def id_text(relation: sa.FromClause, spec: SyncSpec) -> sa.ColumnElement[str]:
    """The id as text: the ledger keys on text so integer and string ids behave alike."""
    return sa.cast(relation.c[spec.id_column], TEXT)


def _as_text(column: sa.ColumnElement[Any], db_type: str | None) -> sa.ColumnElement[Any]:
    # Redshift cannot CAST a boolean to VARCHAR; spell it out where we know the column is boolean.
    if db_type and db_type.lower() in ("boolean", "bool"):
        # Plain `CASE WHEN col` (not `col IS TRUE`, which Redshift refuses in a SELECT list).
        return sa.case((column, "t"), (sa.not_(column), "f"))
    return sa.cast(column, TEXT)


def mapping_signature(spec: SyncSpec) -> str:
    """Part of every hash: a changed mapping (new column, other field or type) makes every row changed."""
    return "|".join(f"{m.column}>{m.field}:{m.type}:{m.element_type}" for m in spec.fields)


def row_hash(
    relation: sa.FromClause, spec: SyncSpec, column_types: dict[str, str] | None = None
) -> sa.ColumnElement[str]:
    """md5 of the mapped values, computed by the database where the rows live (md5 and chr exist on all three)."""
    sep, null = sa.func.chr(31), sa.func.chr(30)
    parts: list[sa.ColumnElement[Any]] = [sa.cast(sa.literal(mapping_signature(spec)), TEXT)]
    for mapping in spec.fields:
        value = _as_text(relation.c[mapping.column], (column_types or {}).get(mapping.column))
        parts += [sep, sa.func.coalesce(value, null)]
    expr = parts[0]
    for part in parts[1:]:
        expr = expr.op("||")(part)
    return sa.func.md5(expr)


def slice_predicate(relation: sa.FromClause, spec: SyncSpec, window: Slice) -> sa.ColumnElement[bool] | None:
    if window.mode == "full":
        return None
    if not spec.replication_key:
        raise ValueError(f"sync {spec.name!r}: mode {window.mode!r} needs a replication_key in the config")
    key = relation.c[spec.replication_key]
    clauses = []
    if window.mode == "incremental":
        if window.lower is not None:
            clauses.append(key > sa.bindparam("slice_lower", window.lower))
        if window.upper is not None:
            clauses.append(key <= sa.bindparam("slice_upper", window.upper))
    else:
        clauses += [
            key >= sa.bindparam("slice_lower", window.lower),
            key < sa.bindparam("slice_upper", window.upper),
        ]
    return sa.and_(*clauses) if clauses else None


def max_replication_key(engine: Engine, spec: SyncSpec, window: Slice) -> Any:
    """Newest replication-key value in the slice (the cursor a complete run may move to)."""
    assert spec.replication_key
    rel = source_relation(spec)
    stmt = sa.select(sa.func.max(rel.c[spec.replication_key]))
    predicate = slice_predicate(rel, spec, window)
    if predicate is not None:
        stmt = stmt.where(predicate)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def count_rows(engine: Engine, spec: SyncSpec, window: Slice | None = None) -> int:
    """Rows of the source, or of one slice of it."""
    rel = source_relation(spec)
    stmt = sa.select(sa.func.count()).select_from(rel)
    predicate = slice_predicate(rel, spec, window) if window is not None else None
    if predicate is not None:
        stmt = stmt.where(predicate)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def stream_rows(engine: Engine, stmt: sa.Executable, chunk_rows: int) -> Iterator[Sequence[sa.Row[Any]]]:
    """Rows in chunks through a server-side cursor: memory holds one chunk, never the table."""
    with engine.connect() as conn:
        result = conn.execution_options(
            stream_results=True, max_row_buffer=chunk_rows, yield_per=chunk_rows
        ).execute(stmt)
        yield from result.partitions(chunk_rows)


# DuckDB's row number of a table row: `WHERE rowid BETWEEN a AND b` reads only the row groups that hold
# the range. It and the three functions below serve DuckDB alone (ChangeSet picks them by dialect), the
# one exception to Redshift SQL in this module; test_redshift_sql.py checks the SELECT they stand for.
ROWID: sa.ColumnElement[int] = sa.literal_column("rowid", sa.BigInteger())


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
    engine: Engine, page: Callable[[int, int], sa.Select[Any]], end: int, chunk_rows: int
) -> Iterator[Sequence[sa.Row[Any]]]:
    """The rows of page(start, stop) for consecutive rowid ranges of chunk_rows up to end, each fetched
    whole and its transaction ended before it is handed on (one connection serves them all: a DuckDB
    connection costs tens of milliseconds to open); empty ranges are skipped."""
    with engine.connect() as conn:
        for start in range(0, end, chunk_rows):
            rows = conn.execute(page(start, start + chunk_rows)).all()
            conn.commit()
            if rows:
                yield rows


def spooled_rows(
    engine: Engine, parts: Sequence[sa.Select[Any]], chunk_rows: int, schema: str, name: str
) -> Iterator[Sequence[sa.Row[Any]]]:
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


def lookback_lower(cursor: Any, lookback_seconds: int) -> Any:
    """Re-read a trailing window behind the cursor for late-arriving rows (timestamps only)."""
    if isinstance(cursor, dt.datetime):
        return cursor - dt.timedelta(seconds=lookback_seconds)
    if isinstance(cursor, dt.date):
        return cursor - dt.timedelta(days=max(1, lookback_seconds // 86_400))
    return cursor
