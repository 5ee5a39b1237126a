"""One sync run, end to end, on one event loop with one Pendo client: preflight (the source and Pendo's
fields, as `check` has them), the slice, the lock, a state version, the change set delivered (runner.py),
and the version closed with the run's status and cursor.

| status         | cursor moves | what it means                                                 |
|----------------|--------------|---------------------------------------------------------------|
| `complete`     | yes          | every row applied (ids Pendo lacks are reported, not failures) |
| `with_rejects` | yes          | rows rejected; the rejects, not the cursor, hold what is owed  |
| `partial`      | no           | the runtime budget was reached; the next run resumes           |
| `failed`       | no           | an error stopped the run, or Pendo refused every row it got    |
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.config import DeliverySettings, SyncSpec
from pendo_sync.engine.changeset import ChangeSet
from pendo_sync.engine.plan import RunOptions, SourceSlice, plan
from pendo_sync.engine.preflight import PreflightError, pendo_problems
from pendo_sync.engine.runner import Runner
from pendo_sync.errors import PendoSyncError
from pendo_sync.outcome import Reject, RunCounts, final_status
from pendo_sync.pendo.client import PendoClient, PendoError
from pendo_sync.state.store import StateStore
from pendo_sync.state.tables import utcnow
from pendo_sync.warehouse.engines import held_open
from pendo_sync.warehouse.errors import database_failure
from pendo_sync.warehouse.hashes import mapping_digest

log = logging.getLogger("pendo_sync")
STOPPED = (
    "stopped before its end (SIGTERM or Ctrl-C); what Pendo confirmed is kept, the next run sends the rest"
)


@dataclass
class SyncOutcome:
    """What a run did: the figures Dagster shows and the state version it wrote."""

    sync: str
    version: int
    mode: str
    status: str  # see the table above, or "dry-run"
    slice: str
    counts: RunCounts
    duration_seconds: float
    cursor: Any
    reject_sample: dict[str, list[Reject]]  # a few rejects of each kind met
    note: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # the source's columns and database types

    @property
    def records_per_second(self) -> float:
        return self.counts.sent / self.duration_seconds if self.duration_seconds > 0 else 0.0

    @property
    def reject_share(self) -> float:
        return self.counts.reject_share


def run_sync(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    client_factory: Callable[[], PendoClient],
    settings: DeliverySettings,
    options: RunOptions | None = None,
    source: SourceSlice | None = None,
) -> SyncOutcome:
    """Run one sync over `source` (planned from `options` when not given: plan.py); returns its outcome.
    Raises a PendoSyncError (one line for a person) when the run cannot start (preflight, Pendo or the
    warehouse unreachable) or stops on an error, after recording the failed version."""
    options = options or RunOptions()
    with fewer_collections(), held_open(warehouse), held_open(state.engine):
        return asyncio.run(_run(spec, warehouse, state, client_factory, settings, options, source))


# A run allocates a few containers per row (its tuple, the record, the values); each collection of the
# oldest generation used to traverse everything imported before the run as well. During a run, what
# existed before it is left out of collections (gc.freeze). The thresholds stay Python's: raising the
# young one to 50,000 saved 3 to 5% of the sync's CPU, but left the reference cycles of each call
# (httpx and asyncio objects holding the batch's body) to pile up, and peak RSS grew with the table
# (a 1,000,000-row full sync from PostgreSQL peaked at 414 MiB; bench/run.py, 2026-12-02).
@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _run(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    client_factory: Callable[[], PendoClient],
    settings: DeliverySettings,
    options: RunOptions,
    source: SourceSlice | None,
) -> SyncOutcome:
    started = time.monotonic()
    async with client_factory() as client:
        try:
            schema = await client.field_schema(spec.kind)
        except PendoError as exc:
            raise type(exc)(f"sync {spec.name!r}: {exc}") from None
        try:
            problems: list[str] = []
            try:  # the warehouse's half of the preflight
                planned = source or plan(spec, warehouse, state, options)
                columns = planned.source.columns
            except PreflightError as exc:
                problems += exc.problems
                columns = exc.source.columns if exc.source else None
            problems += pendo_problems(spec, schema, columns)
            if problems:  # every problem of the sync in one round: the warehouse's and Pendo's
                raise PreflightError(problems)
            if options.dry_run:
                changes = _changes(spec, warehouse, state, planned)
                counts = RunCounts(rows_read=changes.count_changed(), duplicate=changes.duplicated_ids)
                return SyncOutcome(
                    spec.name, 0, options.mode, "dry-run", planned.describe(), counts, time.monotonic() - started,
                    None, {}, columns=planned.source.columns or {},
                )  # fmt: skip
            with state.lock(spec.name, options.run_id):
                return await _locked_run(spec, warehouse, state, client, settings, options, planned, started)
        except sa.exc.DBAPIError as exc:
            raise database_failure(exc, spec.name, "planning the run", bool(spec.query)) from None


async def _locked_run(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    client: PendoClient,
    settings: DeliverySettings,
    options: RunOptions,
    planned: SourceSlice,
    started: float,
) -> SyncOutcome:
    state.versions.abandon_running(spec.name)
    previous = state.versions.current_cursor(spec.name)
    if previous != planned.previous:  # another run moved the cursor since the slice was planned
        planned = plan(spec, warehouse, state, options)
    changes = _changes(spec, warehouse, state, planned)
    if spec.existing_ids_only:
        await _fetch_pendo_ids(spec, state, client)
    version = state.versions.begin(
        spec.name,
        options.run_id,
        planned.mode,
        previous,
        mapping_digest(spec),
        planned.refresh_since,
        refresh=planned.full_refresh and planned.mode != "backfill",
    )
    runner = Runner(
        spec,
        changes,
        state,
        version,
        options.run_id,
        settings,
        planned.window.mode == "full",
        options.progress,
        options.progress_every_seconds,
    )
    try:
        await runner.run(client)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):  # asyncio.run cancels on a signal
            note = STOPPED
        else:
            note = str(exc) if isinstance(exc, PendoSyncError) else f"{type(exc).__name__}: {exc}"
        _close_failed(state, spec, version, previous, runner.counts, note)
        raise
    status = final_status(runner.counts, runner.stopped_early)
    cursor = planned.target if status in ("complete", "with_rejects") else previous
    note = {
        "partial": "partial: runtime budget reached (or Pendo asked to wait longer than a run waits); the next "
        "run resumes where this one stopped",
        "failed": "Pendo refused or failed every row it was sent; every row is retried by the next run",
    }.get(status, "")
    if planned.note:
        log.warning("sync %s: %s", spec.name, planned.note)
        note = f"{note}; {planned.note}" if note else planned.note
    state.versions.finish(spec.name, version, status, cursor, runner.counts, note)
    state.ledger.analyze(runner.counts.confirmed + runner.counts.cleared)
    if spec.change_log_retention_days is not None:
        state.ledger.prune_change_log(spec.name, utcnow() - dt.timedelta(days=spec.change_log_retention_days))
    return SyncOutcome(
        spec.name, version, planned.mode, status, planned.describe(), runner.counts, time.monotonic() - started,
        cursor, runner.reject_sample, note, planned.source.columns or {},
    )  # fmt: skip


def _changes(spec: SyncSpec, warehouse: Engine, state: StateStore, planned: SourceSlice) -> ChangeSet:
    # The row hash spells booleans out (Redshift cannot cast them to text), so it needs the column types;
    # every caller hashing the same way keeps the ledger valid between the CLI and Dagster.
    source = planned.source
    return ChangeSet(
        spec,
        warehouse,
        state,
        planned.window,
        planned.full_refresh,
        source.columns,
        unique_ids=source.unique_ids,
        refresh_since=planned.refresh_since,
    )


def _close_failed(
    state: StateStore, spec: SyncSpec, version: int, cursor: Any, counts: RunCounts, note: str
) -> None:
    """Record the failed version; if the state database is what failed, the next run marks it abandoned."""
    try:
        state.versions.finish(spec.name, version, "failed", cursor, counts, note)
    except sa.exc.DBAPIError as exc:
        log.warning("sync %s: the failed version %d could not be recorded (%s)", spec.name, version, exc.orig)


async def _fetch_pendo_ids(spec: SyncSpec, state: StateStore, client: PendoClient) -> int:
    """existing_ids_only: store the ids Pendo has (aggregation API, optional id length), page by page."""
    state.ledger.clear_pendo_ids(spec.name)
    fetched = 0
    async for page in client.existing_ids(spec.kind, spec.existing_id_length):
        await asyncio.to_thread(state.ledger.add_pendo_ids, spec.name, page)
        fetched += len(page)
    log.info("sync %s: Pendo has %d %s ids (existing_ids_only)", spec.name, fetched, spec.kind)
    return fetched
