"""A small world for engine and Dagster tests: sample tables in a fresh warehouse, a state store in it, and the
Pendo emulator on a real port, seeded with every mapped field and all ids but every 50th."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import DeliverySettings, ProjectConfig, SyncSpec, load_config
from pendo_sync.demo.run import seed_emulator
from pendo_sync.demo.sample_data import create_sample_tables
from pendo_sync.engine.run import RunOptions, SyncOutcome, run_sync
from pendo_sync.pendo.client import PendoClient
from pendo_sync.pendo.emulator import Emulator, EmulatorServer, EmulatorSettings
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import make_engine

ACCOUNTS, VISITORS = 200, 1000
# Fast, test-sized delivery: small batches so a run makes several calls, short backoff.
TEST_DELIVERY = DeliverySettings(
    concurrency=4,
    batch_records=50,
    max_batch_records=200,
    backoff_base_seconds=0.01,
    backoff_max_seconds=0.05,
)


@dataclass
class World:
    url: str
    engine: Engine
    store: StateStore
    config: ProjectConfig
    emulator: Emulator
    server: EmulatorServer
    delivery: DeliverySettings
    key: str = "emulator-key"

    def spec(self, name: str, **changes: Any) -> SyncSpec:
        return dataclasses.replace(self.config.sync(name), **changes)

    def client(self) -> PendoClient:
        return PendoClient(self.server.base_url, self.key, timeout_seconds=10)

    def run(
        self, name: str | SyncSpec, delivery: DeliverySettings | None = None, **options: Any
    ) -> SyncOutcome:
        spec = self.spec(name) if isinstance(name, str) else name
        return run_sync(
            spec, self.engine, self.store, self.client, delivery or self.delivery, RunOptions(**options)
        )

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []


@pytest.fixture
def world(warehouse_url: str) -> Iterator[World]:
    yield from _world(warehouse_url)


@pytest.fixture
def pg_world(pg_url: str) -> Iterator[World]:
    yield from _world(pg_url)


@pytest.fixture
def duckdb_world(duckdb_url: str) -> Iterator[World]:
    """For behaviour that does not depend on the warehouse (delivery under faults)."""
    yield from _world(duckdb_url)


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
        pytest.param("separate state", id="separate-state", marks=pytest.mark.postgres),
    ]
)
def every_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The world with the ledger in a DuckDB warehouse, in a PostgreSQL one, and in a PostgreSQL state
    database apart from a DuckDB warehouse: each way the change set is read (engine/changeset.py)."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "duckdb_url")
    for world in _world(url):
        if request.param == "separate state":
            world.store = StateStore(make_engine(request.getfixturevalue("pg_url")), "pendo_sync")
        yield world


def _world(url: str) -> Iterator[World]:
    engine = make_engine(url)
    create_sample_tables(engine, ACCOUNTS, VISITORS)
    config = load_config()
    emulator = Emulator(EmulatorSettings())
    seed_emulator(emulator, config, engine, absent_every=50)
    with EmulatorServer(emulator) as server:
        yield World(url, engine, StateStore(engine, "pendo_sync"), config, emulator, server, TEST_DELIVERY)
    engine.dispose()


@pytest.fixture
def cli(duckdb_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`pendo-sync ARGS...` in this process against the DuckDB world: (exit code, stdout, stderr)."""
    monkeypatch.setenv("PENDO_BASE_URL", duckdb_world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", "emulator-key")
    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)
    from pendo_sync.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--warehouse-url", duckdb_world.url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write_config(tmp_path: Any, edit: Any = None, **delivery: Any) -> Any:
    """The demo config with delivery settings and an optional edit of the parsed YAML, as a file."""
    import yaml

    from pendo_sync.config import DEMO_CONFIG

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["delivery"] = {**raw.get("delivery", {}), **delivery}
    if edit is not None:
        edit(raw)
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_partition_range(defs: Any, instance: Any, asset: list[str], start: str, end: str) -> Any:
    """Materialize a range of day partitions of one asset as one run, as a single-run backfill does."""
    import dagster as dg

    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(asset)],
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
    )
