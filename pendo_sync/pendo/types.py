"""Pendo field types, and the one place where warehouse values are coerced to them.

Pendo checks each value against its field's type; a value that cannot be coerced
rejects its row (with the reason), never the run.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

PENDO_TYPES = ("string", "boolean", "integer", "float", "time", "list")
# Names users reach for (Pendo's UI says "text", "number", "date") and what Pendo calls them.
TYPE_ALIASES = {"text": "string", "number": "float", "date": "time", "datetime": "time", "bool": "boolean"}

# Two parts of Pendo's contract are not confirmed (PENDO_API.md): how a field is cleared, and which form a
# custom date field takes. Each is a setting of the sync (clear_with, time_format), decided here alone.
CLEAR_FORMS: dict[str, Any] = {"null": None, "empty_string": ""}
TIME_FORMATS = ("epoch_ms", "iso8601")
CLEAR_VALUE: Any = CLEAR_FORMS["null"]  # the default: the browser agent and the mobile SDK clear with null


@dataclass(frozen=True)
class Wire:
    """How values are written to Pendo where its contract leaves a choice (README: Configuration)."""

    time_format: str = "epoch_ms"  # or "iso8601": 2026-01-02T15:04:05.999+00:00
    clear_with: str = "null"  # or "empty_string"

    @property
    def clear_value(self) -> Any:
        return CLEAR_FORMS[self.clear_with]


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class CoercionError(ValueError):
    """A value that does not fit its Pendo type; the message is the row's reject reason."""


