"""A reconcile at a scale `make bench` does not reach: a no-change full run of a table of --rows rows
(default 10,000,000) against a ledger that already holds every row, on DuckDB (at pendo_sync's default
memory cap) and on PostgreSQL (database `pendo_scale`).

The ledger is seeded with the sync's own row hashes by one INSERT ... SELECT (a first sync of ten million
rows through the emulator would take minutes and measure delivery, which `make bench` already does), so
the run diffs the whole table against the ledger, finds nothing to send, and ends: what it measures is
the diff and the deleted-ids pass, the two joins of the table with the ledger. The seeded warehouses are
kept for the next run (a DuckDB file in .pendo_sync/bench, the PostgreSQL database).

Usage:
    .venv/bin/python bench/scale.py                  # 10,000,000 rows, DuckDB then PostgreSQL
    .venv/bin/python bench/scale.py --rows 5000000 --backends duckdb
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.data import create_tables, emulator_seed, sync_config  # noqa: E402
from bench.emulator_process import EmulatorProcess, LatencyModel  # noqa: E402
from bench.run import PG_SERVER, bench_home, run_worker  # noqa: E402
from pendo_sync.config import parse_config  # noqa: E402
from pendo_sync.engine.preflight import source_columns  # noqa: E402
from pendo_sync.state.store import StateStore  # noqa: E402
from pendo_sync.warehouse.diff import ChangeSetSQL  # noqa: E402
from pendo_sync.warehouse.engines import make_engine  # noqa: E402
from pendo_sync.warehouse.slices import HASH_COL, ID_COL, Slice  # noqa: E402

TABLE = "bench_visitors"
PG_DATABASE = "pendo_scale"


def seed(engine: Engine, rows: int) -> None:
    """The table, and a ledger holding every row's hash as the sync computes it."""
    create_tables(engine, TABLE, rows)
    (spec,) = parse_config(sync_config(TABLE, {}), "bench").syncs
    store = StateStore(engine, "pendo_sync")
    store.ensure_schema()
    hashed = ChangeSetSQL(spec, Slice("full"), source_columns(engine, spec)).source_rows()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(store.tables.ledger).from_select(
                ["sync_name", "record_id", "row_hash", "version", "confirmed_at"],
                sa.select(
                    sa.literal(spec.name), hashed.c[ID_COL], hashed.c[HASH_COL], sa.literal(1), sa.func.now()
                ),
            )
        )
    engine.dispose()


def duckdb_warehouse(rows: int) -> str:
    """A copy of the seeded DuckDB file (seeded once, then reused), at pendo_sync's own memory cap."""
    path = bench_home() / f"scale-{rows}.duckdb"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        seed(make_engine(f"duckdb:///{partial}?memory_limit=4GB"), rows)  # the set-up is not measured
        partial.rename(path)
    work = bench_home() / "scale-run.duckdb"
    shutil.copy(path, work)
    Path(f"{work}.wal").unlink(missing_ok=True)
    return f"duckdb:///{work}"


def postgresql_warehouse(rows: int, server: str) -> str:
    """The seeded PostgreSQL database (seeded again only when its ledger does not hold `rows` rows)."""
    url = f"{server}/{PG_DATABASE}"
    engine = make_engine(url) if _database_exists(server) else None
    try:
        if engine is not None:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT count(*) FROM pendo_sync.ledger")).scalar() == rows:
                    return url
    except sa.exc.DBAPIError:
        pass
    finally:
        if engine is not None:
            engine.dispose()
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
    admin.dispose()
    seed(make_engine(url), rows)
    with make_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))  # what the sync's own runs leave: statistics of both sides
    return url


def _database_exists(server: str) -> bool:
    admin = sa.create_engine(f"{server}/postgres", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": PG_DATABASE})
        exists = found.scalar() is not None
    admin.dispose()
    return exists


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--backends", default="duckdb,postgresql", help="comma-separated: duckdb,postgresql")
    parser.add_argument("--pg-server", default=PG_SERVER, help="PostgreSQL server URL without database")
    args = parser.parse_args(argv)
    ok = True
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        started = time.perf_counter()
        if backend == "duckdb":
            url = duckdb_warehouse(args.rows)
        else:
            url = postgresql_warehouse(args.rows, args.pg_server)
        print(f"{backend}: warehouse ready in {time.perf_counter() - started:.0f} s", flush=True)
        with EmulatorProcess(LatencyModel(), emulator_seed(), ROOT) as emulator:
            result = run_worker(
                "sync",
                {
                    "url": url,
                    "emulator_url": emulator.base_url,
                    "config": sync_config(TABLE, {"progress_every_seconds": 3600}),
                    "mode": "full",
                    "profile": None,
                },
            )
        counts = result["counts"]
        print(
            f"no-change reconcile of {args.rows:,} rows on {backend}: {result['status']} in "
            f"{result['wall_s']:.1f} s, sent {counts.get('sent', 0)}, cleared {counts.get('cleared', 0)}, "
            f"peak RSS {result['peak_rss_mb']:.0f} MiB"
        )
        print(json.dumps({"backend": backend, **result}), flush=True)
        ok = ok and result["status"] == "complete" and not counts.get("sent") and not counts.get("cleared")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
