"""Assets built from the sync config: an observed asset per warehouse source, and per sync a Pendo asset
(the live sync: full or incremental) and, where the sync has a replication key, a daily-partitioned Pendo
asset whose partitions re-sync exactly the rows of those days (backfills, new-row sensor)."""

import datetime as dt
from typing import Any

import dagster as dg

from pendo_sync.config import DeliverySettings, SyncSpec
from pendo_sync.defs.alerts import Alert, AlertsResource
from pendo_sync.defs.aws import RunArchiveResource
from pendo_sync.defs.resources import PendoResource, StateResource, WarehouseResource
from pendo_sync.defs.slices_io import SourceSlice
from pendo_sync.engine.run import RunOptions, SyncOutcome, run_sync
from pendo_sync.errors import PendoSyncError
from pendo_sync.warehouse.catalog import describe_table
from pendo_sync.warehouse.slices import Slice, count_rows, max_replication_key

REJECT_CHECK = "reject_share_below_threshold"


class SyncRunConfig(dg.Config):
    """Run config of a sync: how to read and whether to trust the ledger."""

    mode: str = "auto"  # auto | full | incremental  (auto: incremental when the sync has a replication key)
    full_refresh: bool = False  # ignore the ledger and resend every row of the slice


def sync_run_config(spec: SyncSpec, mode: str) -> dict[str, Any]:
    """Run config that runs the live asset of a sync in `mode` (schedules, the drift sensor's re-sync)."""
    return {"ops": {pendo_key(spec).to_python_identifier(): {"config": {"mode": mode}}}}


def source_key(spec: SyncSpec) -> dg.AssetKey:
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
        description=f"Warehouse source {spec.source_label} (observed: column schema, row count, newest key).",
        io_manager_key="source_slices",
    )
    def observe(warehouse: WarehouseResource) -> dg.ObserveResult:
        engine = warehouse.engine()
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


def execute_sync(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    delivery: DeliverySettings,
    warehouse: WarehouseResource,
    pendo: PendoResource,
    state: StateResource,
    alerts: AlertsResource,
    options: RunOptions,
    archive: RunArchiveResource,
) -> dg.MaterializeResult:
    """Run the engine (its preflight first: nothing is sent on a bad config) and report its outcome. A
    failure is the engine's own one-line message; a run Pendo refused every row of fails with its figures."""
    options.progress = lambda p: context.log.info(f"sync {spec.name}: {p.line()}")
    store = state.store(warehouse)
    try:
        outcome = run_sync(spec, warehouse.engine(), store, lambda: pendo.client(delivery), delivery, options)
    except PendoSyncError as exc:
        raise dg.Failure(description=str(exc)) from None
    counts = outcome.counts
    context.log.info(
        f"sync {spec.name} {outcome.status}: {counts.sent} sent, {counts.missing} missing, "
        f"{counts.rejected} rejected in {outcome.duration_seconds:.1f}s (state version {outcome.version})"
    )
    metadata = outcome_metadata(outcome)
    metadata["dagster/column_schema"] = synced_schema(spec, outcome.columns)
    metadata.update(archive.write_run(context, spec.name, outcome, store))
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
    """The live sync of one source into Pendo: incremental past the cursor, or full with deletes."""

    @dg.asset(
        key=pendo_key(spec),
        ins={"source": dg.AssetIn(key=source_key(spec))},
        group_name="pendo",
        description=(spec.description + " " if spec.description else "")
        + f"Pendo {spec.kind} {spec.group} fields synced from {spec.source_label} "
        f"({len(spec.fields)} fields; deletes: {spec.on_delete}).",
        kinds={"pendo"},
        pool=f"pendo_sync_{spec.name}",
        tags={"pendo_sync/sync": spec.name},
        check_specs=[reject_check(spec, pendo_key(spec))],
    )
    def live_sync(
        context: dg.AssetExecutionContext,
        config: SyncRunConfig,
        source: SourceSlice,
        warehouse: WarehouseResource,
        pendo: PendoResource,
        state: StateResource,
        alerts: AlertsResource,
        archive: RunArchiveResource,
    ) -> dg.MaterializeResult:
        mode = config.mode if config.mode != "auto" else ("incremental" if spec.replication_key else "full")
        options = RunOptions(mode=mode, full_refresh=config.full_refresh, run_id=context.run.run_id)
        return execute_sync(context, spec, delivery, warehouse, pendo, state, alerts, options, archive)

    return live_sync


def build_daily_asset(spec: SyncSpec, delivery: DeliverySettings) -> dg.AssetsDefinition:
    """Day partitions of the replication key: a partition (or a backfilled range, in one run) re-syncs
    exactly its rows, diffed against the ledger, and never moves the live cursor."""

    @dg.asset(
        key=daily_key(spec),
        ins={"source": dg.AssetIn(key=source_key(spec))},
        group_name="pendo",
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Pendo {spec.kind} fields from {spec.source_label}, by day of {spec.replication_key}: "
        "materialize or backfill days to re-sync exactly those rows.",
        kinds={"pendo"},
        pool=f"pendo_sync_{spec.name}",
        tags={"pendo_sync/sync": spec.name},
        check_specs=[reject_check(spec, daily_key(spec))],
    )
    def daily_sync(
        context: dg.AssetExecutionContext,
        config: SyncRunConfig,
        source: SourceSlice,
        warehouse: WarehouseResource,
        pendo: PendoResource,
        state: StateResource,
        alerts: AlertsResource,
        archive: RunArchiveResource,
    ) -> dg.MaterializeResult:
        window = (source.window.lower, source.window.upper)
        options = RunOptions(
            mode="backfill", window=window, full_refresh=config.full_refresh, run_id=context.run.run_id
        )
        return execute_sync(context, spec, delivery, warehouse, pendo, state, alerts, options, archive)

    return daily_sync
