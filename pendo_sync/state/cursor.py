"""The one codec for cursors (the newest replication-key value a run covered): to and from the two text
columns that hold it, and aligned with the key's database type so that values read back, imported from
Singer or returned by the warehouse always compare.

A `timestamp` key (no zone, UTC by convention) has naive UTC cursors; a `timestamptz` key has aware UTC
cursors; a `date` key date cursors; an integer key int cursors. Where the key's type is unknown (a query
source whose driver does not say), a cursor is aligned with the value it is compared with.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

_INTEGER_WORDS = ("int", "serial")
_NUMBER_WORDS = ("numeric", "decimal", "double", "real", "float")


def encode_cursor(value: Any) -> tuple[str | None, str | None]:
    """A cursor as (text, type) for two VARCHAR columns; aware timestamps are written in UTC."""
    if value is None:
        return None, None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).isoformat(), "timestamptz"
        return value.isoformat(), "timestamp"
    if isinstance(value, dt.date):
        return value.isoformat(), "date"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value), "number"
    return str(value), "string"


def decode_cursor(text: str | None, kind: str | None) -> Any:
    if text is None:
        return None
    if kind in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "number":
        return _number(text)
    return text


def key_kind(db_type: str | None) -> str | None:
    """'timestamptz', 'timestamp', 'date', 'integer', 'number', 'string', or None when unknown."""
    if not db_type:
        return None
    lowered = db_type.lower()
    if lowered.startswith("timestamp") or lowered in ("datetime", "timestamptz"):
        with_zone = "with time zone" in lowered or lowered in ("timestamptz", "timestamp_tz")
        return "timestamptz" if with_zone else "timestamp"
    if lowered == "date":
        return "date"
    if any(word in lowered for word in _INTEGER_WORDS):
        return "integer"
    if any(word in lowered for word in _NUMBER_WORDS):
        return "number"
    return "string"


def align_cursor(value: Any, kind: str | None, like: Any = None) -> Any:
    """The cursor as the key's type has it (`kind` from key_kind); with the kind unknown, shaped like `like`
    (a value of the key read from the warehouse). Text is parsed (a Singer bookmark is text)."""
    if value is None:
        return None
    if kind is None:
        kind = _kind_of(like)
    if kind in ("timestamp", "timestamptz"):
        moment = _timestamp(value)
        if moment is None:
            return value
        if kind == "timestamptz":
            return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
        return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, str):
            return dt.date.fromisoformat(value.strip()[:10])
        return value
    if kind in ("integer", "number") and isinstance(value, str):
        return _number(value.strip())
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# What each kind of key holds, as a message says it.
KIND_WORDS = {
    "timestamptz": "a time", "timestamp": "a time", "date": "a date", "integer": "a number",
    "number": "a number", "string": "text",
}  # fmt: skip


def cursor_fits(value: Any, kind: str | None) -> bool:
    """Whether a cursor (align_cursor's) is a value of this kind of key; any cursor fits an unknown kind."""
    if kind in ("timestamp", "timestamptz"):
        return isinstance(value, dt.datetime)
    if kind == "date":
        return isinstance(value, dt.date)
    if kind in ("integer", "number"):
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return True


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    return None


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _number(text: str) -> int | Decimal:
    """A number cursor exactly as it was written (a float would round 123456789012345678.30 down)."""
    if not any(c in text for c in ".eEnN"):
        return int(text)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
