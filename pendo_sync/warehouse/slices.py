"""SQL over a sync's source: the source relation, the values as sent, slices, counts, chunked reads. (Row
hashes and field fingerprints are in hashes.py; the change set's joins with the ledger are in diff.py.)

Identifiers are always quoted by SQLAlchemy; values are always bound parameters.
Every statement here must also run on Redshift (tested by compiling with its dialect).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.errors import UsageError
from pendo_sync.pendo.types import Wire, coercer_for, database_conversion, is_far_time_text

# Text of any length, for ids and hashed values: unbounded TEXT on PostgreSQL and DuckDB (a CAST to
# VARCHAR(n) truncates silently, so a change past the n-th character would go unseen). Redshift's TEXT is
# VARCHAR(256), and its VARCHAR holds at most 65,535 bytes, so there it is VARCHAR(65535): every VARCHAR
# value fits whole.
TEXT = sa.String(65535).with_variant(sa.Text(), "postgresql", "duckdb")
ID_COL = "__pendo_id"
HASH_COL = "__pendo_hash"
KEY_COL = "__pendo_rk"


@dataclass(frozen=True)
class Slice:
    """Which rows a run looks at: all, a cursor window (incremental), or a key window (backfill)."""

    mode: str  # "full" | "incremental" | "backfill"
    lower: Any = None  # exclusive for incremental (unless lower_included), inclusive for backfill
    upper: Any = None  # inclusive for incremental, exclusive for backfill
    why_whole: str = "first run"  # why an incremental slice has no lower bound
    null_keys: bool = True  # an incremental slice holds the rows whose key is NULL (in no window)
    # An incremental run's window begins at its cursor: a row committed after the last run with the key the
    # cursor holds is read (the diff with the ledger sends only what changed). The new-rows sensor's
    # windows begin after it.
    lower_included: bool = False

    def holds_null_keys(self) -> bool:
        return self.mode == "incremental" and self.null_keys and (self.lower, self.upper) != (None, None)

    def describe(self) -> str:
        if self.mode == "full":
            return "all rows"
        if self.mode == "incremental":
            if self.lower is None:
                bound = "any" if self.upper is None else f"up to {self.upper}"
                return f"replication key {bound} ({self.why_whole})"
            opening = "[" if self.lower_included else "("
            if self.upper is None:
                return f"replication key {'from' if self.lower_included else 'after'} {self.lower}"
            return f"replication key in {opening}{self.lower}, {self.upper}]"
        return f"replication key in [{self.lower}, {self.upper})"


def split_table_name(qualified: str) -> tuple[str | None, str]:
    schema, _, name = qualified.rpartition(".")
    return (schema or None), name


def source_relation(spec: SyncSpec, extra_columns: Sequence[str] = (), alias: str = "s") -> sa.FromClause:
    """The sync's source as a selectable named `alias`: a quoted table, or the user's SELECT as a subquery."""
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
        return sa.table(name, *[sa.column(c) for c in names], schema=schema).alias(alias)
    assert spec.query is not None
    return query_text(spec.query).columns(*[sa.column(c) for c in names]).subquery(alias)


def query_text(query: str) -> sa.TextClause:
    """The user's SELECT as it can be wrapped in a subquery: every colon escaped (a slice `arr[:3]` or a
    literal '12:30' is not a bound parameter), and a line break before the closing parenthesis (a final
    `-- comment` must not swallow it)."""
    return sa.text(query.replace(":", "\\:") + "\n")


def probe_columns(spec: SyncSpec) -> sa.Select[Any]:
    """A query source's columns without its rows."""
    assert spec.query is not None
    return sa.select(sa.text("*")).select_from(query_text(spec.query).columns().subquery("probe")).limit(0)


def id_text(relation: sa.FromClause, spec: SyncSpec) -> sa.ColumnElement[str]:
    """The id as text: the ledger keys on text so integer and string ids behave alike."""
    return sa.cast(relation.c[spec.id_column], TEXT)


