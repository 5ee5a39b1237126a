"""`pendo-sync demo`: a DuckDB warehouse with sample data, the local Pendo emulator seeded with most of its
ids, and both syncs materialized through Dagster. A second run changes 1% of the accounts and shows that
only those are sent. The emulator's records persist between runs in PENDO_SYNC_HOME, as Pendo's would."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync import variables
from pendo_sync.config import ProjectConfig, load_config
from pendo_sync.demo.sample_data import create_sample_tables
from pendo_sync.pendo.emulator import Emulator, EmulatorServer, EmulatorSettings, serve
from pendo_sync.settings import connect_state
from pendo_sync.warehouse.engines import make_engine, redacted
from pendo_sync.warehouse.slices import source_relation, stream_rows

ROOT_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def add_fields(emulator: Emulator, config: ProjectConfig) -> None:
    """Every mapped field of the config, with its type, as a Pendo admin would have made them."""
    for spec in config.syncs:
        for mapping in spec.fields:
            emulator.add_field(spec.kind, spec.group, mapping.field, mapping.type, mapping.element_type)


def seed_emulator(emulator: Emulator, config: ProjectConfig, engine: Engine, absent_every: int = 0) -> int:
    """Give the emulator every mapped field, and the sources' ids (all but every `absent_every`-th one)."""
    add_fields(emulator, config)
    seeded = 0
    for spec in config.syncs:
        rel = source_relation(spec)
        stmt = sa.select(sa.cast(rel.c[spec.id_column], sa.String)).order_by(rel.c[spec.id_column])
        for chunk in stream_rows(engine, stmt, 10_000):
            ids = [row[0] for n, row in enumerate(chunk, seeded) if not absent_every or n % absent_every]
            emulator.add_ids(spec.kind, ids)
            seeded += len(chunk)
    return seeded


def _tables_exist(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('accounts', 'visitors')"
            )
        ).scalar()
    return int(found or 0) == 2


def _change_some_accounts(engine: Engine, share: float = 0.01) -> int:
    """Simulate a day in the warehouse: 1% of accounts get a new health score and a fresh updated_at."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        total = int(conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar() or 0)
        picked = max(1, int(total * share))
        ids = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT account_id FROM accounts ORDER BY md5(account_id || :salt) LIMIT :n"),
                {"salt": now.isoformat(), "n": picked},
            )
        ]
        conn.execute(
            sa.text(
                "UPDATE accounts SET health_score = round(random() * 100), updated_at = :now "
                "WHERE account_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"now": now, "ids": ids},
        )
    return len(ids)


def _prepare_dagster_home(home: Path) -> Path:
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    if ROOT_DAGSTER_YAML.exists() and not (dagster_home / "dagster.yaml").exists():
        shutil.copy(ROOT_DAGSTER_YAML, dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def _forget_state(warehouse: Engine, config: ProjectConfig) -> None:
    """Drop the state the demo's runs use (PENDO_SYNC_STATE_URL and _SCHEMA as Dagster's resources read
    them), so a fresh demo sends every row to its fresh emulator."""
    state_url = variables.STATE_URL.value()  # the demo's own: no secret is read
    state = connect_state(warehouse, state_url, None, variables.STATE_SCHEMA.value() or config.state_schema)
    with state.engine.begin() as conn:
        schema = conn.dialect.identifier_preparer.quote_schema(state.schema)
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    if state.engine is not warehouse:
        state.engine.dispose()


def run_demo(accounts: int = 5_000, visitors: int = 50_000, fresh: bool = False) -> int:
    home = variables.home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    snapshot = home / "emulator_records.json"
    url = variables.WAREHOUSE_URL.value() or variables.default_warehouse_url()
    config = load_config()
    engine = make_engine(url)
    first = fresh or not _tables_exist(engine) or not snapshot.exists()
    if first:
        print(f"Creating sample data in {redacted(url)}: {accounts:,} accounts, {visitors:,} visitors ...")
        create_sample_tables(engine, accounts, visitors)
        _forget_state(engine, config)
        snapshot.unlink(missing_ok=True)
    else:
        changed = _change_some_accounts(engine)
        print(f"Second run: {changed} accounts changed in the warehouse since the last demo run.")

    emulator = demo_emulator(config, engine, snapshot)
    seeded = sum(len(emulator.records(kind)) for kind in ("account", "visitor"))
    engine.dispose()
    dagster_home = _prepare_dagster_home(home)

    with EmulatorServer(emulator) as server:
        os.environ["PENDO_BASE_URL"] = server.base_url
        os.environ["PENDO_INTEGRATION_KEY"] = emulator.settings.integration_key
        print(
            f"Pendo emulator at {server.base_url}, seeded with {seeded:,} ids (every 50th left out, "
            "to show 'missing'). Dagster home: " + str(dagster_home)
        )
        from pendo_sync.dagster.build import OBSERVE_JOB, build_definitions

        defs = build_definitions(config)
        info = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # not Dagster's DEBUG events
        with dg.DagsterInstance.get() as instance:
            # The warehouse, observed (the UI's warehouse assets then say when), then both syncs.
            defs.resolve_job_def(OBSERVE_JOB).execute_in_process(instance=instance, run_config=info)
            result = defs.resolve_job_def("sync_all").execute_in_process(
                instance=instance, raise_on_error=False, run_config=info
            )
        snapshot.write_text(json.dumps(emulator.snapshot()))
        stats = emulator.stats()

    print(f"\nDagster run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        assert mat is not None
        m = {k: v.value for k, v in mat.metadata.items()}
        print(
            f"  {mat.asset_key.to_user_string():<16} read {m['rows_read']:>7,}  sent {m['sent']:>7,}  "
            f"updated {m['updated']:>7,}  missing {m['missing']:>5,}  rejected {m['rejected']:>4,}  "
            f"{m['records_per_second']:>9,.0f} rec/s  ({m['slice']})"
        )
    print(f"  emulator received {stats['write_calls']:,} write calls, {stats['records_received']:,} records")
    for asset, row in _invalid_reasons(result):
        print(
            f"  {asset}: {row['count']:,} rows rejected as invalid, {row['reason']}: the demo's deliberate bad "
            "values (survey answers that are not numbers). They stay rejected, and every run tries them again, "
            "until the warehouse holds numbers."
        )
    print("\nSee it in the UI: make dev  (then open http://127.0.0.1:3000)")
    return 0 if result.success else 1


def _invalid_reasons(result: dg.ExecuteInProcessResult) -> list[tuple[str, dict[str, Any]]]:
    """(asset, reason row) for each group of invalid rejects the run's materializations report."""
    found: list[tuple[str, dict[str, Any]]] = []
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        table = mat.metadata.get("reject_reasons") if mat is not None else None
        if mat is None or not isinstance(table, dg.TableMetadataValue):
            continue
        found += [
            (mat.asset_key.to_user_string(), dict(r.data))
            for r in table.records
            if r.data["kind"] == "invalid"
        ]
    return found


