"""SQL that fingerprints a sync's rows: the row hash (which rows changed) and each field's fingerprint (which
fields of a changed row changed, for the change log), both computed by the database where the rows live and
compiled for each dialect. Every expression here must also run on Redshift (tested by compiling with its
dialect).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.pendo.types import Wire
from pendo_sync.warehouse.slices import TEXT


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


def mapping_digest(spec: SyncSpec) -> str:
    """md5 of the mapping signature: each state version keeps the one it sent with (state/versions.py)."""
    return hashlib.md5(mapping_signature(spec).encode()).hexdigest()


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


# Column types whose text never holds a control character (by the first word of the type's name).
_PLAIN_TYPES = frozenset(
    {"smallint", "integer", "int", "bigint", "int2", "int4", "int8", "tinyint", "hugeint", "uhugeint"}
    | {"utinyint", "usmallint", "uinteger", "ubigint", "numeric", "decimal", "double", "real", "float"}
    | {"float4", "float8", "boolean", "bool", "date", "time", "timestamp", "timestamptz", "uuid", "interval"}
)


def _escaped(text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A value's text with chr 29, 30 and 31 written as chr 29 and a letter: it then holds neither the
    hash's separator nor its NULL, so distinct rows hash distinct texts; a text without them is itself."""
    escape = sa.func.chr(29)
    for code, letter in ((29, "a"), (30, "b"), (31, "c")):
        text = sa.func.replace(text, sa.func.chr(code), escape.op("||")(sa.literal(letter)))
    return text


def row_hash(
    relation: sa.FromClause, spec: SyncSpec, column_types: dict[str, str] | None = None
) -> sa.ColumnElement[str]:
    """md5 of the whole text of every mapped value, each after chr 31 and NULL as chr 30, computed by the
    database where the rows live (md5, chr and replace exist on all three). The text of a column that may
    hold those characters is escaped (_escaped); a value without them hashes as every release hashed it."""
    null = sa.func.chr(30)
    texts: list[sa.ColumnElement[Any]] = [sa.cast(sa.literal(mapping_signature(spec)), TEXT)]
    for mapping in spec.fields:
        db_type = (column_types or {}).get(mapping.column)
        value = _as_text(relation.c[mapping.column], db_type)
        if (db_type or "").lower().split("(")[0].split(" ")[0] not in _PLAIN_TYPES:
            value = _escaped(value)
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
