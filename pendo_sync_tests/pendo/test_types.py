"""Coercion of warehouse values to Pendo types: one place, exact results and exact reasons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pendo_sync.pendo.types import CLEAR_VALUE, CoercionError, canonical_type, coercer_for


@pytest.mark.parametrize(
    ("pendo_type", "value", "expected"),
    [
        ("string", "pro", "pro"),
        ("string", 12, "12"),
        ("string", dt.date(2026, 1, 2), "2026-01-02"),
        ("boolean", True, True),
        ("boolean", "yes", True),
        ("boolean", "F", False),
        ("boolean", 0, False),
        ("integer", 12, 12),
        ("integer", 12.0, 12),
        ("integer", Decimal("7"), 7),
        ("integer", " 42 ", 42),
        ("float", Decimal("1234.50"), 1234.5),
        ("float", 3, 3),
        ("float", "2.5", 2.5),
        ("time", dt.datetime(2026, 10, 1, 12, 0), 1790856000000),
        ("time", dt.datetime(2026, 10, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), 1790856000000),
        ("time", dt.date(2026, 10, 1), 1790812800000),
        ("time", "2026-10-01T12:00:00Z", 1790856000000),
        ("time", 1790856000000, 1790856000000),
        ("string", None, CLEAR_VALUE),
    ],
)
def test_coerces(pendo_type: str, value: object, expected: object) -> None:
    assert coercer_for(pendo_type)(value) == expected


@pytest.mark.parametrize(
    ("pendo_type", "value", "reason"),
    [
        ("integer", True, "True is a boolean, not an integer"),
        ("integer", "n/a", "'n/a' is not an integer"),
        ("integer", 12.5, "12.5 is not an integer"),
        ("float", float("nan"), "nan is not a finite number"),
        ("float", False, "False is a boolean, not a number"),
        ("boolean", "maybe", "'maybe' is not a boolean (use true/false)"),
        (
            "time",
            "last tuesday",
            "'last tuesday' is not a date-time (use a timestamp, a date or ISO 8601 text)",
        ),
    ],
)
def test_refuses_with_reason(pendo_type: str, value: object, reason: str) -> None:
    with pytest.raises(CoercionError) as caught:
        coercer_for(pendo_type)(value)
    assert str(caught.value) == reason


def test_lists_and_element_types() -> None:
    to_list = coercer_for("list", "integer")
    assert to_list([1, "2", 3.0]) == [1, 2, 3]
    assert to_list("[4, 5]") == [4, 5]
    with pytest.raises(CoercionError, match="'x' is not an integer"):
        to_list([1, "x"])
    with pytest.raises(CoercionError, match="is not a list"):
        to_list("not json")


def test_type_names() -> None:
    assert canonical_type("Number") == "float"
    assert canonical_type("date") == "time"
    assert canonical_type("int") is None