class UnreadableInterval:
    """An interval the driver cannot make a timedelta of (psycopg2: past 999,999,999 days), as the database's
    text (warehouse/pg_casts.py). No Pendo type takes it, as none takes an interval."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"interval {self.text!r}"


# A time's text that no datetime holds: a year of five digits, or before the year 1 (PostgreSQL '... BC',
# DuckDB '... (BC)'). PostgreSQL's driver gives such a time as its text (warehouse/pg_casts.py), DuckDB too.
_FAR_TIME_TEXT = re.compile(r"\s*-?\d{5,}-|.*\bBC\b")


def canonical_type(name: str) -> str | None:
    """The Pendo type for a user-written type name, or None when there is none."""
    lowered = name.strip().lower()
    lowered = TYPE_ALIASES.get(lowered, lowered)
    return lowered if lowered in PENDO_TYPES else None


def cleared_values(fields: list[str], wire: Wire = Wire()) -> dict[str, Any]:
    """The values that clear these fields in Pendo (on_delete: clear)."""
    return dict.fromkeys(fields, wire.clear_value)


# Values whose str() is the text the database shows for them.
_PLAIN_TEXT = (int, float, Decimal, uuid.UUID)


def _json_number(value: Any) -> Any:
    """What orjson leaves to us inside a JSON document or an array: a decimal (numeric[]), as a number
    where that is exact, else as its text."""
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _to_string(value: Any) -> str:
    """A value's text as the database writes it: times in ISO 8601, JSON documents and arrays as compact
    JSON. A value without a faithful text form (binary, an interval, a composite) is refused, naming the
    fix, rather than sent as Python's repr of it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise CoercionError(f"{value!r} is not a finite number")
    if isinstance(value, _PLAIN_TEXT):  # bool is an int: True, as before
        return str(value)
    if isinstance(value, dict | list):
        try:
            return orjson.dumps(value, default=_json_number, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError as exc:
            raise CoercionError(f"{show_value(value)} cannot be written as JSON text: {exc}") from None
    if isinstance(value, dt.timedelta | UnreadableInterval):
        raise CoercionError(
            "an interval has no text form pendo_sync knows; cast the column to text in the sync's query"
        )
    if isinstance(value, bytes | bytearray | memoryview):
        raise CoercionError(
            "a binary value has no text form to send; select the text you want in the sync's query (hex, "
            "base64 or a decoding)"
        )
    raise CoercionError(
        f"{show_value(value)} (a {type(value).__name__}) has no text form pendo_sync knows; cast the column to "
        "text in the sync's query"
    )


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CoercionError(f"{show_value(value)} is not a boolean (use true/false)")


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise CoercionError(f"{show_value(value)} is a boolean, not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise CoercionError(f"{show_value(value)} is not an integer")


def _to_float(value: Any) -> float | int:
    if value.__class__ is float and value - value == 0.0:  # finite: inf - inf and nan - nan are nan
        return value
    if isinstance(value, bool):
        raise CoercionError(f"{show_value(value)} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal | str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise CoercionError(f"{show_value(value)} is not a finite number")


_EPOCH_NAIVE = _EPOCH.replace(tzinfo=None)
_ONE_MS = dt.timedelta(milliseconds=1)


def _to_time(value: Any) -> int:
    """Epoch milliseconds, UTC; naive timestamps are taken as UTC (Redshift TIMESTAMP has no zone)."""
    if isinstance(value, dt.datetime):
        # timedelta // timedelta: exact integer arithmetic in C, floored like calendar.timegm.
        if value.tzinfo is None:
            return (value - _EPOCH_NAIVE) // _ONE_MS
        return (value - _EPOCH) // _ONE_MS
    if isinstance(value, dt.date):
        return _to_time(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # already epoch milliseconds
    if isinstance(value, str):
        try:
            return _to_time(dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            if is_far_time_text(value):
                raise CoercionError(
                    f"{show_value(value)} is a time after the year 9999 (or before the year 1), which pendo_sync "
                    "cannot convert; correct it in the source"
                ) from None
    raise CoercionError(f"{show_value(value)} is not a date-time (use a timestamp, a date or ISO 8601 text)")


def is_far_time_text(text: str) -> bool:
    """Whether this is a time's text that no datetime holds (_FAR_TIME_TEXT)."""
    return _FAR_TIME_TEXT.match(text) is not None


def _to_iso_time(value: Any) -> str:
    """ISO 8601 with milliseconds and the UTC offset, as Pendo's Data Mappings pages show dates."""
    millis = _to_time(value)
    moment = _EPOCH + dt.timedelta(milliseconds=millis)
    return moment.isoformat(timespec="milliseconds")


def _json_value(value: Any) -> Any:
    """A value of a field without a declared type, as JSON can carry it (no NaN, no infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CoercionError(f"{value!r} is not a finite number")
    return value


def show_value(value: Any) -> str:
    """A value as a reason shows it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def passes_as_is(pendo_type: str, wire: Wire = Wire()) -> frozenset[type]:
    """The classes of warehouse values that are already what coercion returns for this type, so a record
    carries them unchanged (exact classes: a bool is not an integer here). A float is always checked (it
    may be NaN or infinite); a list always (its elements); None when the wire clears with null."""
    classes: set[type] = {type(None)} if wire.clear_value is None else set()
    exact: dict[str, set[type]] = {"string": {str}, "boolean": {bool}, "integer": {int}, "float": {int}}
    classes |= exact.get(pendo_type, set())
    if pendo_type == "time" and wire.time_format == "epoch_ms":
        classes.add(int)  # already epoch milliseconds (the query computed them: warehouse/diff.py)
    return frozenset(classes)


def database_conversion(pendo_type: str, column_type: str | None, wire: Wire = Wire()) -> str | None:
    """What the query computes itself for a mapped column, so the sync's process does not: "epoch_ms"
    (a timestamp or date column of a time field sent as epoch milliseconds: floor(epoch microseconds /
    1000), exactly what _to_time computes; warehouse/slices.py compiles it for each database, or leaves
    the column as it is where it cannot be exact), or None (the value comes as it is and is coerced here).
    Either way the result is the same: a conversion's output is a class that passes as-is."""
    base = (column_type or "").lower().split("(")[0].strip()
    if (
        pendo_type == "time"
        and wire.time_format == "epoch_ms"
        and (base.startswith("timestamp") or base == "date")
    ):
        return "epoch_ms"
    return None


# Column types (as the catalog names them, lower-cased, without a size) by what the database can write of
# their values as JSON exactly as the coercers below would send them.
_TEXT_TYPES = frozenset({"varchar", "character varying", "text", "string"})  # not char(n): its padding
_INTEGER_TYPES = frozenset(
    {"smallint", "integer", "int", "bigint", "int2", "int4", "int8", "tinyint", "utinyint", "usmallint"}
    | {"uinteger", "ubigint"}
)  # not hugeint or numeric: past 64 bits JSON (orjson) cannot carry them
_DOUBLE_TYPES = frozenset({"double", "double precision", "float8"})  # not real: drivers widen it apart
_BOOLEAN_TYPES = frozenset({"boolean", "bool"})
_JSON_TEXT_TYPES = _TEXT_TYPES | {"json"}

SQL_FORMS = {
    "text": "a string field from a text column: the text, as a JSON string",
    "integer": "an integer or float field from an integer column: the number",
    "double": "a float field from a double column: the number; NaN and infinities are the row's problem",
    "boolean": "a boolean field from a boolean column",
    "epoch_ms": "a time field from a timestamp or date column, sent as epoch milliseconds (database_conversion)",
    "json_list": "a list of strings from text holding a JSON array; other text is the row's problem",
}


def sql_form(pendo_type: str, element_type: str, column_type: str | None, wire: Wire = Wire()) -> str | None:
    """How the database may write a mapped column's value into the record itself (one of SQL_FORMS), or
    None: the value comes as it is and is coerced here. A form yields exactly what the coercer would send
    for every value it takes (a NULL is the wire's clear value); a value it does not take (the row's
    problem) sends the row through the coercer, which rejects it with the reason. Which forms a database
    writes is warehouse/record_sql.py's to say."""
    base = (column_type or "").lower().split("(")[0].strip()
    if database_conversion(pendo_type, column_type, wire) == "epoch_ms":
        return "epoch_ms"
    if pendo_type == "string" and base in _TEXT_TYPES:
        return "text"
    if pendo_type in ("integer", "float") and base in _INTEGER_TYPES:
        return "integer"
    if pendo_type == "float" and base in _DOUBLE_TYPES:
        return "double"
    if pendo_type == "boolean" and base in _BOOLEAN_TYPES:
        return "boolean"
    if pendo_type == "list" and element_type == "string" and base in _JSON_TEXT_TYPES:
        return "json_list"
    return None


_SCALAR: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "boolean": _to_boolean,
    "integer": _to_integer,
    "float": _to_float,
    "time": _to_time,
}


def coercer_for(pendo_type: str, element_type: str = "", wire: Wire = Wire()) -> Callable[[Any], Any]:
    """A function that turns one warehouse value into the Pendo value for this type, or raises CoercionError.

    Built once per mapped column so the hot path does no type dispatch per value. None becomes the wire's
    clear value: an empty warehouse cell empties the Pendo field.
    """
    scalars = {**_SCALAR, "time": _to_iso_time} if wire.time_format == "iso8601" else _SCALAR
    clear = wire.clear_value
    if pendo_type == "list":
        element = scalars.get(element_type, _json_value)
        # Elements already in form (and nulls) go as they are; a float element is always checked.
        in_form = (
            passes_as_is(element_type, Wire(wire.time_format)) | {type(None)} if element_type else frozenset()
        )

        def to_list(value: Any) -> Any:
            if value is None:
                return clear
            items = value
            if isinstance(value, str):
                try:
                    items = orjson.loads(value)
                except orjson.JSONDecodeError as exc:
                    raise CoercionError(
                        f"{show_value(value)} is not a list (use an array or JSON array text)"
                    ) from exc
            if not isinstance(items, list | tuple):
                raise CoercionError(f"{show_value(value)} is not a list")
            if in_form.issuperset(map(type, items)):
                return items if items.__class__ is list else list(items)
            return [element(item) if item is not None else item for item in items]

        return to_list
    if pendo_type == "":
        return _json_value
    scalar = scalars[pendo_type]

    def coerce(value: Any) -> Any:
        return clear if value is None else scalar(value)

    return coerce
