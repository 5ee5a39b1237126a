"""The preflight's pure parts: a mapped column whose type does not fit its Pendo field is a warning (its
rows are rejected one by one), a mapped column that is gone is named."""

from __future__ import annotations

from pendo_sync.config import load_config
from pendo_sync.engine.preflight import type_warnings


def test_type_warnings_name_the_column_the_field_and_the_fix() -> None:
    accounts = load_config().sync("accounts")
    columns = {"plan": "character varying", "seats": "character varying", "arr": "numeric", "health_score": "double",
               "is_paying": "boolean", "renewal_date": "date"}  # fmt: skip
    assert type_warnings(accounts, columns) == [
        "sync 'accounts': column 'seats' is character varying, which does not fit Pendo type 'integer' of field "
        "'seats': each row whose value does not fit is rejected as invalid; change the mapping or the column"
    ]
    del columns["arr"]
    assert "sync 'accounts': mapped column 'arr' is no longer in accounts" in type_warnings(accounts, columns)
