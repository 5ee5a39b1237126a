"""Every documented delivery setting takes effect, from the CLI and from Dagster: the same config file's
`delivery:` block, run through `pendo-sync run` and through a materialization, each case observed in what
the emulator received. And batch sizing remembers what fit after a 408."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from pendo_sync.config import load_config
from pendo_sync.dagster.build import build_definitions
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.world import World, write_config


@dataclass
class Case:
    settings: dict[str, Any]
    check: Callable[[World, dict[str, Any]], None]
    setup: Callable[[World], None] = lambda world: None
    extra: dict[str, Any] = field(default_factory=dict)  # other settings the case needs


def latency(seconds: float, per_record: float = 0.0) -> Callable[[World], None]:
    def setup(world: World) -> None:
        world.emulator.settings.fixed_latency_s = seconds
        world.emulator.settings.per_record_latency_s = per_record

    return setup


def faults(*injected: Fault, retry_after: float = 1.0) -> Callable[[World], None]:
    def setup(world: World) -> None:
        world.emulator.settings.retry_after_s = retry_after
        world.emulator.inject_faults([dataclasses.replace(f) for f in injected])  # fresh: faults count down

    return setup


def stats(world: World) -> dict[str, Any]:
    return world.emulator.stats()


CASES = {
    "concurrency": Case(
        {"concurrency": 2},
        lambda w, r: assert_equal(stats(w)["max_in_flight"], 2),
        latency(0.05),
        {"batch_records": 20},
    ),
    "min_concurrency": Case(
        {"min_concurrency": 3},
        lambda w, r: assert_equal(r["counts"]["lowest_concurrency"], 3),
        faults(Fault("429", count=6, retry_after_s=0.01)),
        {"concurrency": 8, "batch_records": 20},
    ),
    "batch_records": Case({"batch_records": 7}, lambda w, r: assert_equal(stats(w)["batch_sizes"][0], 7)),
    "max_batch_records": Case(
        {"max_batch_records": 9}, lambda w, r: assert_equal(max(stats(w)["batch_sizes"]), 9)
    ),
    "max_batch_bytes": Case(
        {"max_batch_bytes": 3000},
        lambda w, r: assert_true(max(stats(w)["call_bytes"]) <= 3000 < sum(stats(w)["call_bytes"])),
    ),
    "target_call_seconds": Case(
        {"target_call_seconds": 0.03},
        lambda w, r: assert_true(max(stats(w)["batch_sizes"][1:]) <= 30),
        latency(0.0, 0.001),
        {"batch_records": 10},
    ),
    "request_timeout_seconds": Case(
        {"request_timeout_seconds": 0.5},
        lambda w, r: assert_true(r["counts"]["retries"] >= 1 and r["seconds"] < 3),
        faults(Fault("slow", delay_s=3.0)),
    ),
    "max_attempts": Case(
        {"max_attempts": 1},
        lambda w, r: assert_equal((r["counts"]["errors"], stats(w)["statuses"][500]), (50, 1)),
        faults(Fault("status", status=500, count=1)),
        {"batch_records": 50},
    ),
    "backoff_base_seconds": Case(
        {"backoff_base_seconds": 0.4},
        lambda w, r: assert_true(r["seconds"] >= 0.4),
        faults(Fault("status", status=503, count=1)),
        {"backoff_max_seconds": 60.0},
    ),
    "backoff_max_seconds": Case(
        {"backoff_max_seconds": 0.05},
        lambda w, r: assert_true(r["seconds"] < 3 and r["counts"]["retries"] == 2),
        faults(Fault("status", status=503, count=2)),
        {"backoff_base_seconds": 10.0},
    ),
    "runtime_budget_seconds": Case(
        {"runtime_budget_seconds": 0.5},
        lambda w, r: assert_equal(r["status"], "partial"),
        latency(0.1),
        {"concurrency": 1, "batch_records": 10, "max_batch_records": 10},
    ),
    # A first sync on DuckDB reads the table by rowid ranges of chunk_rows: [13, 26) is the second.
    "chunk_rows": Case(
        {"chunk_rows": 13}, lambda w, r: assert_true(any({13, 26} <= p for p in r["rowid_reads"]))
    ),
    "progress_every_seconds": Case(
        {"progress_every_seconds": 0.05},
        lambda w, r: assert_true(r["progress_lines"] >= 4),
        latency(0.05),
        {"concurrency": 1, "batch_records": 10, "max_batch_records": 10},
    ),
}


def assert_equal(got: Any, want: Any) -> None:
    assert got == want


def assert_true(condition: bool) -> None:
    assert condition


def rowid_reads(engine_events: list[tuple[str, Any]]) -> list[set[Any]]:
    """The parameters of each read of a table by rowid range."""
    return [set(p) for sql, p in engine_events if "rowid BETWEEN" in sql and p]


def run_cli(world: World, config: Path, cli: Any) -> dict[str, Any]:
    import json

    code, out, err = cli(
        "--config", str(config), "run", "accounts", "--mode", "full", "--accept-rejects", "--json"
    )
    report = json.loads(out.splitlines()[-1])
    report["progress_lines"] = sum(1 for line in err.splitlines() if "records done" in line)
    return report


def run_dagster(world: World, config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    defs = build_definitions(load_config(config))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, run_config={"ops": {"pendo__accounts": {"config": {"mode": "full"}}}}
        )
        messages = [e.message or "" for e in instance.all_logs(result.run_id)]
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    meta = {k: v.value for k, v in mat.metadata.items()}
    return {
        "status": meta["status"],
        "counts": meta,
        "seconds": meta["duration_seconds"],
        "progress_lines": sum(1 for m in messages if "records done" in m),
    }


@pytest.mark.parametrize("entry", ["cli", "dagster"])
@pytest.mark.parametrize("name", CASES)
def test_a_delivery_setting_takes_effect(
    name: str, entry: str, duckdb_world: World, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    case = CASES[name]
    settings = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02, **case.extra, **case.settings}
    config = write_config(tmp_path, **settings)
    case.setup(world)
    events: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        events.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        report = run_cli(world, config, cli) if entry == "cli" else run_dagster(world, config, monkeypatch)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    report["rowid_reads"] = rowid_reads(events)
    case.check(world, report)


def test_batch_sizing_remembers_what_fit_after_a_408(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.per_record_latency_s = 0.002
    world.emulator.settings.call_time_limit_s = 0.03  # 15 records per call at most
    slow = dataclasses.replace(world.delivery, concurrency=1, batch_records=50, max_batch_records=50)
    world.run("accounts", delivery=slow)
    stats = world.emulator.stats()
    # The first batch of 50 and then its first half of 25 ran past the limit; from then on every batch,
    # those already queued too, is cut to what fit (12) before it is sent.
    assert stats["statuses"][408] == 2
    assert stats["batch_sizes"][:2] == [50, 25] and max(stats["batch_sizes"][2:]) <= 12
    assert sum(stats["batch_sizes"][2:]) == 200
