"""The part of each record the database writes itself: the JSON object of a row's mapped values, for the
columns whose values it can write exactly as pendo/types.py would send them (`sql_form`). The sync's
process then only puts the id in front; decoding each value into Python and encoding it again cost a
record six microseconds, the most of anything a sync does.

DuckDB writes every form, PostgreSQL every form but epoch milliseconds before version 14 (slices.py
EpochMillis); any other database (Redshift) none, so there every value comes as it is and Python coerces
it, as it always did. A row the database cannot write whole (a NaN, text that is not a JSON array of
strings) has no values object: its values come as they are, and the coercer rejects it with the reason.

The decision is made where the statement is compiled, for the database it is compiled for, by
`written_fields`; the record encoder (engine/records.py) asks the same function, through `written_by`,
which values it receives as they are.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.compiler import compiles

from pendo_sync.config import SyncSpec
from pendo_sync.pendo.types import Wire, sql_form

# A JSON array of strings and nulls, strictly as JSON (and orjson) reads it: no \u escape (a lone surrogate
# is valid JSON that orjson refuses; such rows go to Python), no control character, JSON's own whitespace.
_STRING = r'"([^"\\[:cntrl:]]|\\["\\/bfnrt])*"'
_ITEM = f"({_STRING}|null)"
_WS = r"[ \t\n\r]*"
JSON_STRING_ARRAY = f"^{_WS}\\[{_WS}({_ITEM}({_WS},{_WS}{_ITEM})*)?{_WS}\\]{_WS}$"


def written_fields(spec: SyncSpec, column_types: dict[str, str] | None, dialect: Dialect) -> tuple[bool, ...]:
    """For each mapped field, in spec.fields order, whether the database writes its value into the record."""
    wire = Wire(spec.time_format, spec.clear_with)
    forms = [sql_form(m.type, m.element_type, (column_types or {}).get(m.column), wire) for m in spec.fields]
    if dialect.name == "duckdb":
        return tuple(form is not None for form in forms)
    if dialect.name == "postgresql" and dialect.driver == "psycopg2":
        exact_epoch = (dialect.server_version_info or (0,)) >= (14,)
        return tuple(form is not None and (form != "epoch_ms" or exact_epoch) for form in forms)
    return tuple(False for _ in forms)


def written_by(engine: Engine, spec: SyncSpec, column_types: dict[str, str] | None) -> tuple[bool, ...]:
    """`written_fields` for an engine, once it knows its server's version (PostgreSQL's decides epoch
    milliseconds, and an engine learns it when it first connects): the encoder and the statement compiled
    later must make the same decision, or a record carries a field twice."""
    if engine.dialect.name == "postgresql" and engine.dialect.server_version_info is None:
        with engine.connect():
            pass
    return written_fields(spec, column_types, engine.dialect)


class RecordValues(sa.sql.functions.FunctionElement[str]):
    """The JSON object text of a row's values that the database writes (NULL where the row has a value it
    cannot write, or where it writes none). Given the row's mapped values, in spec.fields order."""

    name = "record_values"
    type = sa.String()
    inherit_cache = False  # compiled from the sync's mapping, which the cache key does not see

    def __init__(self, spec: SyncSpec, column_types: dict[str, str] | None, *values: Any) -> None:
        self.spec, self.column_types = spec, column_types
        super().__init__(*values)


class RawUnlessWritten(sa.sql.functions.FunctionElement[Any]):
    """A mapped value as it is, where the database did not write it into the record: always for a field it
    does not write, else only for a row without a values object (the coercer says why). Given the row's
    values object and the value; `index` is the field's in spec.fields."""

    name = "raw_unless_written"
    type = sa.types.NullType()
    inherit_cache = False

    def __init__(
        self, spec: SyncSpec, column_types: dict[str, str] | None, index: int, values: Any, raw: Any
    ) -> None:
        self.spec, self.column_types, self.index = spec, column_types, index
        super().__init__(values, raw)


@compiles(RecordValues)
def _no_values(element: RecordValues, compiler: Any, **kw: Any) -> str:
    return "NULL"


