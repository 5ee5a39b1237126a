"""A reconcile at a scale `make bench` does not reach: a no-change full run of a DuckDB table of --rows rows
(default 10,000,000) against a ledger that already holds every row, at pendo_sync's default memory cap.

The ledger is seeded with the sync's own row hashes by one INSERT ... SELECT (a first sync of ten million
rows through the emulator would take minutes and measure delivery, which `make bench` already does), so
the run diffs the whole table against the ledger, finds nothing to send, and ends: what it measures is
the diff and the deleted-ids pass, the two joins of the table with the ledger.

Usage:
    .venv/bin/python bench/scale.py                  # 10,000,000 rows; the table is kept for the next run
    .venv/bin/python bench/scale.py --rows 5000000
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

from bench.data import create_tables, emulator_seed, sync_config  # noqa: E402
from bench.emulator_process import EmulatorProcess, LatencyModel  # noqa: E402
from bench.run import bench_home, run_worker  # noqa: E402
from pendo_sync.config import parse_config  # noqa: E402
from pendo_sync.engine.preflight import source_columns  # noqa: E402
from pendo_sync.state.store import StateStore  # noqa: E402
from pendo_sync.warehouse.diff import ChangeSetSQL  # noqa: E402
from pendo_sync.warehouse.engines import make_engine  # noqa: E402
from pendo_sync.warehouse.slices import HASH_COL, ID_COL, Slice  # noqa: E402

TABLE = "bench_visitors"


def seeded(rows: int) -> Path:
    """A DuckDB file with the table and a ledger holding every row's hash (made once, then reused)."""
    path = bench_home() / f"scale-{rows}.duckdb"
    if path.exists():
        return path
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    engine = make_engine(f"duckdb:///{partial}?memory_limit=4GB")  # the set-up is not measured
    config = sync_config(TABLE, {})
    create_tables(engine, TABLE, rows)
    (spec,) = parse_config(config, "bench").syncs
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
    partial.rename(path)
    print(f"generated {rows:,} rows and their ledger in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    work = bench_home() / "scale-run.duckdb"
    shutil.copy(seeded(args.rows), work)
    Path(f"{work}.wal").unlink(missing_ok=True)
    with EmulatorProcess(LatencyModel(), emulator_seed(), ROOT) as emulator:
        result = run_worker(
            "sync",
            {
                "url": f"duckdb:///{work}",  # pendo_sync's own memory cap
                "emulator_url": emulator.base_url,
                "config": sync_config(TABLE, {"progress_every_seconds": 3600}),
                "mode": "full",
                "profile": None,
            },
        )
    counts = result["counts"]
    print(
        f"no-change reconcile of {args.rows:,} rows on DuckDB: {result['status']} in {result['wall_s']:.1f} s, "
        f"sent {counts.get('sent', 0)}, cleared {counts.get('cleared', 0)}, "
        f"peak RSS {result['peak_rss_mb']:.0f} MiB"
    )
    print(json.dumps(result))
    ok = result["status"] == "complete" and not counts.get("sent") and not counts.get("cleared")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
