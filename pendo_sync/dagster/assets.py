"""Assets built from the sync config: an observed asset per warehouse source, and per sync a Pendo asset
(the live sync: full or incremental) and, where the sync has a replication key, a daily-partitioned Pendo
asset whose partitions re-sync exactly the rows of those days (backfills, new-row sensor)."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg

from pendo_sync.config import DeliverySettings, SyncSpec
from pendo_sync.dagster.alerts import Alert, AlertsResource
from pendo_sync.dagster.aws import RunArchiveResource
from pendo_sync.dagster.resources import PendoResource, StateResource, WarehouseResource
from pendo_sync.dagster.slices_io import SYNC_METADATA
from pendo_sync.engine.plan import RunOptions, SourceSlice
from pendo_sync.engine.run import SyncOutcome, run_sync
from pendo_sync.errors import PendoSyncError
from pendo_sync.warehouse.catalog import describe_table
from pendo_sync.warehouse.slices import Slice, count_rows, max_replication_key

REJECT_CHECK = "reject_share_below_threshold"
SYNC_TAG = "pendo_sync/sync"  # on every run of one sync: the run list filters by it, alerts name it


class SyncRunConfig(dg.Config):
    """Run config of a sync: how to read and whether to trust the ledger."""

    mode: str = "auto"  # auto | full | incremental  (auto: incremental when the sync has a replication key)
    full_refresh: bool = False  # ignore the ledger and resend every row of the slice


def sync_run_config(spec: SyncSpec, mode: str) -> dict[str, Any]:
    """Run config that runs the live asset of a sync in `mode` (schedules, the drift sensor's re-sync)."""
    return {"ops": {pendo_key(spec).to_python_identifier(): {"config": {"mode": mode}}}}


def source_key(spec: SyncSpec) -> dg.AssetKey:
    """The source in the asset graph: the team's own asset (`upstream`, a dbt model's key, say), or the
    observed `warehouse/<table>` asset pendo_sync makes for it."""
    if spec.upstream:
        return dg.AssetKey(list(spec.upstream))
    name = spec.table.rpartition(".")[2] if spec.table else f"{spec.name}_query"
    return dg.AssetKey(["warehouse", name])


def pendo_key(spec: SyncSpec) -> dg.AssetKey:
    return dg.AssetKey(["pendo", spec.name])


def daily_key(spec: SyncSpec) -> dg.AssetKey:
    return dg.AssetKey(["pendo", f"{spec.name}_daily"])


def daily_partitions(spec: SyncSpec) -> dg.DailyPartitionsDefinition:
    start = spec.partition_start or (dt.date.today() - dt.timedelta(days=90)).isoformat()
    return dg.DailyPartitionsDefinition(start_date=start, end_offset=1)


def column_schema(columns: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, data_type or "unknown") for name, data_type in columns.items()]
    )


def build_source_asset(spec: SyncSpec) -> dg.SourceAsset:
    """The warehouse table (or query) a sync reads, observed for its schema, size and newest key."""
    key = source_key(spec)

    @dg.observable_source_asset(
        key=key,
        group_name="warehouse",
        description=f"Warehouse source {spec.source_label} (observed: column schema, row count, newest key; "
        f"on {spec.incremental_cron}, by the pendo_sync_automation sensor).",
        automation_condition=dg.AutomationCondition.on_cron(spec.incremental_cron),
    )
    def observe(pendo_sync_warehouse: WarehouseResource) -> dg.ObserveResult:
        engine = pendo_sync_warehouse.engine()
        metadata: dict[str, Any] = {"row_count": dg.MetadataValue.int(count_rows(engine, spec))}
        version = ""
        if spec.table:
            table = describe_table(engine, spec.table)
            if table is not None:
                metadata["dagster/column_schema"] = column_schema(
                    {c.name: c.data_type for c in table.columns}
                )
                version = table.fingerprint()[:16]
        if spec.replication_key:
            newest = max_replication_key(engine, spec, Slice("full"))
            metadata["newest_" + spec.replication_key] = dg.MetadataValue.text(str(newest))
            version += f":{newest}"
        return dg.ObserveResult(
            metadata=metadata, data_version=dg.DataVersion(f"{version}:{metadata['row_count'].value}")
        )

    return observe


