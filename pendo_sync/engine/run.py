"""One sync run, end to end: slice, change set, records, batches, delivery, outcome.

The warehouse is read on a thread through a bounded queue, so extraction overlaps delivery and a full
pool of calls holds the reader back: memory is bounded by queue depth times batch size. Each batch's
outcome reaches the state store in one transaction before its pool slot is freed, so state never runs
ahead of what Pendo confirmed (invariant 1), and a killed run resends at most the batches in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from pendo_sync.config import DeliverySettings, SyncSpec
from pendo_sync.engine.changeset import ChangeSet
from pendo_sync.engine.delivery import Batch, BatchResult, Delivery
from pendo_sync.engine.preflight import source_columns
from pendo_sync.engine.records import Batcher, RecordEncoder
from pendo_sync.pendo.client import PendoClient
from pendo_sync.pendo.types import CoercionError
from pendo_sync.state.store import Reject, StateStore, utcnow
from pendo_sync.warehouse.slices import Slice, lookback_lower, max_replication_key

log = logging.getLogger("pendo_sync")
MODES = ("full", "incremental", "backfill")


@dataclass
class RunOptions:
    """How one run reads and what it may do."""

    mode: str = "full"
    window: tuple[Any, Any] | None = None  # backfill: [start, end) of the replication key
    full_refresh: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    dry_run: bool = False
    progress: Callable[[Progress], None] | None = None


@dataclass
class Progress:
    done: int
    total: int  # -1 when unknown
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.total < 0 or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def line(self) -> str:
        eta = f", ETA {self.eta_seconds:.0f}s" if self.eta_seconds is not None else ""
        total = f"/{self.total:,}" if self.total >= 0 else ""
        return f"{self.done:,}{total} records done, {self.rate:,.0f}/s{eta}"


@dataclass
class SyncOutcome:
    """What a run did: the figures Dagster shows and the state version it wrote."""

    sync: str
    version: int
    mode: str
    status: str  # "complete" | "partial" | "failed" | "dry-run"
    slice: str
    counts: dict[str, int]
    duration_seconds: float
    cursor: Any
    reject_sample: list[dict[str, str]]
    note: str = ""

    @property
    def records_per_second(self) -> float:
        return self.counts.get("sent", 0) / self.duration_seconds if self.duration_seconds > 0 else 0.0

    @property
    def reject_share(self) -> float:
        looked = self.counts.get("rows_read", 0) + self.counts.get("cleared", 0)
        failed = self.counts.get("rejected", 0) + self.counts.get("missing", 0)
        return failed / looked if looked else 0.0


class _Stop(Exception):
    pass


def plan_slice(
    spec: SyncSpec, warehouse: Engine, state: StateStore, options: RunOptions
) -> tuple[Slice, Any, Any]:
    """The slice to read, the cursor the run starts from, and the cursor it may move to if it completes."""
    if options.mode not in MODES:
        raise ValueError(f"mode {options.mode!r} is not one of {', '.join(MODES)}")
    previous = state.current_cursor(spec.name)
    if options.mode == "backfill":
        if not options.window:
            raise ValueError(
                f"sync {spec.name!r}: a backfill needs a window (start, end) of {spec.replication_key}"
            )
        return Slice("backfill", *options.window), previous, previous
    if options.mode == "incremental" and not spec.replication_key:
        raise ValueError(
            f"sync {spec.name!r}: incremental runs need replication_key in the config; run mode full"
        )
    if options.mode == "incremental" and previous is not None and not options.full_refresh:
        lower = lookback_lower(previous, spec.lookback_seconds)
        upper = max_replication_key(warehouse, spec, Slice("incremental", lower, None))
        return (
            Slice("incremental", lower, upper),
            previous,
            max(upper, previous) if upper is not None else previous,
        )
    # A full run, or the first incremental run: every row, bounded above so the cursor is well defined.
    upper = max_replication_key(warehouse, spec, Slice("full")) if spec.replication_key else None
    window = (
        Slice("incremental", None, upper)
        if spec.replication_key and options.mode == "incremental"
        else Slice("full")
    )
    return window, previous, upper if upper is not None else previous


def run_sync(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    client_factory: Callable[[], PendoClient],
    settings: DeliverySettings,
    options: RunOptions | None = None,
    column_types: dict[str, str] | None = None,
) -> SyncOutcome:
    """Run one sync; returns its outcome, raises on a fatal error after recording the failed version."""
    options = options or RunOptions()
    if column_types is None:
        # The row hash spells booleans out (Redshift cannot cast them to text), so it needs the types;
        # every caller hashing the same way also keeps the ledger valid between the CLI and Dagster.
        column_types = source_columns(warehouse, spec) or {}
    state.ensure_schema()
    started = time.monotonic()
    window, previous, target = plan_slice(spec, warehouse, state, options)
    changes = ChangeSet(
        spec,
        warehouse,
        state,
        window,
        full_refresh=options.full_refresh,
        missing_since=utcnow() - dt.timedelta(seconds=spec.missing_retry_seconds),
        column_types=column_types,
    )
    if options.dry_run:
        counts = {"rows_read": changes.count_changed()}
        return SyncOutcome(
            spec.name,
            0,
            options.mode,
            "dry-run",
            window.describe(),
            counts,
            time.monotonic() - started,
            previous,
            [],
        )
    state.acquire_lock(spec.name, options.run_id)
    state.abandon_running(spec.name)
    if spec.existing_ids_only:
        try:
            asyncio.run(_fetch_pendo_ids(spec, state, client_factory))
        except BaseException:
            state.release_lock(spec.name, options.run_id)
            raise
    version = state.begin_version(spec.name, options.run_id, options.mode, previous)
    runner = _Runner(spec, changes, state, version, options, settings, with_deletes=window.mode == "full")
    try:
        asyncio.run(runner.run(client_factory))
    except BaseException as exc:
        state.finish_version(
            spec.name, version, "failed", previous, runner.counts, f"{type(exc).__name__}: {exc}"
        )
        raise
    finally:
        state.release_lock(spec.name, options.run_id)
    complete = not runner.stopped_early
    cursor = target if complete else previous
    note = "" if complete else "partial: runtime budget reached; the next run resumes where this one stopped"
    state.finish_version(
        spec.name, version, "complete" if complete else "partial", cursor, runner.counts, note
    )
    return SyncOutcome(
        spec.name,
        version,
        options.mode,
        "complete" if complete else "partial",
        window.describe(),
        dict(runner.counts),
        time.monotonic() - started,
        cursor,
        runner.reject_sample,
        note,
    )


async def _fetch_pendo_ids(
    spec: SyncSpec, state: StateStore, client_factory: Callable[[], PendoClient]
) -> int:
    """existing_ids_only: store the ids Pendo has (aggregation API, optional id length), page by page."""
    state.clear_pendo_ids(spec.name)
    fetched = 0
    async with client_factory() as client:
        async for page in client.existing_ids(spec.kind, spec.existing_id_length):
            await asyncio.to_thread(state.add_pendo_ids, spec.name, page)
            fetched += len(page)
    log.info("sync %s: Pendo has %d %s ids (existing_ids_only)", spec.name, fetched, spec.kind)
    return fetched


class _Runner:
    """The moving parts of one run; separate from run_sync so the state bookkeeping reads plainly there."""

    def __init__(
        self,
        spec: SyncSpec,
        changes: ChangeSet,
        state: StateStore,
        version: int,
        options: RunOptions,
        settings: DeliverySettings,
        with_deletes: bool,
    ) -> None:
        self.spec, self.changes, self.state, self.version = spec, changes, state, version
        self.options, self.settings, self.with_deletes = options, settings, with_deletes
        self.encoder = RecordEncoder(spec)
        self.counts: Counter[str] = Counter()
        self.reject_sample: list[dict[str, str]] = []
        self.stopped_early = False
        self.delivery: Delivery | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(
            # Two batches of read-ahead: the reader is the slower side, so a deeper queue only holds
            # records in memory (8 against 2: no faster, in bench/run.py's full syncs).
            maxsize=2
        )
        self.total = -1  # records this run will count as done; -1 while unknown
        self._started = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pendo-sync-state")

    # -- reader thread ----------------------------------------------------------------------------
    def _put(self, item: tuple[str, Any]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stop

    def _read(self, max_records: Callable[[], int]) -> None:
        """Warehouse -> records -> batches, on a thread; blocks when the queue is full (backpressure)."""
        try:
            batcher = Batcher(max_records, self.settings.max_batch_bytes)
            produced = 0  # records and invalid rows: what progress counts as done once all is delivered
            for chunk in self.changes.changed_rows(self.settings.chunk_rows):
                invalid: list[Reject] = []
                for record_id, row_hash, new, values in chunk:
                    try:
                        record = self.encoder.encode(record_id, row_hash, values, new)
                    except CoercionError as exc:
                        invalid.append(Reject(record_id or "(empty id)", row_hash, "invalid", str(exc)))
                        continue
                    full = batcher.add(record)
                    if full:
                        self._put(("batch", full))
                produced += len(chunk)  # each row became a record or an invalid row
                self._put(("read", (len(chunk), invalid)))
            if self.with_deletes:
                for ids in self.changes.deleted_ids(self.settings.chunk_rows):
                    if self.spec.on_delete == "ignore":
                        self._put(("forget", ids))
                        continue
                    produced += len(ids)
                    for record_id in ids:
                        full = batcher.add(self.encoder.clear(record_id))
                        if full:
                            self._put(("batch", full))
            last = batcher.flush()
            if last:
                self._put(("batch", last))
            self.total = produced  # every record is queued now: the total is exact from here on
            self._put(("end", None))
        except _Stop:
            return
        except BaseException as exc:  # handed to the event loop, which re-raises it
            try:
                self._put(("error", exc))
            except _Stop:
                return

    # -- event loop -------------------------------------------------------------------------------
    async def run(self, client_factory: Callable[[], PendoClient]) -> None:
        self.total = self.changes.expected_total(with_deletes=self.with_deletes)
        if self.spec.existing_ids_only:
            # Rows the existence filter keeps back: accounted for, never sent (invariant 4).
            self.counts["not_in_pendo"] = self.changes.count_not_in_pendo()
        async with client_factory() as client:
            self.delivery = Delivery(
                client,
                self.spec.name,
                self.spec.kind,
                self.spec.group,
                self.settings,
                self.spec.create_missing,
            )
            sizer = self.delivery.sizer
            reader = threading.Thread(
                target=self._read, args=(lambda: sizer.records,), name="pendo-sync-reader", daemon=True
            )
            reader.start()
            tasks: set[asyncio.Task[None]] = set()
            ticker = asyncio.create_task(self._report_progress())
            fatal: BaseException | None = None
            try:
                while fatal is None:
                    kind, item = await asyncio.to_thread(self._queue.get)
                    if kind == "end":
                        break
                    if kind == "error":
                        raise item
                    if kind == "read":
                        rows, invalid = item
                        self.counts["rows_read"] += rows
                        if invalid:
                            await self._record(rejects=invalid)
                    elif kind == "forget":
                        await self._record(forgotten=item)
                    elif kind == "batch":
                        if self._budget_spent():
                            self.stopped_early = True
                            break
                        await self.delivery.limit.acquire()
                        task = asyncio.create_task(self._deliver(item))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    fatal = next((t.exception() for t in list(tasks) if t.done() and t.exception()), None)
                results = await asyncio.gather(*tasks, return_exceptions=True)
                fatal = fatal or next((r for r in results if isinstance(r, BaseException)), None)
                if fatal is not None:
                    raise fatal
            finally:
                self._stop.set()
                for task in tasks:
                    task.cancel()
                ticker.cancel()
                await asyncio.to_thread(reader.join)
                self._writer.shutdown(wait=True)
                stats = self.delivery.stats
                self.counts["calls"], self.counts["retries"] = stats.calls, stats.retries
                self.counts["throttled"], self.counts["splits"] = stats.throttled, stats.splits
                self.counts["lowest_concurrency"] = int(stats.min_limit)
            self._emit_progress()

    def _budget_spent(self) -> bool:
        """Near the runtime budget, stop taking batches so the in-flight ones can finish inside it."""
        budget = self.settings.runtime_budget_seconds
        if not budget or self.delivery is None:
            return False
        elapsed = time.monotonic() - self._started
        # Until a call has been timed, only the budget itself stops the run: it must make progress.
        expected_call = self.delivery.sizer.call_seconds
        return elapsed + 2 * expected_call >= budget

    async def _deliver(self, batch: Batch) -> None:
        assert self.delivery is not None
        try:
            result = await self.delivery.send(batch)
            await self._record_result(result)
        finally:
            await self.delivery.limit.release()

    async def _record_result(self, result: BatchResult) -> None:
        confirmed = [(r.record_id, r.row_hash) for r in result.confirmed if r.op == "upsert"]
        cleared = [r.record_id for r in result.confirmed if r.op == "clear"]
        # A deleted id Pendo no longer has needs no clearing either: it leaves the ledger all the same.
        cleared += [r.record_id for r, kind, _ in result.rejects if r.op == "clear" and kind == "missing"]
        rejects = [
            Reject(r.record_id, r.row_hash, kind, reason)
            for r, kind, reason in result.rejects
            if not (r.op == "clear" and kind == "missing")
        ]
        self.counts["sent"] += result.sent
        self.counts["updated"] += result.updated
        self.counts["cleared"] += len(cleared)
        new_ids = {r.record_id for r in result.confirmed if r.new}
        await self._record(confirmed=confirmed, rejects=rejects, forgotten=cleared, new_ids=new_ids)

    async def _record(
        self,
        confirmed: list[tuple[str, str]] | None = None,
        rejects: list[Reject] | None = None,
        forgotten: list[str] | None = None,
        new_ids: set[str] | None = None,
    ) -> None:
        rejects = rejects or []
        for reject in rejects:
            self.counts["missing" if reject.kind == "missing" else "rejected"] += 1
            self.counts["invalid"] += reject.kind == "invalid"
            if len(self.reject_sample) < 20:
                self.reject_sample.append(
                    {"id": reject.record_id, "kind": reject.kind, "reason": reject.reason}
                )
        if forgotten and self.spec.on_delete == "ignore":
            self.counts["deleted"] += len(forgotten)
        counts = dict(self.counts)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._writer,
            lambda: self.state.record_batch(
                self.spec.name,
                self.version,
                self.options.run_id,
                confirmed or [],
                rejects,
                forgotten or [],
                counts,
                new_ids or set(),
            ),
        )

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_every_seconds)
            self._emit_progress()

    def _emit_progress(self) -> None:
        done = self.counts["sent"] + self.counts["invalid"]
        progress = Progress(done, self.total, time.monotonic() - self._started)
        if self.options.progress:
            self.options.progress(progress)
        else:
            log.info("sync %s: %s", self.spec.name, progress.line())
