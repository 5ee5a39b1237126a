"""SQLAlchemy engines for Redshift, PostgreSQL and DuckDB, and the few places their dialects differ."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

DEFAULT_HOME = Path(os.environ.get("PENDO_SYNC_HOME", ".pendo_sync"))


def default_warehouse_url() -> str:
    """The embedded default: a DuckDB file under PENDO_SYNC_HOME, so a new user needs no server."""
    return f"duckdb:///{(DEFAULT_HOME / 'warehouse.duckdb').resolve()}"


class WarehouseUrlError(ValueError):
    """A warehouse URL this project cannot use; the message says which form to use instead."""


def normalize_url(url: str) -> URL:
    """Name the driver explicitly: in SQLAlchemy 2.1 a bare postgresql:// means psycopg 3, which we do not ship."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL (and password) inside
        raise WarehouseUrlError(
            "PENDO_SYNC_WAREHOUSE_URL is not an SQLAlchemy URL; use redshift+psycopg2://user:pass@host:5439/db, "
            "postgresql+psycopg2://user@host:5432/db or duckdb:///path/to/file.duckdb"
        ) from exc.__class__(type(exc).__name__)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    elif parsed.drivername == "redshift":
        parsed = parsed.set(drivername="redshift+psycopg2")
    if parsed.get_backend_name() not in ("postgresql", "redshift", "duckdb"):
        raise WarehouseUrlError(
            f"warehouse backend {parsed.get_backend_name()!r} is not supported; "
            "use redshift+psycopg2://, postgresql+psycopg2:// or duckdb:///"
        )
    return parsed


def make_engine(url: str | None = None) -> Engine:
    """An engine for the warehouse URL (or the embedded DuckDB default), ready for chunked reads."""
    parsed = normalize_url(url or default_warehouse_url())
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(parsed, poolclass=sa.pool.NullPool)
    connect_args: dict[str, object] = {"application_name": "pendo_sync"}
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def backend_of(engine: Engine) -> str:
    """'redshift', 'postgresql' or 'duckdb'."""
    return engine.url.get_backend_name()


def redacted(url: str | URL) -> str:
    """The URL with its password hidden, for logs and messages (invariant 6)."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)
