"""The Dagster code location: Definitions built from the sync config (PENDO_SYNC_CONFIG, or the demo)."""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from pendo_sync.config import ProjectConfig, load_config
from pendo_sync.defs.alerts import alerts_from_env
from pendo_sync.defs.assets import build_daily_asset, build_pendo_asset, build_source_asset, pendo_key
from pendo_sync.defs.aws import archive_from_env
from pendo_sync.defs.checks import build_checks
from pendo_sync.defs.failure_sensor import build_run_failure_sensor
from pendo_sync.defs.jobs import revert_sync_state
from pendo_sync.defs.resources import build_resources
from pendo_sync.defs.schedules import sync_job, sync_schedules
from pendo_sync.defs.sensors import build_drift_sensor, build_new_rows_sensor
from pendo_sync.defs.slices_io import SourceSliceIOManager

# observable_source_asset and backfill_policy are marked beta; they are the documented way to do this.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(config: ProjectConfig | None = None) -> dg.Definitions:
    """Everything Dagster shows for a config: assets, jobs, and the resources they run with."""
    config = config or load_config()
    sources: dict[dg.AssetKey, dg.SourceAsset] = {}
    assets: list[dg.AssetsDefinition] = []
    for spec in config.syncs:
        source = build_source_asset(spec)
        sources.setdefault(source.key, source)
        assets.append(build_pendo_asset(spec, config.delivery))
        if spec.replication_key:
            assets.append(build_daily_asset(spec, config.delivery))
    jobs: list[object] = [revert_sync_state]
    schedules: list[dg.ScheduleDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    for spec in config.syncs:
        job = sync_job(spec)
        jobs.append(job)
        schedules += sync_schedules(spec, job)
        checks += build_checks(spec)
    # "Source schema unchanged": each Pendo materialization carries the synced columns and their types.
    checks += dg.build_column_schema_change_checks(assets=[a.key for a in assets])
    sensors = [build_drift_sensor(config), build_run_failure_sensor()]
    new_rows = build_new_rows_sensor(config)
    if new_rows:
        sensors.append(new_rows)
    sync_all = dg.define_asset_job(
        "sync_all",
        selection=dg.AssetSelection.assets(*[pendo_key(s) for s in config.syncs]),
        description="Every live sync: incremental past each cursor (full where a sync has no replication key).",
    )
    resources: dict[str, Any] = build_resources(config.state_schema)
    resources["source_slices"] = SourceSliceIOManager(warehouse=resources["warehouse"])
    resources["alerts"] = alerts_from_env()
    resources["archive"] = archive_from_env()
    return dg.Definitions(
        assets=[*sources.values(), *assets],
        asset_checks=checks,
        jobs=[sync_all, *jobs],  # type: ignore[list-item]
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )


defs = build_definitions()
