"""Benchmark tables: accounts and visitors of any size, and the day of change an incremental run must follow.

Visitors carry ten mapped fields of mixed types (three strings, two integers, a float, a boolean, two
timestamps, a list held as JSON text) plus `updated_at` (the replication key) and `n`, a row number
that lets a change pick exactly 1% of rows without reading them. Rows are generated with numpy in
chunks, deterministically for a seed and a row number, so a table of millions never sits in memory and
inserted rows look like the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.demo.sample_data import write_frame
from pendo_sync.warehouse.engines import backend_of

BASE = np.datetime64("2026-10-01T00:00:00")
DAYS = 30
ROLES = np.array(["admin", "editor", "viewer", "billing"], dtype=object)
PLANS = np.array(["free", "starter", "pro", "enterprise"], dtype=object)
FLAGS = ("beta", "sso", "dark_mode")
# Every subset of FLAGS, as the JSON text a warehouse would hold for a list column.
FLAG_SETS = np.array(
    [json.dumps([f for bit, f in enumerate(FLAGS) if mask >> bit & 1]) for mask in range(8)], dtype=object
)
CHUNK_ROWS = 100_000

VISITOR_DDL = """CREATE TABLE {name} (
    n BIGINT NOT NULL, visitor_id VARCHAR(64) PRIMARY KEY, account_id VARCHAR(64), email VARCHAR(256),
    role VARCHAR(32), sessions_30d INTEGER NOT NULL, nps INTEGER, lifetime_value DOUBLE PRECISION,
    is_admin BOOLEAN, signed_up_at TIMESTAMP, last_login_at TIMESTAMP, feature_flags VARCHAR(256),
    updated_at TIMESTAMP NOT NULL)"""
ACCOUNT_DDL = """CREATE TABLE {name} (
    account_id VARCHAR(64) PRIMARY KEY, name VARCHAR(256), plan VARCHAR(32), seats INTEGER,
    arr DOUBLE PRECISION, is_paying BOOLEAN, created_at TIMESTAMP, updated_at TIMESTAMP)"""

# The mapped columns as the config file spells them: column -> {field (default: the column), type,
# element_type}.
VISITOR_FIELDS: dict[str, dict[str, str]] = {
    "account_id": {"type": "string"},
    "email": {"type": "string"},
    "role": {"type": "string"},
    "sessions_30d": {"type": "integer"},
    "nps": {"field": "nps_score", "type": "integer"},
    "lifetime_value": {"type": "float"},
    "is_admin": {"type": "boolean"},
    "signed_up_at": {"type": "time"},
    "last_login_at": {"type": "time"},
    "feature_flags": {"type": "list", "element_type": "string"},
}


def sync_config(table: str, delivery: dict[str, Any], change_log: bool = False) -> dict[str, Any]:
    """The benchmark's sync, as the YAML document pendo_sync.config.parse_config reads; with change_log,
    every run also writes what it did per row (README: The change log)."""
    document: dict[str, Any] = {
        "delivery": delivery,
        "syncs": {
            "bench_visitors": {
                "kind": "visitor",
                "group": "custom",
                "table": table,
                "id_column": "visitor_id",
                "replication_key": "updated_at",
                "on_delete": "clear",
                # Pendo creates visitors it lacks, so every row is confirmed and lands in the ledger.
                "create_missing": True,
                "fields": VISITOR_FIELDS,
                **({"change_log": {"retention_days": 30}} if change_log else {}),
            }
        },
    }
    return document


def emulator_seed() -> dict[str, Any]:
    """The emulator's seed file: every mapped visitor field with its type (ids are created on write)."""
    fields = {
        spec.get("field", column): {"Type": spec["type"], "ElementType": spec.get("element_type", "")}
        for column, spec in VISITOR_FIELDS.items()
    }
    return {"fields": {"visitor": {"custom": fields}}}


def _uuids(rng: np.random.Generator, count: int) -> np.ndarray:
    raw = rng.bytes(16 * count)
    return np.array([str(uuid.UUID(bytes=raw[i : i + 16])) for i in range(0, 16 * count, 16)], dtype=object)


def _seconds(rng: np.random.Generator, count: int, low: int, high: int) -> np.ndarray:
    return rng.integers(low, high, count).astype("timedelta64[s]")


def account_ids(count: int, seed: int) -> np.ndarray:
    return _uuids(np.random.default_rng([seed, 0]), count)