class EpochMillis(sa.sql.functions.FunctionElement[Any]):
    """A timestamp or date column as epoch milliseconds, floored (pendo/types.py database_conversion).
    Compiled exactly where the database can: PostgreSQL 14 and later (EXTRACT gives exact numeric) and
    DuckDB (integer microseconds); anywhere else (Redshift) it is the column itself, converted in Python."""

    name = "epoch_millis"
    type = sa.types.NullType()
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], is_date: bool) -> None:
        self.is_date = is_date
        super().__init__(column)


@compiles(EpochMillis)
def _epoch_millis_as_is(element: EpochMillis, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(list(element.clauses)[0], **kw))


def _finite_or_bounds(column: str, is_date: bool, millis: str) -> str:
    """`millis` for a finite value; for 'infinity' and '-infinity' what Python sends for the value the
    drivers hand over (datetime.max and .min, date.max and .min), never NULL or an error; NULL stays NULL."""
    to_time = coercer_for("time")
    if is_date:
        latest, earliest = dt.datetime.combine(dt.date.max, dt.time()), dt.datetime.min
    else:
        latest, earliest = dt.datetime.max, dt.datetime.min
    return (
        f"CASE WHEN isfinite({column}) THEN {millis} WHEN {column} > CAST('epoch' AS DATE) "
        f"THEN {to_time(latest)} WHEN {column} < CAST('epoch' AS DATE) THEN {to_time(earliest)} END"
    )


@compiles(EpochMillis, "postgresql")
def _epoch_millis_postgresql(element: EpochMillis, compiler: Any, **kw: Any) -> str:
    column = compiler.process(list(element.clauses)[0], **kw)
    if (compiler.dialect.server_version_info or (0,)) < (14,):  # EXTRACT gave a double: not exact
        return str(column)
    millis = f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) * 1000) AS BIGINT)"
    return _finite_or_bounds(column, element.is_date, millis)


@compiles(EpochMillis, "duckdb")
def _epoch_millis_duckdb(element: EpochMillis, compiler: Any, **kw: Any) -> str:
    column = compiler.process(list(element.clauses)[0], **kw)
    micros = f"epoch_us(CAST({column} AS TIMESTAMP))" if element.is_date else f"epoch_us({column})"
    # `//` and `%` truncate toward zero: take the remainder's positive form off before dividing.
    millis = f"(({micros} - ((({micros}) % 1000 + 1000) % 1000)) // 1000)"
    return _finite_or_bounds(column, element.is_date, millis)


def sent_value(
    relation: sa.FromClause, mapping: FieldMapping, column_type: str | None, wire: Wire
) -> sa.ColumnElement[Any]:
    """A mapped column as the change set selects it: converted by the database where pendo/types.py says
    it can be (the Python coercion then passes it as it is), else as it is."""
    column = relation.c[mapping.column]
    if database_conversion(mapping.type, column_type, wire) == "epoch_ms":
        is_date = (column_type or "").lower().strip() == "date"
        return EpochMillis(column, is_date).label(mapping.column)
    return column


def slice_predicate(relation: sa.FromClause, spec: SyncSpec, window: Slice) -> sa.ColumnElement[bool] | None:
    if window.mode == "full":
        return None
    if not spec.replication_key:
        raise UsageError(f"sync {spec.name!r}: mode {window.mode!r} needs a replication_key in the config")
    key = relation.c[spec.replication_key]
    clauses = []
    if window.mode == "incremental":
        if window.lower is not None:
            lower: sa.BindParameter[Any] = sa.bindparam("slice_lower", window.lower)
            clauses.append(key >= lower if window.lower_included else key > lower)
        if window.upper is not None:
            clauses.append(key <= sa.bindparam("slice_upper", window.upper))
        if not clauses:
            return None
        # A row with no key is in no window: every incremental run diffs it with the ledger (sent once,
        # then again only when it changes), or no incremental run would ever send it.
        return sa.or_(sa.and_(*clauses), key.is_(None)) if window.holds_null_keys() else sa.and_(*clauses)
    else:
        clauses += [
            key >= sa.bindparam("slice_lower", window.lower),
            key < sa.bindparam("slice_upper", window.upper),
        ]
    return sa.and_(*clauses) if clauses else None


