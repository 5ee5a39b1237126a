"""SQL over a sync's source: the source relation, row hashes, slices, counts, chunked reads. (The change
set's joins with the ledger are in diff.py.)

Identifiers are always quoted by SQLAlchemy; values are always bound parameters.
Every statement here must also run on Redshift (tested by compiling with its dialect).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.errors import UsageError
from pendo_sync.pendo.types import Wire, coercer_for, database_conversion

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


def _as_text(column: sa.ColumnElement[Any], db_type: str | None) -> sa.ColumnElement[Any]:
    lowered = (db_type or "").lower()
    # Redshift cannot CAST a boolean to VARCHAR; spell it out where we know the column is boolean.
    if lowered in ("boolean", "bool"):
        # Plain `CASE WHEN col` (not `col IS TRUE`, which Redshift refuses in a SELECT list).
        return sa.case((column, "t"), (sa.not_(column), "f"))
    if lowered == "super":
        # Redshift SUPER: its JSON text, whole (JSON_SERIALIZE fails loudly past 65,535 bytes, never truncates).
        return sa.func.json_serialize(column)
    return sa.cast(column, TEXT)


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


def mapping_signature(spec: SyncSpec) -> str:
    """Part of every hash: a changed mapping (new column, other field or type) or a changed wire form of
    times or clears makes every row changed. The wire forms join only when not the default, so ledgers
    written before they existed keep their hashes."""
    signature = "|".join(f"{m.column}>{m.field}:{m.type}:{m.element_type}" for m in spec.fields)
    default = Wire()
    if spec.time_format != default.time_format:
        signature += f"|time_format={spec.time_format}"
    if spec.clear_with != default.clear_with:
        signature += f"|clear_with={spec.clear_with}"
    return signature


class Joined(sa.sql.functions.FunctionElement[str]):
    """Texts (none NULL) joined by a separator: CONCAT_WS where the database has it (DuckDB takes a third
    of the time of a chain of ||, and the text is the same), else a chain of || (Redshift)."""

    name = "joined"
    type = sa.String()
    inherit_cache = True


@compiles(Joined)
def _joined_by_pipes(element: Joined, compiler: Any, **kw: Any) -> str:
    sep, *texts = element.clauses
    expr = texts[0]
    for text in texts[1:]:
        expr = expr.op("||")(sep).op("||")(text)
    return str(compiler.process(expr, **kw))


# PostgreSQL takes at most 100 arguments to a function: a wide sync's texts are joined in nested parts.
CONCAT_WS_TEXTS = 90


@compiles(Joined, "duckdb")
@compiles(Joined, "postgresql")
def _joined_by_concat_ws(element: Joined, compiler: Any, **kw: Any) -> str:
    sep, *texts = element.clauses
    parts = [
        sa.func.concat_ws(sep, *texts[i : i + CONCAT_WS_TEXTS]) for i in range(0, len(texts), CONCAT_WS_TEXTS)
    ]
    joined = parts[0] if len(parts) == 1 else sa.func.concat_ws(sep, *parts)
    return str(compiler.process(joined, **kw))


def row_hash(
    relation: sa.FromClause, spec: SyncSpec, column_types: dict[str, str] | None = None
) -> sa.ColumnElement[str]:
    """md5 of the whole text of every mapped value, computed by the database where the rows live (md5 and
    chr exist on all three)."""
    null = sa.func.chr(30)
    texts: list[sa.ColumnElement[Any]] = [sa.cast(sa.literal(mapping_signature(spec)), TEXT)]
    for mapping in spec.fields:
        value = _as_text(relation.c[mapping.column], (column_types or {}).get(mapping.column))
        texts.append(sa.func.coalesce(value, null))
    return sa.func.md5(Joined(sa.func.chr(31), *texts))


class FieldFingerprints(sa.sql.functions.FunctionElement[str]):
    """A few hex digits per mapped value, comma-joined, that change when the value changes: the change log
    compares a row's with the ones the ledger kept to name the fields that changed. Given (the value's
    text, NULL marked; the value) for each field, and compiled with each database's cheapest hash: md5 of
    the text where nothing cheaper is known (Redshift), PostgreSQL's hashtext (a tenth of its md5's time,
    which the sync waits for), DuckDB's hash of the value itself (in the sync's own process). A hash that
    differs after an upgrade names more fields changed in the log; it never changes which rows are sent
    (the row hash does that)."""

    name = "field_fingerprints"
    type = sa.String()
    inherit_cache = True


def _triples(element: FieldFingerprints) -> list[tuple[Any, Any, int]]:
    """(the value's text, the value, its field's salt: an unsigned 32-bit integer) for each field."""
    clauses = list(element.clauses)
    return list(zip(clauses[::3], clauses[1::3], [c.value for c in clauses[2::3]], strict=True))


@compiles(FieldFingerprints)
def _fingerprints_md5(element: FieldFingerprints, compiler: Any, **kw: Any) -> str:
    parts = [
        sa.func.left(sa.func.md5(sa.literal(f"{salt}:").op("||")(text)), 8)
        for text, _, salt in _triples(element)
    ]
    return str(compiler.process(Joined(sa.literal(","), *parts), **kw))


@compiles(FieldFingerprints, "postgresql")
def _fingerprints_postgresql(element: FieldFingerprints, compiler: Any, **kw: Any) -> str:
    parts = [
        sa.func.to_hex(
            sa.func.hashtext(text).op("#")(sa.cast(sa.literal(salt - (salt >> 31 << 32)), sa.Integer))
        )
        for text, _, salt in _triples(element)
    ]
    return str(compiler.process(Joined(sa.literal(","), *parts), **kw))


@compiles(FieldFingerprints, "duckdb")
def _fingerprints_duckdb(element: FieldFingerprints, compiler: Any, **kw: Any) -> str:
    # HASH is a UBIGINT: modulo an untyped parameter DuckDB computes in HUGEINT, three times slower.
    def part(value: Any, salt: Any) -> str:
        modulus = compiler.process(sa.literal(2**32), **kw)
        return (
            f"TO_HEX(XOR(HASH({compiler.process(value, **kw)}) % CAST({modulus} AS UBIGINT), "
            f"CAST({compiler.process(sa.literal(salt), **kw)} AS UBIGINT)))"
        )

    parts = [part(value, salt) for _, value, salt in _triples(element)]
    return f"CONCAT_WS({compiler.process(sa.literal(','), **kw)}, {', '.join(parts)})"


def field_signature(spec: SyncSpec, mapping: FieldMapping) -> str:
    """What, beside its value, decides what a field is sent as: its fingerprint changes with it, so a
    changed mapping (its Pendo field, its type) or wire form names the fields it touched."""
    default = Wire()
    signature = f"{mapping.column}>{mapping.field}:{mapping.type}:{mapping.element_type}"
    if spec.time_format != default.time_format and "time" in (mapping.type, mapping.element_type):
        signature += f"|time_format={spec.time_format}"
    if spec.clear_with != default.clear_with:
        signature += f"|clear_with={spec.clear_with}"
    return signature


def field_fingerprints(
    relation: sa.FromClause, spec: SyncSpec, column_types: dict[str, str] | None = None
) -> sa.ColumnElement[str]:
    """Each mapped value's fingerprint, salted by its field's signature, in spec.fields order,
    comma-joined (the change log's input)."""
    null = sa.func.chr(30)
    arguments: list[sa.ColumnElement[Any]] = []
    for mapping in spec.fields:
        column = relation.c[mapping.column]
        signature = field_signature(spec, mapping)
        salt = zlib.crc32(signature.encode())  # each database mixes it in its own way (below)
        arguments += [
            sa.func.coalesce(_as_text(column, (column_types or {}).get(mapping.column)), null),
            column,
            sa.literal(salt),
        ]
    return FieldFingerprints(*arguments)


def slice_predicate(relation: sa.FromClause, spec: SyncSpec, window: Slice) -> sa.ColumnElement[bool] | None:
    if window.mode == "full":
        return None
    if not spec.replication_key:
        raise UsageError(f"sync {spec.name!r}: mode {window.mode!r} needs a replication_key in the config")
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
    """All rows of a statement as the driver's tuples (a page of a DuckDB read by rowid range)."""
    found = driver_statement(conn, stmt)
    if found is None:
        return [tuple(row) for row in conn.execute(stmt)]
    return list(conn.exec_driver_sql(*found).cursor.fetchall())


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
        days = conn.execute(sa.select(sa.cast(key, sa.Date)).where(newer).distinct()).scalars().all()
    return sorted(d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in days), newest
