"""The cursor codec: every cursor survives the round trip, and is aligned with its key's type."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pendo_sync.state.cursor import align_cursor, decode_cursor, encode_cursor, key_kind

UTC = dt.UTC
NAIVE = dt.datetime(2026, 10, 29, 1, 2, 3, 456789)
AWARE = dt.datetime(2026, 10, 29, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [None, NAIVE, AWARE, dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
     dt.date(2026, 1, 2), 42, 2.5, "abc"],
)  # fmt: skip
def test_cursor_round_trip(value: object) -> None:
    assert decode_cursor(*encode_cursor(value)) == value


@pytest.mark.parametrize(
    ("db_type", "kind"),
    [
        ("timestamp without time zone", "timestamp"),
        ("timestamp", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
        ("TIMESTAMP WITH TIME ZONE", "timestamptz"),
        ("timestamptz", "timestamptz"),
        ("date", "date"),
        ("bigint", "integer"),
        ("integer", "integer"),
        ("numeric(10,2)", "number"),
        ("character varying", "string"),
        ("", None),
    ],
)
def test_key_kind_of_database_types(db_type: str, kind: str | None) -> None:
    assert key_kind(db_type) == kind


@pytest.mark.parametrize(
    ("value", "kind", "like", "aligned"),
    [
        ("2026-10-29T01:02:03.456789Z", "timestamptz", None, AWARE),
        ("2026-10-29T01:02:03.456789Z", "timestamp", None, NAIVE),
        (NAIVE, "timestamptz", None, AWARE),
        (AWARE, "timestamp", None, NAIVE),
        (dt.datetime(2026, 10, 28, 21, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=-4))), "timestamp", None, NAIVE),
        (NAIVE, None, AWARE, AWARE),
        (AWARE, None, NAIVE, NAIVE),
        ("2026-10-29", "date", None, dt.date(2026, 10, 29)),
        ("1700000000", "integer", None, 1700000000),
        (1700000000.0, "integer", None, 1700000000),
        ("12.5", "number", None, Decimal("12.5")),
        (None, "timestamptz", None, None),
    ],
)  # fmt: skip
def test_align_cursor_with_the_key(value: object, kind: str | None, like: object, aligned: object) -> None:
    result = align_cursor(value, kind, like)
    assert result == aligned and type(result) is type(aligned)
    if isinstance(aligned, dt.datetime):
        assert (result.tzinfo is None) == (aligned.tzinfo is None)