def outcome_metadata(outcome: SyncOutcome) -> dict[str, Any]:
    """Numbers the UI plots over time (every figure of RunCounts), and a sample of rejects of each kind."""
    meta: dict[str, Any] = {
        "status": dg.MetadataValue.text(outcome.status),
        "slice": dg.MetadataValue.text(outcome.slice),
        "state_version": dg.MetadataValue.int(outcome.version),
        "cursor": dg.MetadataValue.text(str(outcome.cursor)),
        "duration_seconds": dg.MetadataValue.float(round(outcome.duration_seconds, 3)),
        "records_per_second": dg.MetadataValue.float(round(outcome.records_per_second, 1)),
        "reject_share": dg.MetadataValue.float(round(outcome.reject_share, 4)),
    }
    for name, value in outcome.counts.as_dict().items():
        meta[name] = dg.MetadataValue.int(value)
    sample = [r for rejects in outcome.reject_sample.values() for r in rejects]
    if sample:
        meta["rejected_sample"] = dg.MetadataValue.table(
            records=[dg.TableRecord({"id": r.record_id, "kind": r.kind, "reason": r.reason}) for r in sample],
            schema=dg.TableSchema(
                columns=[dg.TableColumn("id"), dg.TableColumn("kind"), dg.TableColumn("reason")]
            ),
        )
    if outcome.note:
        meta["note"] = dg.MetadataValue.text(outcome.note)
    return meta


@dataclass(frozen=True)
class Resources:
    """The resources a sync asset runs with (keys pendo_sync_*: they do not clash with a team's own)."""

    warehouse: WarehouseResource
    pendo: PendoResource
    state: StateResource
    alerts: AlertsResource
    archive: RunArchiveResource


def execute_sync(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    delivery: DeliverySettings,
    resources: Resources,
    options: RunOptions,
    source: SourceSlice,
) -> dg.MaterializeResult:
    """Run the engine (its preflight first: nothing is sent on a bad config) and report its outcome. A
    failure is the engine's own one-line message; a run Pendo refused every row of fails with its figures."""
    tag_run(context, spec)
    options.progress = lambda p: context.log.info(f"sync {spec.name}: {p.line()}")
    warehouse, pendo, alerts = resources.warehouse, resources.pendo, resources.alerts
    store = resources.state.store(warehouse)
    try:
        outcome = run_sync(
            spec, warehouse.engine(), store, lambda: pendo.client(delivery), delivery, options, source
        )
    except PendoSyncError as exc:
        raise dg.Failure(description=str(exc)) from None
    counts = outcome.counts
    context.log.info(
        f"sync {spec.name} {outcome.status}: {counts.sent} sent, {counts.missing} missing, "
        f"{counts.rejected} rejected in {outcome.duration_seconds:.1f}s (state version {outcome.version})"
    )
    metadata = outcome_metadata(outcome)
    metadata["dagster/column_schema"] = synced_schema(spec, outcome.columns)
    reasons = store.rejects.reasons(spec.name, run_id=context.run.run_id)
    if reasons:
        metadata["reject_reasons"] = reason_table(reasons)
    metadata.update(resources.archive.write_run(context, spec.name, outcome, store))
    if outcome.status == "failed":
        first = next((r.reason for r in outcome.reject_sample.get("error", [])), "")
        raise dg.Failure(
            description=f"sync {spec.name!r} failed: Pendo refused or failed every row it was sent "
            f"({counts.errors:,} errors, the first: {first}); every row is retried by the next run",
            metadata=metadata,
        )
    share_ok = outcome.reject_share <= spec.max_reject_share
    if not share_ok:
        alerts.send(
            Alert(
                title=f"pendo_sync: {spec.name} rejected {outcome.reject_share:.1%} of rows",
                text=f"Sync: {spec.name}\nRun: {context.run.run_id}\nRejected share {outcome.reject_share:.2%} is above "
                f"{spec.max_reject_share:.2%}: {counts.missing} missing, {counts.rejected} rejected. "
                f"Reasons: pendo-sync state show {spec.name}",
                sync=spec.name,
                run_id=context.run.run_id,
                link=alerts.run_link(context.run.run_id),
            )
        )
    check = dg.AssetCheckResult(
        check_name=REJECT_CHECK,
        passed=share_ok,
        description=f"rejected share {outcome.reject_share:.2%} (threshold {spec.max_reject_share:.2%})",
        metadata={
            "reject_share": outcome.reject_share,
            "missing": counts.missing,
            "rejected": counts.rejected,
        },
        severity=dg.AssetCheckSeverity.ERROR if spec.blocking_reject_check else dg.AssetCheckSeverity.WARN,
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def tag_run(context: dg.AssetExecutionContext, spec: SyncSpec) -> None:
    """A run launched from the asset page (not from the sync's job, schedule or sensors) has no sync tag:
    add it when the run is of this sync only. The one-writer-per-sync limit does not depend on it: that is
    the sync's pool, which dagster.yaml enforces per run for every run however it was launched."""
    run = context.run
    if SYNC_TAG in run.tags:
        return
    synced = {key for key in run.asset_selection or () if key.path[0] == "pendo"}
    if synced and synced <= {pendo_key(spec), daily_key(spec)}:
        context.instance.add_run_tags(run.run_id, {SYNC_TAG: spec.name})


def reason_table(reasons: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """The run's rejects grouped: kind, reason, how many rows, example ids (every kind it met)."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "kind": r["kind"],
                    "reason": r["reason"],
                    "count": r["count"],
                    "examples": ", ".join(r["examples"]),
                }
            )
            for r in reasons
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("kind"),
                dg.TableColumn("reason"),
                dg.TableColumn("count", "int"),
                dg.TableColumn("examples"),
            ]
        ),
    )


def synced_schema(spec: SyncSpec, columns: dict[str, str]) -> dg.TableSchema:
    """The Pendo asset seen as a table: the id and each field, typed with where it comes from, so the
    column-schema change check sees a source column change type or a mapping change its Pendo type."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(spec.id_key, f"id <- {spec.id_column} {columns.get(spec.id_column, '')}".strip()),
            *[
                dg.TableColumn(m.field, f"{m.type} <- {m.column} {columns.get(m.column, '')}".strip())
                for m in spec.fields
            ],
        ]
    )


