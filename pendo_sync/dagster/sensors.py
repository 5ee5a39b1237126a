"""Sensors: schema drift (warehouse and Pendo side) and new rows.

Each keeps its state in its Dagster cursor (JSON): the drift sensor each source's column schema and each
sync's Pendo field types; the new-rows sensor the newest replication-key value it has *requested*.
Delivery is the ledger's business, not the cursor's.
"""

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

import dagster as dg

from pendo_sync.config import ProjectConfig, SyncSpec
from pendo_sync.dagster.alerts import Alert, AlertsResource
from pendo_sync.dagster.assets import (
    SYNC_TAG,
    column_schema,
    daily_key,
    daily_partitions,
    pendo_key,
    source_key,
    sync_run_config,
)
from pendo_sync.dagster.drift import schema_diff
from pendo_sync.dagster.resources import PendoResource, WarehouseResource
from pendo_sync.engine.preflight import source_columns
from pendo_sync.state.cursor import decode_cursor, encode_cursor
from pendo_sync.warehouse.errors import WarehouseBusy
from pendo_sync.warehouse.slices import days_with_rows_after


def _mapped_field_types(spec: SyncSpec, schema: dict[str, Any]) -> dict[str, str]:
    fields = schema.get(spec.group) or {}
    out = {}
    for m in spec.fields:
        found = fields.get(m.field)
        out[m.field] = "(missing)" if not found or found.get("isDeleted") else str(found.get("Type", ""))
    return out


def _skipping_a_busy_warehouse(tick: Callable[..., dg.SensorResult]) -> Callable[..., dg.SensorResult]:
    """A tick that finds the DuckDB file held by another process (a run) skips with the reason, keeping
    its cursor, instead of failing when Dagster's sensor timeout ends it; the next tick tries again."""

    @functools.wraps(tick)
    def skipping(context: dg.SensorEvaluationContext, **resources: Any) -> dg.SensorResult:
        try:
            return tick(context, **resources)
        except WarehouseBusy as exc:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"{exc}. The next tick tries again."), cursor=context.cursor
            )

    return skipping


def build_drift_sensor(config: ProjectConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name="pendo_sync_schema_drift",
        description="Watches each source's columns and each sync's Pendo fields. On a change it records an "
        "observation with the new column schema, alerts Slack/SNS with the exact difference, and "
        "re-syncs a sync whose newly appearing column it maps.",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    @_skipping_a_busy_warehouse
    def schema_drift(
        context: dg.SensorEvaluationContext,
        pendo_sync_warehouse: WarehouseResource,
        pendo_sync_pendo: PendoResource,
        pendo_sync_alerts: AlertsResource,
    ) -> dg.SensorResult:
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {"tables": {}, "pendo": {}}
        engine = pendo_sync_warehouse.sensor_engine()
        events: list[dg.AssetObservation] = []
        requests: list[dg.RunRequest] = []
        messages: list[str] = []
        for spec in config.syncs:
            key = source_key(spec).to_user_string()
            columns = source_columns(engine, spec) or {}
            before = cursor["tables"].get(key)
            cursor["tables"][key] = columns
            if before is None or before == columns:
                continue
            diff = schema_diff(before, columns)
            messages.append(f"{key}: " + "; ".join(diff.lines()))
            events.append(
                dg.AssetObservation(
                    source_key(spec),
                    metadata={
                        "dagster/column_schema": column_schema(columns),
                        "drift": dg.MetadataValue.text("; ".join(diff.lines())),
                    },
                )
            )
            newly_mapped = [m.column for m in spec.fields if m.column in diff.added]
            if newly_mapped:
                requests.append(
                    dg.RunRequest(
                        run_key=f"drift-{spec.name}-{hashlib.sha1(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:12]}",
                        asset_selection=[pendo_key(spec)],
                        run_config=sync_run_config(spec, "full"),
                        tags={
                            SYNC_TAG: spec.name,
                            "pendo_sync/reason": "new mapped column " + ", ".join(newly_mapped),
                        },
                    )
                )
        schemas = pendo_sync_pendo.field_schemas({s.kind for s in config.syncs})
        for spec in config.syncs:
            fields = _mapped_field_types(spec, schemas[spec.kind])
            before = cursor["pendo"].get(spec.name)
            cursor["pendo"][spec.name] = fields
            if before is not None and before != fields:
                messages.append(
                    f"Pendo {spec.kind} {spec.group} fields of sync {spec.name}: "
                    + "; ".join(schema_diff(before, fields).lines()).replace("column", "field")
                )
        if messages:
            pendo_sync_alerts.send(Alert(title="pendo_sync: schema drift", text="\n".join(messages)))
            context.log.warning("schema drift: " + " | ".join(messages))
        return dg.SensorResult(
            run_requests=requests, cursor=json.dumps(cursor, sort_keys=True), asset_events=events
        )

    return schema_drift


def build_new_rows_sensor(config: ProjectConfig) -> dg.SensorDefinition | None:
    synced = [s for s in config.syncs if s.replication_key]
    if not synced:
        return None

    @dg.sensor(
        name="pendo_sync_new_rows",
        description="Requests a run of each day partition that received rows past the newest replication-key "
        "value already requested. On its first tick it only records where the tables stand.",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        asset_selection=[daily_key(s) for s in synced],
    )
    @_skipping_a_busy_warehouse
    def new_rows(
        context: dg.SensorEvaluationContext, pendo_sync_warehouse: WarehouseResource
    ) -> dg.SensorResult:
        cursor: dict[str, list[str | None]] = json.loads(context.cursor) if context.cursor else {}
        requests = []
        for spec in synced:
            seen = cursor.get(spec.name)
            after = decode_cursor(*seen) if seen else None
            days, newest = days_with_rows_after(pendo_sync_warehouse.sensor_engine(), spec, after)
            cursor[spec.name] = list(encode_cursor(newest))
            if seen is None:
                continue  # first tick: the baseline, not a flood of history
            valid = set(daily_partitions(spec).get_partition_keys(dynamic_partitions_store=context.instance))
            for day in days:
                key = day.isoformat()
                if key in valid:
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{spec.name}-{key}-{encode_cursor(newest)[0]}",
                            partition_key=key,
                            asset_selection=[daily_key(spec)],
                            tags={SYNC_TAG: spec.name},
                        )
                    )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

    return new_rows
