"""Schema drift as data: the difference of two column schemas in words."""

from __future__ import annotations

from pendo_sync.dagster.drift import schema_diff


def test_schema_diff_names_added_removed_and_retyped_columns() -> None:
    diff = schema_diff(
        {"a": "integer", "b": "text", "c": "date"}, {"a": "bigint", "c": "date", "d": "boolean"}
    )
    assert bool(diff)
    assert diff.lines() == [
        "added column d (boolean)",
        "removed column b (text)",
        "column a changed type: integer -> bigint",
    ]
    assert not schema_diff({"a": "integer"}, {"a": "integer"})
