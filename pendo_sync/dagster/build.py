"""Everything Dagster shows for a sync config: assets (an observed source asset where the sync names no
upstream asset, the live and daily Pendo assets), checks, jobs, schedules, sensors, and the resources
they run with. PendoSyncComponent.build_defs returns this; so does the standalone project."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import dagster as dg

from pendo_sync import variables
from pendo_sync.config import ProjectConfig
from pendo_sync.dagster.alerts import alerts_from_env
from pendo_sync.dagster.assets import build_daily_asset, build_pendo_asset, build_source_asset, pendo_key
from pendo_sync.dagster.aws import archive_from_env
from pendo_sync.dagster.checks import build_checks
from pendo_sync.dagster.failure_sensor import build_run_failure_sensor
from pendo_sync.dagster.jobs import revert_sync_state
from pendo_sync.dagster.resources import build_resources
from pendo_sync.dagster.schedules import sync_job, sync_schedules
from pendo_sync.dagster.sensors import build_drift_sensor, build_new_rows_sensor
from pendo_sync.dagster.slices_io import source_slices

# observable_source_asset and backfill_policy are marked beta; they are the documented way to do this.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
AUTOMATION_SENSOR = "pendo_sync_automation"
OBSERVE_JOB = "observe_sources"


def build_definitions(config: ProjectConfig, define_resources: bool = True) -> dg.Definitions:
    """The definitions of the syncs of `config`; with define_resources False the project supplies the
    pendo_sync_* resources itself (its own WarehouseResource, say)."""
    sources: dict[dg.AssetKey, dg.SourceAsset] = {}
    assets: list[dg.AssetsDefinition] = []
    for spec in config.syncs:
        if not spec.upstream:
            source = build_source_asset(spec)
            sources.setdefault(source.key, source)
        assets.append(build_pendo_asset(spec, config.delivery))
        if spec.replication_key:
            assets.append(build_daily_asset(spec, config.delivery))
    jobs: list[Any] = [revert_sync_state]
    schedules: list[dg.ScheduleDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    for spec in config.syncs:
        job = sync_job(spec)
        jobs.append(job)
        schedules += sync_schedules(spec, job)
        checks += build_checks(spec)
    # "Source schema unchanged": each Pendo materialization carries the synced columns and their types.
    checks += dg.build_column_schema_change_checks(assets=[a.key for a in assets])
    sensors: list[Any] = [build_drift_sensor(config), build_run_failure_sensor()]
    new_rows = build_new_rows_sensor(config)
    if new_rows:
        sensors.append(new_rows)
    # On by default: the observations of the warehouse sources (so none is "never observed"), and the syncs
    # that ask for automation, without a toggle in the UI.
    automated = [*sources, *[pendo_key(s) for s in config.syncs if s.automation]]
    if automated:
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                AUTOMATION_SENSOR,
                target=dg.AssetSelection.assets(*automated),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            )
        )
    if sources:
        jobs.append(
            dg.define_asset_job(
                OBSERVE_JOB,
                selection=dg.AssetSelection.assets(*sources),
                description="Observe the warehouse sources now: column schema, row count, newest key.",
            )
        )
    sync_all = dg.define_asset_job(
        "sync_all",
        selection=dg.AssetSelection.assets(*[pendo_key(s) for s in config.syncs]),
        description="Every live sync: incremental past each cursor (full where a sync has no replication key).",
    )
    resources: dict[str, Any] = {"pendo_sync_slices": source_slices(list(config.syncs))}
    if define_resources:
        resources.update(shared_resources(config.state_schema, variables.fingerprint()))
    return dg.Definitions(
        assets=[*sources.values(), *assets],
        asset_checks=checks,
        jobs=[sync_all, *jobs],
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )


@functools.cache
def shared_resources(state_schema: str, environment: tuple[Any, ...]) -> dict[str, Any]:
    """The EnvVar-based resources, one set per schema and environment: two component instances share the
    same objects, so Dagster merges their definitions."""
    return {
        **build_resources(state_schema),
        "pendo_sync_alerts": alerts_from_env(),
        "pendo_sync_archive": archive_from_env(),
    }