def reject_check(spec: SyncSpec, key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REJECT_CHECK,
        asset=key,
        description=f"Rows rejected or missing in Pendo stay under {spec.max_reject_share:.0%} of the rows sent"
        + (" (blocking: above it the run fails)" if spec.blocking_reject_check else "."),
        blocking=spec.blocking_reject_check,
    )


def build_pendo_asset(spec: SyncSpec, delivery: DeliverySettings) -> dg.AssetsDefinition:
    """The live sync of one source into Pendo: incremental past the cursor, or full with deletes; with the
    sync's automation (after its upstream asset, or on a cron) and freshness policy."""
    return _sync_asset(
        spec,
        delivery,
        pendo_key(spec),
        (spec.description + " " if spec.description else "")
        + f"Pendo {spec.kind} {spec.group} fields synced from {spec.source_label} "
        f"({len(spec.fields)} fields; deletes: {spec.on_delete}).",
        automation=automation_condition(spec),
        freshness=freshness_policy(spec),
    )


def automation_condition(spec: SyncSpec) -> dg.AutomationCondition | None:
    """eager: when the upstream asset is materialized (or observed with newer data); or on a cron tick."""
    if spec.automation is None:
        return None
    kind, expression = spec.automation
    if kind == "eager":
        return dg.AutomationCondition.eager()
    assert expression is not None
    return dg.AutomationCondition.on_cron(expression)


def freshness_policy(spec: SyncSpec) -> dg.FreshnessPolicy | None:
    """Stale in the UI past fail_after (warn_after: a warning first) without a materialization."""
    if spec.freshness is None:
        return None
    fail, warn = spec.freshness
    warn_window = dt.timedelta(seconds=warn) if warn is not None else None
    return dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(seconds=fail), warn_window=warn_window)


def build_daily_asset(spec: SyncSpec, delivery: DeliverySettings) -> dg.AssetsDefinition:
    """Day partitions of the replication key: a partition (or a backfilled range, in one run) re-syncs
    exactly its rows, diffed against the ledger, and never moves the live cursor."""
    return _sync_asset(
        spec,
        delivery,
        daily_key(spec),
        f"Pendo {spec.kind} fields from {spec.source_label}, by day of {spec.replication_key}: "
        "materialize or backfill days to re-sync exactly those rows.",
        partitions=daily_partitions(spec),
    )


def _sync_asset(
    spec: SyncSpec,
    delivery: DeliverySettings,
    key: dg.AssetKey,
    description: str,
    partitions: dg.PartitionsDefinition | None = None,
    automation: dg.AutomationCondition | None = None,
    freshness: dg.FreshnessPolicy | None = None,
) -> dg.AssetsDefinition:
    """A Pendo asset of the sync: its `source` input is the slice the run covers (slices_io.py)."""

    @dg.asset(
        key=key,
        ins={
            "source": dg.AssetIn(
                key=source_key(spec),
                metadata={SYNC_METADATA: spec.name},
                input_manager_key="pendo_sync_slices",
            )
        },
        group_name="pendo",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions else None,
        description=description,
        kinds={"pendo"},
        pool=f"pendo_sync_{spec.name}",
        tags={SYNC_TAG: spec.name},
        check_specs=[reject_check(spec, key)],
        automation_condition=automation,
        freshness_policy=freshness,
    )
    def sync(
        context: dg.AssetExecutionContext,
        config: SyncRunConfig,  # mode and full_refresh: the IO manager plans the slice from them
        source: SourceSlice,
        pendo_sync_warehouse: WarehouseResource,
        pendo_sync_pendo: PendoResource,
        pendo_sync_state: StateResource,
        pendo_sync_alerts: AlertsResource,
        pendo_sync_archive: RunArchiveResource,
    ) -> dg.MaterializeResult:
        options = RunOptions(mode=source.mode, full_refresh=source.full_refresh, run_id=context.run.run_id)
        resources = Resources(
            pendo_sync_warehouse, pendo_sync_pendo, pendo_sync_state, pendo_sync_alerts, pendo_sync_archive
        )
        return execute_sync(context, spec, delivery, resources, options, source)

    return sync
