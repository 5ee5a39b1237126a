"""Operator jobs: revert a sync's state to an earlier version from the UI (run config), like
`pendo-sync state revert SYNC --to VERSION --yes`."""

import dagster as dg

from pendo_sync.dagster.resources import StateResource, WarehouseResource


class RevertConfig(dg.Config):
    sync: str
    to_version: int


@dg.op(
    description="Forget every row confirmed after the version and restore its cursor; the next run resends."
)
def revert_state(
    context: dg.OpExecutionContext,
    config: RevertConfig,
    pendo_sync_warehouse: WarehouseResource,
    pendo_sync_state: StateResource,
) -> None:
    store = pendo_sync_state.store(pendo_sync_warehouse)
    store.ensure_schema()
    forgotten = store.versions.revert_plan(config.sync, config.to_version)
    reverted = store.versions.revert(config.sync, config.to_version, run_id=context.run.run_id)
    context.log.info(
        f"reverted {config.sync} to version {config.to_version}: {forgotten} rows will be resent"
    )
    context.log_event(
        dg.AssetObservation(
            dg.AssetKey(["pendo", config.sync]),
            metadata={
                "reverted_to_version": config.to_version,
                "forgotten_rows": forgotten,
                "state_version": reverted.version,
                "cursor": str(reverted.cursor),
            },
        )
    )


@dg.job(
    description="Revert a sync's state to an earlier version (run config: sync, to_version). "
    "The next run resends every row confirmed after that version."
)
def revert_sync_state() -> None:
    revert_state()
