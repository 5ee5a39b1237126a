"""The IO manager between a warehouse source and its Pendo assets: it loads the slice of the table that a
run covers (the partition's days, or everything for the live sync) as a handle that reads in chunks,
never the whole table at once. Source assets are observed, not written, so there is no output to store."""

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.defs.resources import WarehouseResource
from pendo_sync.warehouse.slices import Slice, slice_predicate, source_relation, stream_rows


@dataclass
class SourceSlice:
    """The rows of a source a run covers: `window` says which, `chunks()` reads them chunk by chunk."""

    engine: Engine
    window: Slice

    def chunks(self, spec: SyncSpec, chunk_rows: int = 10_000) -> Iterator[Sequence[sa.Row[Any]]]:
        rel = source_relation(spec)
        stmt = sa.select(rel)
        predicate = slice_predicate(rel, spec, self.window)
        if predicate is not None:
            stmt = stmt.where(predicate)
        yield from stream_rows(self.engine, stmt, chunk_rows)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    # Warehouse TIMESTAMP columns carry no zone and hold UTC; compare like with like.
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


class SourceSliceIOManager(dg.ConfigurableIOManager):
    """Loads a SourceSlice for the run's partition window (a day, or a backfilled range) or the whole source."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        raise NotImplementedError("warehouse sources are observed, never written by pendo_sync")

    warehouse: dg.ResourceDependency[WarehouseResource]

    def load_input(self, context: dg.InputContext) -> SourceSlice:
        engine = self.warehouse.engine()
        step = context.step_context
        if step.has_partition_key or step.has_partition_key_range:
            window = step.partition_time_window
            return SourceSlice(engine, Slice("backfill", _naive_utc(window.start), _naive_utc(window.end)))
        return SourceSlice(engine, Slice("full"))
