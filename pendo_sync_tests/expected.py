"""Expected Pendo values computed from warehouse rows independently of pendo_sync's coercion code."""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec


def _expected(value: Any, pendo_type: str) -> Any:
    if value is None:
        return None
    if pendo_type == "time":
        if isinstance(value, dt.datetime):
            return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
        return calendar.timegm(value.timetuple()) * 1000
    if pendo_type == "float":
        return float(value) if isinstance(value, Decimal | float) else value
    if pendo_type == "integer":
        return int(value)
    if pendo_type == "boolean":
        return bool(value)
    return str(value)


def expected_fields(engine: Engine, spec: SyncSpec) -> dict[str, dict[str, Any]]:
    """id -> {pendo field: value} for every source row whose values are valid for their types."""
    columns = ", ".join([spec.id_column, *spec.columns])
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(sa.text(f"SELECT {columns} FROM {spec.table}")):
            try:
                out[str(row[0])] = {
                    m.field: _expected(v, m.type) for m, v in zip(spec.fields, row[1:], strict=True)
                }
            except ValueError:
                continue  # a value the type refuses: the row is rejected, not expected in Pendo
    return out
