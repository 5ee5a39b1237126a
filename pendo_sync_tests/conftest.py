"""Shared fixtures: a fresh warehouse per test on DuckDB (a temporary file) and PostgreSQL (a throwaway database).

`warehouse_url` runs a test once per backend; `pg_url` / `duckdb_url` ask for one. PostgreSQL tests are
skipped, with the reason, only when the server on 127.0.0.1:5432 does not answer (`make postgres` starts it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
PG_ADMIN_URL = f"{PG_SERVER}/postgres"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the server's `postgres` database, for CREATE/DROP DATABASE."""
    engine = sa.create_engine(
        PG_ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5, "application_name": "pendo_sync_tests"},
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        pytest.skip(
            f"PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres ({reason}); "
            "start it with `make postgres`"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped (connections and all) afterwards."""
    name = (
        f"pendo_sync_test_{uuid.uuid4().hex[:16]}"  # generated, so safe to put in DDL (names cannot be bound)
    )
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    """A DuckDB file of its own for this test (created on first connect)."""
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


_URL_FIXTURES = {"duckdb": "duckdb_url", "postgresql": "pg_url"}


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """A fresh warehouse URL, once per backend: the test runs on DuckDB and on PostgreSQL."""
    url: str = request.getfixturevalue(_URL_FIXTURES[request.param])
    return url


# The sample warehouse + emulator world (pendo_sync_tests/world.py), for engine and Dagster tests.
from pendo_sync_tests.world import cli, duckdb_world, every_world, pg_world, world  # noqa: E402, F401
