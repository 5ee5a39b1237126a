"""Database failures in a person's words: which sync, what it was doing, the database's own first line, the
fix. SQLAlchemy's messages carry the SQL and a link; a person needs none of that (the step's log has it)."""

from __future__ import annotations

import sqlalchemy as sa

from pendo_sync.errors import SyncFailed
from pendo_sync.secrets import redact

# Errors of the connection itself (killed, unreachable, restarted), as opposed to a statement it refused.
_CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)


class WarehouseError(SyncFailed):
    """The warehouse (or the state database) failed or refused a statement; the message says what to do."""


class WarehouseBusy(WarehouseError):
    """A DuckDB file stayed open in another process for longer than the wait (DuckDB lets one process at a
    time open a file): a sensor tick skips and the next one tries again."""


def first_line(exc: BaseException) -> str:
    """The database's own message, first line: what a person needs of it. Without secrets: the driver may
    echo what the URL holds (a host, a database name), and a password can be among it."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return redact(lines[0]) if lines else type(orig).__name__


def database_failure(
    exc: sa.exc.DBAPIError, sync_name: str, doing: str, query_source: bool
) -> WarehouseError:
    """The WarehouseError for a failed statement of a sync: a lost connection, or a refused statement."""
    place = f"sync {sync_name!r}"
    if lost_connection(exc):
        return WarehouseError(
            f"{place}: the warehouse connection failed while {doing} ({first_line(exc)}); check that the "
            "database is up and reachable, then run again: nothing unconfirmed was recorded"
        )
    if query_source:
        return WarehouseError(
            f"{place}: the warehouse refused the source query: {first_line(exc)}; fix 'query' in the config"
        )
    return WarehouseError(
        f"{place}: the warehouse refused a statement while {doing}: {first_line(exc)}; check the source "
        "table and that the sync's user may read it and write the state schema"
    )


def lost_connection(exc: sa.exc.DBAPIError) -> bool:
    """The connection failed (as opposed to a statement it refused). DuckDB reports some statements it
    refuses (a conversion, a binder error) as OperationalErrors too."""
    name = type(getattr(exc, "orig", None)).__name__
    refused = name.endswith(("ConversionException", "BinderException", "CatalogException", "ParserException"))
    return isinstance(exc, _CONNECTION_ERRORS) and not refused
