"""Realistic sample tables (accounts, visitors) for the demo, the tests and the benchmark.

Deterministic for a seed: UUID ids, plans, seats, revenue, health scores, booleans, timestamps over
October 2026, some nulls, and a few NPS answers that are not numbers (they become row rejects).
Rows are generated and written in chunks, so a million-row table never sits in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.warehouse.engines import backend_of

BASE = dt.datetime(2026, 10, 1)
DAYS = 30
PLANS = ("free", "starter", "pro", "enterprise")
ROLES = ("admin", "editor", "viewer", "billing")

ACCOUNT_DDL = """CREATE TABLE {name} (
    account_id VARCHAR(64) PRIMARY KEY, name VARCHAR(256), plan VARCHAR(32), seats INTEGER,
    arr NUMERIC(14, 2), health_score DOUBLE PRECISION, is_paying BOOLEAN, renewal_date DATE,
    created_at TIMESTAMP, updated_at TIMESTAMP)"""
VISITOR_DDL = """CREATE TABLE {name} (
    visitor_id VARCHAR(64) PRIMARY KEY, account_id VARCHAR(64), email VARCHAR(256), role VARCHAR(32),
    is_admin BOOLEAN, nps VARCHAR(16), signed_up_at TIMESTAMP, last_login_at TIMESTAMP, updated_at TIMESTAMP)"""


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def account_ids(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(f"accounts-{seed}")
    return [_uuid(rng) for _ in range(count)]


def account_rows(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"account-rows-{seed}")
    for i, account_id in enumerate(account_ids(count, seed)):
        plan = PLANS[rng.randrange(4)]
        created = BASE - dt.timedelta(days=rng.randrange(30, 900))
        yield {
            "account_id": account_id,
            "name": f"Account {i}",
            "plan": plan,
            "seats": None if i % 97 == 0 else rng.randrange(1, 500),
            "arr": round(rng.uniform(0, 250_000), 2) if plan != "free" else 0.0,
            "health_score": None if i % 53 == 0 else round(rng.uniform(0, 100), 1),
            "is_paying": plan != "free",
            "renewal_date": (BASE + dt.timedelta(days=rng.randrange(0, 365))).date(),
            "created_at": created,
            "updated_at": BASE + dt.timedelta(seconds=rng.randrange(DAYS * 86_400)),
        }


def visitor_rows(count: int, accounts: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"visitor-rows-{seed}")
    owners = account_ids(accounts, seed)
    for i in range(count):
        signed_up = BASE - dt.timedelta(days=rng.randrange(1, 700), seconds=rng.randrange(86_400))
        nps: str | None = str(rng.randrange(0, 11))
        if i % 11 == 0:
            nps = None
        elif i % 997 == 0:
            nps = "n/a"  # a survey import that is not a number: rejected with its reason
        yield {
            "visitor_id": _uuid(rng),
            "account_id": owners[rng.randrange(len(owners))],
            "email": f"user{i}@example.com",
            "role": ROLES[rng.randrange(4)],
            "is_admin": rng.random() < 0.1,
            "nps": nps,
            "signed_up_at": signed_up,
            "last_login_at": None
            if i % 29 == 0
            else BASE + dt.timedelta(seconds=rng.randrange(DAYS * 86_400)),
            "updated_at": BASE + dt.timedelta(seconds=rng.randrange(DAYS * 86_400)),
        }


def create_sample_tables(
    engine: Engine, accounts: int = 5_000, visitors: int = 50_000, seed: int = 7, schema: str | None = None
) -> None:
    """(Re)create `accounts` and `visitors` and fill them, chunk by chunk."""
    prefix = f"{schema}." if schema else ""
    with engine.begin() as conn:
        if schema:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        for table, ddl in (("accounts", ACCOUNT_DDL), ("visitors", VISITOR_DDL)):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}{table}"))
            conn.execute(sa.text(ddl.format(name=prefix + table)))
    write_rows(engine, prefix + "accounts", account_rows(accounts, seed))
    write_rows(engine, prefix + "visitors", visitor_rows(visitors, accounts, seed))


def write_rows(engine: Engine, table: str, rows: Iterator[dict[str, Any]], chunk: int = 50_000) -> int:
    """Bulk-append rows, chunk by chunk."""
    written = 0
    while True:
        part = [row for _, row in zip(range(chunk), rows, strict=False)]
        if not part:
            return written
        write_frame(engine, table, pd.DataFrame(part).convert_dtypes())
        written += len(part)


def write_frame(engine: Engine, table: str, frame: pd.DataFrame) -> None:
    """Bulk-append a DataFrame: DuckDB reads it natively, PostgreSQL takes COPY."""
    raw: Any = engine.raw_connection()
    try:
        if backend_of(engine) == "duckdb":
            duck = raw.driver_connection
            duck.register("incoming", frame)
            duck.execute(f"INSERT INTO {table} ({', '.join(frame.columns)}) SELECT * FROM incoming")
            duck.unregister("incoming")
        else:
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False, quoting=csv.QUOTE_MINIMAL, na_rep="\\N")
            buffer.seek(0)
            with raw.cursor() as cursor:
                cursor.copy_expert(
                    f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                    buffer,
                )
        raw.commit()
    finally:
        raw.close()
