"""Checks before anything is sent, the same for `pendo-sync check`, `pendo-sync run` and a Dagster
materialization: the source exists with every mapped column, every field exists in Pendo with the declared
type, and how many ids the source carries more than once. Each problem names the sync, the column or
field, and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.errors import EXIT_PROBLEMS, PendoSyncError
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.catalog import describe_table
from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.errors import database_failure, lost_connection
from pendo_sync.warehouse.slices import probe_columns

# Database types a Pendo type can take without loss; "string" and "" take anything.
_ACCEPTS = {
    "integer": ("int", "integer", "bigint", "smallint", "numeric", "decimal", "hugeint", "tinyint"),
    "float": (
        "int",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "decimal",
        "double",
        "real",
        "float",
        "hugeint",
    ),
    "boolean": ("bool", "boolean"),
    "time": ("timestamp", "date", "time"),
    "list": ("array", "[]", "json", "super", "list", "char", "text"),
}


# Pendo field types that accept a mapping's type (a "float" field takes integers too; "" takes anything).
_COMPATIBLE = {("float", "integer"), ("integer", "float")}


class PreflightError(PendoSyncError):
    """The config does not match the warehouse or Pendo: nothing was sent. One problem a line."""

    exit_code = EXIT_PROBLEMS

    def __init__(self, problems: list[str], source: Source | None = None) -> None:
        self.problems = problems
        self.source = source  # the source as described, where the warehouse answered
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        return self.problems


@dataclass
class Source:
    """What the warehouse says of a sync's source: its columns and whether it enforces one row per id."""

    columns: dict[str, str] | None  # name -> database type; None: the table does not exist
    unique_ids: bool = False
    problems: list[str] = field(default_factory=list)


def describe_source(engine: Engine, spec: SyncSpec) -> Source:
    """The source's columns (a query's from a probe that reads no row) and key. A query the warehouse
    refuses is a problem; a lost connection raises WarehouseError."""
    try:
        if spec.table:
            table = describe_table(engine, spec.table)
            if table is None:
                return Source(None)
            # PostgreSQL and DuckDB enforce a primary key; Redshift's is informational only.
            unique = table.key_columns == (spec.id_column,) and backend_of(engine) != "redshift"
            return Source({c.name: c.data_type for c in table.columns}, unique)
        with engine.connect() as conn:
            result = conn.execute(probe_columns(spec))
            description = result.cursor.description if result.cursor is not None else None
        return Source({str(d[0]): _type_name(d[1]) for d in description or ()})
    except sa.exc.DBAPIError as exc:
        failure = database_failure(exc, spec.name, "reading the source's columns", bool(spec.query))
        if spec.query and not lost_connection(exc):
            return Source({}, problems=[str(failure)])  # the query is the config's to fix
        raise failure from None


def source_columns(engine: Engine, spec: SyncSpec) -> dict[str, str] | None:
    """Column name -> database type of the sync's source, or None when the table does not exist."""
    return describe_source(engine, spec).columns


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


def warehouse_problems(spec: SyncSpec, source: Source) -> list[str]:
    place = f"sync {spec.name!r}"
    if source.problems:
        return source.problems
    columns = source.columns
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


def pendo_problems(
    spec: SyncSpec, schema: dict[str, dict[str, dict[str, Any]]], columns: dict[str, str] | None = None
) -> list[str]:
    """Compare the mappings with Pendo's field schema for the sync's kind and group (with `columns`, only
    those whose column is there: a missing column is the problem to fix first)."""
    fields = schema.get(spec.group) or {}
    problems = []
    for mapping in spec.fields:
        if columns is not None and mapping.column not in columns:
            continue
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


def type_warnings(spec: SyncSpec, columns: dict[str, str]) -> list[str]:
    """Mapped columns that are gone, or whose database type does not fit the field's Pendo type: a value
    that does not fit rejects its row (invalid), one row at a time, so these are warnings, not stops."""
    return [warning for _, warning in _misfits(spec, columns)]


def type_warnings_seen(spec: SyncSpec, columns: dict[str, str], state: StateStore) -> list[str]:
    """type_warnings, each with the values the runs rejected for it (the demo's 'n/a' NPS answers): what
    `pendo-sync check` and the mapped_columns_present check both say."""
    state.ensure_schema()
    invalid = [r for r in state.rejects.reasons(spec.name, limit=50) if r["kind"] == "invalid"]
    out = []
    for mapping, warning in _misfits(spec, columns):
        seen = [r for r in invalid if r["reason"].startswith(f"column {mapping.column!r} ")]
        if seen:
            rows = sum(r["count"] for r in seen)
            warning += f" (outstanding: {rows:,} rows, such as {seen[0]['reason'].split(': ', 1)[-1]})"
        out.append(warning)
    return out


def _misfits(spec: SyncSpec, columns: dict[str, str]) -> list[tuple[FieldMapping, str]]:
    out = []
    for mapping in spec.fields:
        db_type = columns.get(mapping.column)
        if db_type is None:
            out.append(
                (
                    mapping,
                    f"sync {spec.name!r}: mapped column {mapping.column!r} is no longer in {spec.source_label}",
                )
            )
            continue
        accepted = _ACCEPTS.get(mapping.type)
        if accepted and db_type and not any(word in db_type.lower() for word in accepted):
            out.append(
                (
                    mapping,
                    f"sync {spec.name!r}: column {mapping.column!r} is {db_type}, which does not fit Pendo type "
                    f"{mapping.type!r} of field {mapping.field!r}: each row whose value does not fit is rejected "
                    "as invalid; change the mapping or the column",
                )
            )
    return out
