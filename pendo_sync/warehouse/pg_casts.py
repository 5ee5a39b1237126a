"""What psycopg2 makes of the values it cannot hold in Python, on pendo_sync's connections.

psycopg2 raises for a time past the year 9999 or before the year 1 (PostgreSQL keeps them; Redshift too)
and for an interval past 999,999,999 days, and one such value failed the whole fetch, so the whole run
(invariant 7: one bad row never fails a run). On pendo_sync's connections such a value comes instead as
what the coercer can refuse for its row alone: a time as the database's text (as DuckDB gives it), an
interval as an UnreadableInterval. Values Python holds are read exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pendo_sync.pendo.types import UnreadableInterval


def _or(base: Any, fallback: Callable[[str], Any]) -> Callable[[str | None, Any], Any]:
    def cast(text: str | None, cursor: Any) -> Any:
        try:
            return base(text, cursor)
        except (ValueError, OverflowError):  # "year 10000 is out of range"; "Python int too large ..."
            return fallback(text) if text is not None else None

    return cast


def register_casts(dbapi_connection: Any) -> None:
    """On one psycopg2 connection: the casts above for timestamp, timestamptz, date, interval and their
    arrays (an array's elements are cast one by one, so one element past range spoils only its row)."""
    from psycopg2 import extensions as ext  # here: DuckDB users need not have psycopg2

    for base, array, fallback in (
        (ext.PYDATETIME, ext.PYDATETIMEARRAY, str),
        (ext.PYDATETIMETZ, ext.PYDATETIMETZARRAY, str),
        (ext.PYDATE, ext.PYDATEARRAY, str),
        (ext.PYINTERVAL, ext.PYINTERVALARRAY, UnreadableInterval),
    ):
        scalar = ext.new_type(base.values, f"PENDO_SYNC_{base.name}", _or(base, fallback))
        ext.register_type(scalar, dbapi_connection)
        ext.register_type(
            ext.new_array_type(array.values, f"PENDO_SYNC_{array.name}", scalar), dbapi_connection
        )
