"""Jobs and schedules per sync: incremental on a cron (default every 15 minutes) and a nightly full run that
catches deletes. Schedules start STOPPED on a fresh install: turn them on in the UI once the config and
the Pendo key are right (README: Operating)."""

from __future__ import annotations

import dagster as dg

from pendo_sync.config import SyncSpec
from pendo_sync.dagster.assets import SYNC_TAG, pendo_key, sync_run_config


def sync_job(spec: SyncSpec) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"sync_{spec.name}",
        selection=dg.AssetSelection.assets(pendo_key(spec)),
        description=f"The live sync {spec.name}: Pendo {spec.kind} fields from {spec.source_label}.",
        tags={SYNC_TAG: spec.name},
    )


def sync_schedules(spec: SyncSpec, job: dg.UnresolvedAssetJobDefinition) -> list[dg.ScheduleDefinition]:
    full = dg.ScheduleDefinition(
        name=f"{spec.name}_nightly_full",
        job=job,
        cron_schedule=spec.full_cron,
        run_config=sync_run_config(spec, "full"),
        description=f"Full reconcile of {spec.name}: every row diffed against the ledger; deletes handled "
        f"({spec.on_delete}).",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    if not spec.replication_key:
        return [full]
    incremental = dg.ScheduleDefinition(
        name=f"{spec.name}_incremental",
        job=job,
        cron_schedule=spec.incremental_cron,
        run_config=sync_run_config(spec, "incremental"),
        description=f"Incremental sync of {spec.name}: rows past the cursor on {spec.replication_key}, with "
        f"a {spec.lookback_seconds}s look-back.",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return [incremental, full]
