"""Schema drift as data: the difference of two column schemas in words, and mapped columns that no longer fit."""

from __future__ import annotations

from pendo_sync.config import load_config
from pendo_sync.dagster.drift import column_type_problems, schema_diff


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


def test_column_type_problems_name_the_column_the_field_and_the_fix() -> None:
    accounts = load_config().sync("accounts")
    columns = {"plan": "character varying", "seats": "character varying", "arr": "numeric", "health_score": "double",
               "is_paying": "boolean", "renewal_date": "date"}  # fmt: skip
    assert column_type_problems(accounts, columns) == [
        "sync 'accounts': column 'seats' is now character varying, which does not fit Pendo type 'integer' of "
        "field 'seats'; change the mapping or the column"
    ]
    del columns["arr"]
    assert "sync 'accounts': mapped column 'arr' is no longer in accounts" in column_type_problems(
        accounts, columns
    )
