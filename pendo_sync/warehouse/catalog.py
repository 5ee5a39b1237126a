"""What the warehouse holds: tables, views and their columns, read from `information_schema`.

PostgreSQL and DuckDB answer from `information_schema.columns`/`tables`; Redshift from `SVV_COLUMNS`/
`SVV_TABLES`, because its `information_schema.columns` leaves out late-binding views. Primary keys come
from `information_schema.table_constraints` + `key_column_usage` everywhere. Values are always bound
parameters; only fixed SQL fragments are joined together. (SQLAlchemy's inspector is not used: DuckDB's
is broken under SQLAlchemy 2.1.)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.warehouse.engines import backend_of

# Never listed unless asked for by name: catalogs of the databases themselves and the project's state.
SYSTEM_SCHEMAS = ("information_schema", "pg_catalog", "pg_toast", "pg_internal", "pendo_sync")
# Where a bare table name is looked for first (PostgreSQL/Redshift, then DuckDB), before any other schema.
DEFAULT_SCHEMAS = ("public", "main")

_COLUMNS_SQL: dict[str, str] = {
    "default": """
SELECT c.table_schema, c.table_name, c.column_name, c.ordinal_position, c.data_type, c.is_nullable,
       t.table_type
FROM information_schema.columns AS c
JOIN information_schema.tables AS t
  ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_catalog = current_database() AND t.table_type IN ('BASE TABLE', 'VIEW')""",
    "redshift": """
SELECT c.table_schema, c.table_name, c.column_name, c.ordinal_position, c.data_type, c.is_nullable,
       t.table_type
FROM svv_columns AS c
JOIN svv_tables AS t
  ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type IN ('BASE TABLE', 'VIEW', 'EXTERNAL TABLE')""",
}
_KEYS_SQL = """
SELECT k.table_schema, k.table_name, k.column_name
FROM information_schema.table_constraints AS tc
JOIN information_schema.key_column_usage AS k
  ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
 AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name