def run_dev(port: int = 8765) -> int:
    """`make dev`: sample data if missing, the emulator on the port the default resources expect, and
    `dg dev` (the Dagster UI and daemon) on the same embedded defaults, until interrupted."""
    home = variables.home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    snapshot = home / "emulator_records.json"
    config = load_config()
    url = variables.WAREHOUSE_URL.value() or variables.default_warehouse_url()
    engine = make_engine(url)
    if not _tables_exist(engine):
        create_sample_tables(engine)
    emulator = demo_emulator(config, engine, snapshot)
    engine.dispose()
    dagster_home = _prepare_dagster_home(home)
    project = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PENDO_SYNC_HOME=str(home), DAGSTER_HOME=str(dagster_home), VIRTUAL_ENV=sys.prefix)
    with EmulatorServer(emulator, port=port) as server:
        env.setdefault(variables.PENDO_BASE_URL.name, server.base_url)  # where Dagster's resources call Pendo
        print(f"Pendo emulator at {server.base_url}; starting the Dagster UI on http://127.0.0.1:3000")
        try:
            return subprocess.call([str(Path(sys.executable).parent / "dg"), "dev"], cwd=project, env=env)
        except KeyboardInterrupt:
            return 0
        finally:
            snapshot.write_text(json.dumps(emulator.snapshot()))


DEMO_LATENCY = EmulatorSettings(fixed_latency_s=0.02, per_record_latency_s=0.000_02)


def demo_emulator(
    config: ProjectConfig, engine: Engine | None, snapshot: Path, settings: EmulatorSettings = DEMO_LATENCY
) -> Emulator:
    """The emulator as the demo has it: every mapped field, the warehouse's ids but every 50th (to show
    'missing'), a latency of 20 ms a call, and the records Pendo held when it last stopped."""
    emulator = Emulator(dataclasses.replace(settings))
    if engine is None:
        add_fields(emulator, config)
    else:
        seed_emulator(emulator, config, engine, absent_every=50)
    if snapshot.exists():
        emulator.restore(json.loads(snapshot.read_text()))
    return emulator


def serve_demo_emulator(
    settings: EmulatorSettings, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """`pendo-sync emulator` without --seed: the demo's fields, and its ids and records where `make demo`
    left a warehouse, so `pendo-sync check` and `run` work against it."""
    config = load_config()
    home = variables.home().resolve()
    url = variables.WAREHOUSE_URL.value() or variables.default_warehouse_url()
    engine = make_engine(url) if url.startswith("duckdb:") and (home / "warehouse.duckdb").exists() else None
    if engine is not None and not _tables_exist(engine):
        engine = None
    emulator = demo_emulator(config, engine, home / "emulator_records.json", settings)
    if engine is not None:
        engine.dispose()
    ids = sum(len(emulator.records(kind)) for kind in ("account", "visitor"))
    where = f"the demo warehouse's {ids:,} ids" if ids else "no ids yet (run make demo for sample data)"

    def announce(bound: int) -> None:  # once the port is bound
        if ready is not None:
            ready(bound)
        print(f"Serving the demo's fields and {where}.", file=sys.stderr)

    serve(emulator, host, port, announce)