def visitor_frame(start: int, count: int, accounts: np.ndarray, seed: int) -> pd.DataFrame:
    """Visitor rows n = start .. start+count-1; the same (seed, start) always gives the same rows."""
    rng = np.random.default_rng([seed, 1, start])
    n = np.arange(start, start + count, dtype=np.int64)
    signed_up = BASE - _seconds(rng, count, 86_400, 700 * 86_400)
    last_login = BASE + _seconds(rng, count, 0, DAYS * 86_400)
    nps = pd.array(rng.integers(0, 11, count), dtype="Int64")
    nps[n % 11 == 0] = pd.NA
    return pd.DataFrame(
        {
            "n": n,
            "visitor_id": _uuids(rng, count),
            "account_id": accounts[rng.integers(0, len(accounts), count)],
            "email": [f"user{i}@example{i % 97}.com" for i in n],
            "role": ROLES[rng.integers(0, len(ROLES), count)],
            "sessions_30d": rng.poisson(12, count).astype(np.int32),
            "nps": nps,
            "lifetime_value": np.round(rng.lognormal(5, 1.5, count), 2),
            "is_admin": rng.random(count) < 0.1,
            "signed_up_at": signed_up,
            "last_login_at": pd.Series(last_login).mask(n % 29 == 0),
            "feature_flags": FLAG_SETS[rng.integers(0, len(FLAG_SETS), count)],
            "updated_at": BASE + _seconds(rng, count, 0, DAYS * 86_400),
        }
    )


def account_frame(ids: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 2])
    count = len(ids)
    plans = PLANS[rng.integers(0, len(PLANS), count)]
    return pd.DataFrame(
        {
            "account_id": ids,
            "name": [f"Account {i}" for i in range(count)],
            "plan": plans,
            "seats": rng.integers(1, 500, count).astype(np.int32),
            "arr": np.where(plans == "free", 0.0, np.round(rng.uniform(0, 250_000, count), 2)),
            "is_paying": plans != "free",
            "created_at": BASE - _seconds(rng, count, 30 * 86_400, 900 * 86_400),
            "updated_at": BASE + _seconds(rng, count, 0, DAYS * 86_400),
        }
    )


def _visitor_chunks(rows: int, start: int, accounts: np.ndarray, seed: int) -> Iterator[pd.DataFrame]:
    for offset in range(0, rows, CHUNK_ROWS):
        yield visitor_frame(start + offset, min(CHUNK_ROWS, rows - offset), accounts, seed)


def create_tables(engine: Engine, visitors_table: str, rows: int, seed: int = 7) -> None:
    """(Re)create `<visitors_table>` with `rows` visitors and its `<visitors_table>_accounts` (1 per 20)."""
    accounts_table = f"{visitors_table}_accounts"
    ids = account_ids(max(1, rows // 20), seed)
    with engine.begin() as conn:
        for table, ddl in ((accounts_table, ACCOUNT_DDL), (visitors_table, VISITOR_DDL)):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(ddl.format(name=table)))
    write_frame(engine, accounts_table, account_frame(ids, seed))
    for frame in _visitor_chunks(rows, 0, ids, seed):
        write_frame(engine, visitors_table, frame)
    if backend_of(engine) == "postgresql":
        # What a warehouse sort key gives Redshift: incremental slices read only the newest rows.
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE INDEX ON {visitors_table} (updated_at)"))
            conn.execute(sa.text(f"ANALYZE {visitors_table}"))


@dataclass(frozen=True)
class Change:
    """What one simulated day did to the table: what an incremental run and a reconcile must send."""

    updated: int
    inserted: int
    deleted: int


def apply_change(engine: Engine, table: str, day: int, seed: int = 7) -> Change:
    """Update 1% of rows (n % 100 == day), insert 0.1% new rows, delete 0.1% others (never updated ones).

    Changed and inserted rows get an `updated_at` one minute past the newest, so an incremental run's
    cursor sees them; a deleted row is only seen by a full reconcile.
    """
    pick, drop = day % 100, (day + 50) % 100
    with engine.begin() as conn:
        total, newest, last_n = conn.execute(
            sa.text(f"SELECT count(*), max(updated_at), max(n) FROM {table}")
        ).one()
        stamp = newest + dt.timedelta(minutes=1)
        updated = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE n % 100 = :p"), {"p": pick})
        updated_count = int(updated.scalar() or 0)
        conn.execute(
            sa.text(
                f"UPDATE {table} SET sessions_30d = sessions_30d + 1, updated_at = :t WHERE n % 100 = :p"
            ),
            {"t": stamp, "p": pick},
        )
        # n % 1000 == gone is 0.1% of rows, and gone % 100 == drop is never a day's pick.
        gone = {"g": drop + 100 * (day % 10)}
        deleted = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE n % 1000 = :g"), gone)
        deleted_count = int(deleted.scalar() or 0)
        conn.execute(sa.text(f"DELETE FROM {table} WHERE n % 1000 = :g"), gone)
    inserted = max(1, total // 1000)
    accounts = account_ids(max(1, total // 20), seed)
    frame = visitor_frame(int(last_n) + 1, inserted, accounts, seed)
    frame["updated_at"] = np.datetime64(stamp, "s")
    write_frame(engine, table, frame)
    return Change(updated_count, inserted, deleted_count)