def max_replication_key(engine: Engine, spec: SyncSpec, window: Slice, kind: str | None = None) -> Any:
    """Newest replication-key value in the slice (the cursor a complete run may move to). A time Python
    cannot hold (past year 9999: DuckDB and psycopg2, warehouse/pg_casts.py, give its text) is `beyond(kind)`."""
    assert spec.replication_key
    rel = source_relation(spec)
    stmt = sa.select(sa.func.max(rel.c[spec.replication_key]))
    predicate = slice_predicate(rel, spec, window)
    if predicate is not None:
        stmt = stmt.where(predicate)
    with engine.connect() as conn:
        newest = conn.execute(stmt).scalar()
    if isinstance(newest, str) and kind in TIME_KINDS:
        return beyond(kind)
    return newest


TIME_KINDS = ("timestamp", "timestamptz", "date")


def beyond(kind: str | None) -> Any:
    """The latest time Python holds, of the key's kind: a key past it is past every ceiling."""
    if kind == "date":
        return dt.date.max
    return dt.datetime.max.replace(tzinfo=dt.UTC) if kind == "timestamptz" else dt.datetime.max


# A time key more than this past now is a placeholder (9999-12-31), not a time: keys in local time run at
# most 14 hours ahead of UTC.
FUTURE_MARGIN = dt.timedelta(days=1)


def key_ceiling(value: Any) -> Any:
    """The latest value a cursor shaped like `value` may take: a day past now for times and dates, None
    (no limit) for other keys (an integer key has no clock)."""
    if isinstance(value, dt.datetime):
        now = dt.datetime.now(dt.UTC)
        return (now if value.tzinfo else now.replace(tzinfo=None)) + FUTURE_MARGIN
    if isinstance(value, dt.date):
        return dt.datetime.now(dt.UTC).date() + FUTURE_MARGIN
    return None


def past_ceiling(value: Any) -> bool:
    ceiling = key_ceiling(value)
    return ceiling is not None and value > ceiling


@dataclass(frozen=True)
class FutureKeys:
    """What lies past the ceiling of a window's keys: the newest key before it, and the rows beyond."""

    newest_before: Any
    rows: int
    latest: Any


def future_keys(engine: Engine, spec: SyncSpec, window: Slice, ceiling: Any) -> FutureKeys:
    assert spec.replication_key
    rel = source_relation(spec)
    key = rel.c[spec.replication_key]
    predicate = slice_predicate(rel, spec, window)
    where = [predicate] if predicate is not None else []
    bound: sa.BindParameter[Any] = sa.bindparam("ceiling", ceiling)
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(key)).where(*where, key <= bound)).scalar()
        # A latest key past the year 9999 comes as its text (DuckDB, and psycopg2 through pg_casts.py).
        rows, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(key)).where(*where, key > bound)
        ).one()
    return FutureKeys(newest, int(rows or 0), latest)


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


