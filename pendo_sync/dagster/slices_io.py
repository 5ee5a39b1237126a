"""The IO manager between a sync's source and its Pendo assets: it loads the slice of the source a run
covers, a `SourceSlice` (engine/plan.py): the partition's days for the daily asset, or past the cursor
(or everything, in a full run) for the live one. That slice is what the asset hands the engine, which
reads it in chunks through the change set, never whole. Sources are observed, never written by
pendo_sync, so there is no output to store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import sqlalchemy as sa

from pendo_sync.config import SyncSpec
from pendo_sync.engine.plan import RunOptions, SourceSlice, plan
from pendo_sync.errors import PendoSyncError
from pendo_sync.warehouse.errors import database_failure

SYNC_METADATA = "pendo_sync/sync"  # on the Pendo asset's input: which sync the slice is for


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    # Partition windows are UTC; the cursor codec aligns them with the key's type (plan.py).
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def live_mode(spec: SyncSpec, mode: str) -> str:
    """A live run's mode: run config `auto` is incremental where the sync has a replication key."""
    if mode != "auto":
        return mode
    return "incremental" if spec.replication_key else "full"


class SourceSliceIOManager(dg.IOManager):
    """Loads the SourceSlice of the run for a Pendo asset's `source` input."""

    def __init__(self, specs: dict[str, SyncSpec], resources: Any) -> None:
        self.specs = specs
        self.resources = resources

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        raise NotImplementedError("warehouse sources are observed, never written by pendo_sync")

    def load_input(self, context: dg.InputContext) -> SourceSlice:
        spec = self.specs[str(context.definition_metadata[SYNC_METADATA])]
        step = context.step_context
        config = step.op_config or {}
        options = RunOptions(full_refresh=bool(config.get("full_refresh", False)), run_id=step.run_id)
        if step.has_partition_key or step.has_partition_key_range:
            window = step.partition_time_window
            options.mode, options.window = "backfill", (_naive_utc(window.start), _naive_utc(window.end))
        else:
            options.mode = live_mode(spec, str(config.get("mode", "auto")))
        warehouse = self.resources.pendo_sync_warehouse
        try:
            return plan(spec, warehouse.engine(), self.resources.pendo_sync_state.store(warehouse), options)
        except PendoSyncError as exc:
            raise dg.Failure(description=str(exc)) from None
        except sa.exc.DBAPIError as exc:
            failure = database_failure(exc, spec.name, "planning the run", bool(spec.query))
            raise dg.Failure(description=str(failure)) from None


def source_slices(specs: list[SyncSpec]) -> dg.IOManagerDefinition:
    """The IO manager for these syncs' Pendo assets (resource key `pendo_sync_slices`)."""
    by_name = {spec.name: spec for spec in specs}

    @dg.io_manager(required_resource_keys={"pendo_sync_warehouse", "pendo_sync_state"})
    def manager(context: dg.InitResourceContext) -> SourceSliceIOManager:
        return SourceSliceIOManager(by_name, context.resources)

    return manager