@compiles(RawUnlessWritten)
def _raw(element: RawUnlessWritten, compiler: Any, **kw: Any) -> str:
    values, raw = element.clauses
    written = written_fields(element.spec, element.column_types, compiler.dialect)
    if not written[element.index]:
        return str(compiler.process(raw, **kw))
    return str(compiler.process(sa.case((values.is_(None), raw)), **kw))


def _parts(element: RecordValues, dialect: Dialect) -> tuple[list[tuple[str, Any, str]], list[Any]]:
    """(field name, the row's value, its form) for each field the database writes, and the conditions under
    which the row's values can all be written (NULL always can: it is the wire's clear value)."""
    spec = element.spec
    written = written_fields(spec, element.column_types, dialect)
    wire = Wire(spec.time_format, spec.clear_with)
    postgres = dialect.name == "postgresql"
    parts, valid = [], []
    for mapping, value, write in zip(spec.fields, element.clauses, written, strict=True):
        if not write:
            continue
        column_type = (element.column_types or {}).get(mapping.column)
        form = sql_form(mapping.type, mapping.element_type, column_type, wire)
        assert form is not None
        if form == "double":
            if postgres:  # NaN compares above every number
                finite = sa.and_(
                    value < sa.literal_column("'Infinity'::float8"),
                    value > sa.literal_column("'-Infinity'::float8"),
                )
            else:
                finite = sa.func.isfinite(value)
            valid.append(sa.or_(value.is_(None), finite))
        elif form == "json_list":
            text = sa.cast(value, sa.Text())
            matches = (
                text.op("~")(JSON_STRING_ARRAY)
                if postgres
                else sa.func.regexp_full_match(text, JSON_STRING_ARRAY)
            )
            valid.append(sa.or_(value.is_(None), matches))
        parts.append((mapping.field, value, form))
    return parts, valid


def _written(element: RecordValues, compiler: Any, text: Any, valid: list[Any], **kw: Any) -> str:
    return str(compiler.process(sa.case((sa.and_(*valid), text)) if valid else text, **kw))


@compiles(RecordValues, "duckdb")
def _duckdb_values(element: RecordValues, compiler: Any, **kw: Any) -> str:
    """json_object of the typed values: DuckDB writes each as JSON (a third faster than text joined)."""
    parts, valid = _parts(element, compiler.dialect)
    if not parts:
        return "NULL"
    empty = element.spec.clear_with == "empty_string"
    args: list[Any] = []
    for name, value, form in parts:
        if form == "json_list":
            value = sa.cast(value, sa.JSON())
        if empty:  # a NULL is "" in every type of field
            value = sa.func.coalesce(sa.func.to_json(value), sa.cast(sa.literal('""'), sa.JSON()))
        args += [sa.literal(name), value]
    return _written(element, compiler, sa.cast(sa.func.json_object(*args), sa.String()), valid, **kw)


# PostgreSQL's concat takes at most 100 arguments: a wide object is joined from parts of this many.
_CONCAT_ARGS = 90


@compiles(RecordValues, "postgresql")
def _postgresql_values(element: RecordValues, compiler: Any, **kw: Any) -> str:
    """The object as text joined by concat: each value's own text (numbers, booleans, a validated JSON
    array as written), to_json's for strings; half the time of json_build_object, which also spaces it."""
    parts, valid = _parts(element, compiler.dialect)
    if not parts:
        return "NULL"
    clear = sa.literal('""' if element.spec.clear_with == "empty_string" else "null")
    pieces: list[Any] = []
    for i, (name, value, form) in enumerate(parts):
        as_text = sa.cast(sa.func.to_json(value), sa.Text()) if form == "text" else sa.cast(value, sa.Text())
        pieces += [sa.literal(("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":")]
        pieces.append(sa.func.coalesce(as_text, clear))
    pieces.append(sa.literal("}"))
    groups = [sa.func.concat(*pieces[i : i + _CONCAT_ARGS]) for i in range(0, len(pieces), _CONCAT_ARGS)]
    text = groups[0] if len(groups) == 1 else sa.func.concat(*groups)
    return _written(element, compiler, text, valid, **kw)