def stream_tuples(
    engine: Engine, stmt: sa.Select[Any], chunk_rows: int
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """The change set's rows as the driver's own tuples, in chunks. SQLAlchemy compiles and executes
    every statement (its dialect, its events and logging); its Row objects are skipped, over a
    microsecond a row, a tenth of a sync's cost per record. On PostgreSQL and Redshift the rows come
    through a server-side cursor (DECLARE ... FETCH FORWARD), elsewhere from the driver's cursor. A
    statement whose parameters need SQLAlchemy's own conversions is read as Rows."""
    with engine.connect() as conn:
        found = driver_statement(conn, stmt)
        if found is None:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
            for part in result.partitions(chunk_rows):
                yield [tuple(row) for row in part]
            return
        sql, params = found
        if engine.dialect.name not in ("postgresql", "redshift"):
            cursor = conn.exec_driver_sql(sql, params).cursor
            while rows := cursor.fetchmany(chunk_rows):
                yield rows
            return
        name = f"pendo_sync_{uuid.uuid4().hex[:16]}"
        conn.exec_driver_sql(f"DECLARE {name} CURSOR FOR {sql}", params)
        while rows := conn.exec_driver_sql(f"FETCH FORWARD {int(chunk_rows)} FROM {name}").cursor.fetchall():
            yield rows
        conn.exec_driver_sql(f"CLOSE {name}")


def fetch_tuples(conn: Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of a statement as the driver's tuples."""
    return fetcher(conn, stmt)({})


def fetcher(conn: Connection, stmt: sa.Select[Any]) -> Callable[[dict[str, Any]], list[tuple[Any, ...]]]:
    """A statement compiled once, as a function of the values of its bound parameters (by name; those not
    given keep the statement's) that fetches all its rows as the driver's tuples: a DuckDB read by rowid
    range runs one statement a range, and compiling it each time cost a tenth of a run's Python."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    if conn.dialect.driver not in ("psycopg2", "duckdb_engine") or compiled._bind_processors:
        return lambda values: [tuple(row) for row in conn.execute(stmt, values)]
    names, defaults = compiled.positiontup or (), compiled.params

    def fetch(values: dict[str, Any]) -> list[tuple[Any, ...]]:
        params = {**defaults, **values}
        bound = tuple(params[name] for name in names) if compiled.positional else params
        return list(conn.exec_driver_sql(compiled.string, bound).cursor.fetchall())

    return fetch


def driver_statement(conn: Connection, stmt: sa.Select[Any]) -> tuple[str, Any] | None:
    """The SQL and parameters the driver takes for a statement, or None where a parameter needs
    SQLAlchemy's own conversion (a bind processor: a UUID cursor value, say), where there is no parameter
    (psycopg2 then reads the SQL's escaped %% as it is), or where the driver is another."""
    if conn.dialect.driver not in ("psycopg2", "duckdb_engine"):
        return None
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled._bind_processors or not params:
        return None
    if compiled.positional:
        return compiled.string, tuple(params[name] for name in compiled.positiontup or ())
    return compiled.string, params


def lookback_lower(cursor: Any, lookback_seconds: int) -> Any:
    """Re-read a trailing window behind the cursor for late-arriving rows (timestamps only)."""
    if isinstance(cursor, dt.datetime):
        return cursor - dt.timedelta(seconds=lookback_seconds)
    if isinstance(cursor, dt.date):
        return cursor - dt.timedelta(days=max(1, lookback_seconds // 86_400))
    return cursor


def days_with_rows_after(engine: Engine, spec: SyncSpec, after: Any) -> tuple[list[dt.date], Any]:
    """The days that received rows past `after` (the new-rows sensor), and the newest key value among them."""
    assert spec.replication_key
    rel = source_relation(spec)
    key = rel.c[spec.replication_key]
    newer = sa.true() if after is None else key > sa.bindparam("after", after)
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(key)).where(newer)).scalar()
        if newest is None:
            return [], after
        if isinstance(newest, str) and is_far_time_text(newest):  # past year 9999: the database's text
            newest = beyond(None)
        days = conn.execute(sa.select(sa.cast(key, sa.Date)).where(newer).distinct()).scalars().all()
    if past_ceiling(newest):  # a placeholder far ahead would hold the sensor past every row to come
        # The newest key past `after` and before the ceiling, compared by the database: `after` may have
        # been kept before the key's type changed (naive, the key now zoned).
        newer_rows = Slice("incremental", lower=after, null_keys=False)
        before = future_keys(engine, spec, newer_rows, key_ceiling(newest)).newest_before
        newest = after if before is None else before
    return sorted(day for day in map(_as_date, days) if day is not None), newest


def _as_date(value: Any) -> dt.date | None:
    """A day as the database gave it (text past year 9999, which no partition holds: None)."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None
