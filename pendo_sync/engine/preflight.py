"""Checks before anything is sent: every column exists in the source, every field exists in Pendo with the
declared type. Each problem names the sync, the column or field, and the fix."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.warehouse.catalog import describe_table

# Pendo field types that accept a mapping's type (a "float" field takes integers too; "" takes anything).
_COMPATIBLE = {("float", "integer"), ("integer", "float")}


def source_columns(engine: Engine, spec: SyncSpec) -> dict[str, str] | None:
    """Column name -> database type of the sync's source, or None when the table does not exist."""
    if spec.table:
        table = describe_table(engine, spec.table)
        return None if table is None else {c.name: c.data_type for c in table.columns}
    assert spec.query is not None
    probe = sa.select(sa.text("*")).select_from(sa.text(f"({spec.query}) AS probe")).limit(0)
    with engine.connect() as conn:
        result = conn.execute(probe)
        description = result.cursor.description if result.cursor is not None else None
        return {str(d[0]): _type_name(d[1]) for d in description or ()}


# PostgreSQL/Redshift type OIDs that psycopg2 reports for a query's columns (DuckDB reports type names).
_PG_TYPE_OIDS = {
    16: "boolean",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    700: "real",
    701: "double precision",
    1043: "character varying",
    1082: "date",
    1114: "timestamp without time zone",
    1184: "timestamp with time zone",
    1700: "numeric",
}


def _type_name(type_code: Any) -> str:
    if isinstance(type_code, int):
        return _PG_TYPE_OIDS.get(type_code, "")
    return str(type_code).lower()


def warehouse_problems(spec: SyncSpec, columns: dict[str, str] | None) -> list[str]:
    place = f"sync {spec.name!r}"
    if columns is None:
        return [
            f"{place}: table {spec.table!r} does not exist in the warehouse; check 'table' (schema.table) "
            "or run pendo-sync discover to list tables"
        ]
    known = ", ".join(sorted(columns))
    problems = []
    if spec.id_column not in columns:
        problems.append(
            f"{place}: id_column {spec.id_column!r} is not in {spec.source_label}; columns are: {known}"
        )
    if spec.replication_key and spec.replication_key not in columns:
        problems.append(
            f"{place}: replication_key {spec.replication_key!r} is not in {spec.source_label}; columns are: {known}"
        )
    for mapping in spec.fields:
        if mapping.column not in columns:
            problems.append(
                f"{place}: column {mapping.column!r} is not in {spec.source_label}; fix the key under "
                f"'fields' (columns are: {known})"
            )
    return problems


def pendo_problems(spec: SyncSpec, schema: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Compare the mappings with Pendo's field schema for the sync's kind and group."""
    fields = schema.get(spec.group) or {}
    problems = []
    for mapping in spec.fields:
        place = f"sync {spec.name!r}, column {mapping.column!r}"
        found = fields.get(mapping.field)
        if found is None or found.get("isDeleted"):
            problems.append(
                f"{place}: Pendo {spec.kind} {spec.group} field {mapping.field!r} does not exist; create it in "
                "Pendo (Settings > Data Mappings) or map the column to an existing field"
            )
            continue
        pendo_type = str(found.get("Type", ""))
        if pendo_type and pendo_type != mapping.type and (pendo_type, mapping.type) not in _COMPATIBLE:
            problems.append(
                f"{place}: Pendo field {mapping.field!r} has type {pendo_type!r} but the mapping says "
                f"{mapping.type!r}; set type: {pendo_type} in the config or change the field in Pendo"
            )
    return problems