WHERE tc.constraint_type = 'PRIMARY KEY'"""

_INTEGER = {"smallint", "integer", "bigint", "int", "int2", "int4", "int8", "tinyint", "hugeint"}
_INTEGER |= {"utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
_NUMBER = {"numeric", "decimal", "real", "double precision", "double", "float", "float4", "float8"}
_BOOLEAN = {"boolean", "bool"}


def _base_type(data_type: str) -> str:
    """'numeric(10,2)' -> 'numeric', 'character varying(256)' -> 'character varying'."""
    return re.sub(r"\(.*?\)", "", data_type.lower()).strip()


def _is_timestamp(data_type: str) -> bool:
    base = _base_type(data_type)
    return base.startswith("timestamp") or base == "datetime"


@dataclass(frozen=True)
class Column:
    """One column as the database reports it (data_type lower-cased, e.g. 'timestamp without time zone')."""

    name: str
    data_type: str
    nullable: bool
    position: int


@dataclass(frozen=True)
class Table:
    """A table or view with its columns in position order and its primary key columns in key order."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    key_columns: tuple[str, ...] = ()
    is_view: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def replication_key_candidates(self) -> tuple[str, ...]:
        """Timestamp and date columns, in position order: what an incremental sync can use as its cursor."""
        return tuple(
            c.name for c in self.columns if _is_timestamp(c.data_type) or _base_type(c.data_type) == "date"
        )

    def fingerprint(self) -> str:
        """sha256 of (name, data_type, nullable) in position order: changes exactly when the shape does."""
        shape = [[c.name, c.data_type, c.nullable] for c in sorted(self.columns, key=lambda c: c.position)]
        return hashlib.sha256(json.dumps(shape, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Catalog:
    """Tables ordered by (schema, name)."""

    tables: tuple[Table, ...]

    def find(self, qualified: str) -> Table | None:
        """'schema.table', or a bare 'table' looked for in 'public', then 'main', then any schema."""
        schema, _, name = qualified.rpartition(".")
        matches = [t for t in self.tables if t.name == name and (not schema or t.schema == schema)]
        if schema or not matches:
            return matches[0] if matches else None
        for preferred in DEFAULT_SCHEMAS:
            for table in matches:
                if table.schema == preferred:
                    return table
        return matches[0]


def discovery_statements(
    backend: str, schemas: Sequence[str] | None = None, tables: Sequence[str] | None = None
) -> tuple[sa.TextClause, sa.TextClause]:
    """The (columns, primary keys) statements for a backend: fixed text, values as expanding bound parameters."""
    filters: dict[str, tuple[str, list[str]]] = {}
    if schemas is None:
        filters["excluded_schemas"] = ("{a}.table_schema NOT IN :excluded_schemas", list(SYSTEM_SCHEMAS))
    else:
        filters["schemas"] = ("{a}.table_schema IN :schemas", list(schemas))
    if tables is not None:
        filters["tables"] = ("{a}.table_name IN :tables", list(tables))

    def build(base: str, a: str) -> sa.TextClause:
        where = "".join(f"\n  AND {sql.format(a=a)}" for sql, _ in filters.values())
        order = f"\nORDER BY {a}.table_schema, {a}.table_name, {a}.ordinal_position"
        binds: list[sa.BindParameter[Any]] = [
            sa.bindparam(name, values, expanding=True) for name, (_, values) in filters.items()
        ]
        return sa.text(base + where + order).bindparams(*binds)

    return build(_COLUMNS_SQL.get(backend, _COLUMNS_SQL["default"]), "c"), build(_KEYS_SQL, "k")


def discover(
    engine: Engine, schemas: Sequence[str] | None = None, tables: Sequence[str] | None = None
) -> Catalog:
    """Every table and view in `schemas` (default: all but system schemas), optionally only those named."""
    if (schemas is not None and not schemas) or (tables is not None and not tables):
        return Catalog(())
    columns_stmt, keys_stmt = discovery_statements(backend_of(engine), schemas, tables)
    with engine.connect() as conn:
        column_rows = conn.execute(columns_stmt).all()
        key_rows = conn.execute(keys_stmt).all()
    keys: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in key_rows:
        keys.setdefault((schema, table), []).append(column)
    columns: dict[tuple[str, str], list[Column]] = {}
    views: set[tuple[str, str]] = set()
    for schema, table, name, position, data_type, is_nullable, table_type in column_rows:
        if schemas is None and schema.startswith("pg_"):  # pg_temp_N, pg_toast_temp_N, pg_automv, ...
            continue
        column = Column(name, str(data_type).lower(), str(is_nullable).upper() == "YES", int(position))
        columns.setdefault((schema, table), []).append(column)  # in position order: the ORDER BY
        if str(table_type).upper() == "VIEW":
            views.add((schema, table))
    return Catalog(
        tuple(
            Table(s, t, tuple(cols), tuple(keys.get((s, t), ())), (s, t) in views)
            for (s, t), cols in sorted(columns.items())
        )
    )


def describe_table(engine: Engine, qualified: str) -> Table | None:
    """One table ('schema.table' or bare 'table', found as Catalog.find does), or None if it does not exist."""
    schema, _, name = qualified.rpartition(".")
    return discover(engine, [schema] if schema else None, [name]).find(qualified)


def json_schema_type(data_type: str, nullable: bool) -> dict[str, Any]:
    """The Singer (JSON schema) type of a database type; anything not numeric, boolean or dated is a string."""
    base = _base_type(data_type)
    schema: dict[str, Any]
    if base in _INTEGER:
        schema = {"type": "integer"}
    elif base in _NUMBER:
        schema = {"type": "number"}
    elif base in _BOOLEAN:
        schema = {"type": "boolean"}
    elif _is_timestamp(base):
        schema = {"type": "string", "format": "date-time"}
    elif base == "date":
        schema = {"type": "string", "format": "date"}
    else:
        schema = {"type": "string"}
    if nullable:
        schema["type"] = ["null", schema["type"]]
    return schema


def to_singer_catalog(catalog: Catalog, database: str) -> dict[str, Any]:
    """The catalog in Singer's shape (as tap-postgres / tap-redshift write it), nothing selected."""
    streams = []
    for table in catalog.tables:
        metadata: list[dict[str, Any]] = [
            {
                "breadcrumb": [],
                "metadata": {
                    "schema-name": table.schema,
                    "database-name": database,
                    "is-view": table.is_view,
                    "table-key-properties": list(table.key_columns),
                    "valid-replication-keys": list(table.replication_key_candidates),
                    "selected": False,
                },
            }
        ]
        metadata += [
            {
                "breadcrumb": ["properties", c.name],
                "metadata": {
                    "sql-datatype": c.data_type,
                    "inclusion": "automatic" if c.name in table.key_columns else "available",
                    "selected-by-default": True,
                },
            }
            for c in table.columns
        ]
        streams.append(
            {
                "tap_stream_id": f"{database}-{table.schema}-{table.name}",
                "stream": table.name,
                "table_name": table.name,
                "schema": {
                    "type": "object",
                    "properties": {c.name: json_schema_type(c.data_type, c.nullable) for c in table.columns},
                },
                "metadata": metadata,
            }
        )
    return {"streams": streams}
