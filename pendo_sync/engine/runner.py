"""The moving parts of one run: a reader thread (change set -> records -> batches), an event loop that
delivers batches through a bounded pool of calls, and one writer thread that records each batch's outcome.

The reader hands batches over a bounded queue, so extraction overlaps delivery and a full pool of calls
holds the reader back: memory is bounded by queue depth times batch size. Each batch's outcome reaches the
state store in one transaction before its pool slot is freed, so state never runs ahead of what Pendo
confirmed (invariant 1), and a killed run resends at most the batches in flight.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pendo_sync.config import DeliverySettings, SyncSpec
from pendo_sync.engine.batches import Batch, Batcher, BatchResult
from pendo_sync.engine.changeset import ROW_ID, ROW_PREV, ROW_RETRY, ChangedRow, ChangeSet
from pendo_sync.engine.delivery import Delivery
from pendo_sync.engine.records import RecordEncoder
from pendo_sync.outcome import Reject, RunCounts, reject_id
from pendo_sync.pendo.client import PendoClient
from pendo_sync.state.ledger import BatchOutcome
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.diff import PENDO_LACKS
from pendo_sync.warehouse.errors import database_failure

log = logging.getLogger("pendo_sync")
SAMPLE_PER_KIND = 5  # rejects of each kind kept for the run's report


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


class _Stop(Exception):
    pass


class Runner:
    """One run's reader, delivery and writer; run_sync does the state bookkeeping around it."""

    def __init__(
        self,
        spec: SyncSpec,
        changes: ChangeSet,
        state: StateStore,
        version: int,
        run_id: str,
        settings: DeliverySettings,
        with_deletes: bool,
        progress: Callable[[Progress], None] | None = None,
        progress_every_seconds: float | None = None,
    ) -> None:
        self.spec, self.changes, self.state, self.version = spec, changes, state, version
        self.run_id, self.settings, self.with_deletes = run_id, settings, with_deletes
        self.progress = progress
        self.progress_every = progress_every_seconds or settings.progress_every_seconds
        self.log = spec.logs_changes  # the change log: opt-in, per sync
        self.encoder = RecordEncoder(spec, fingerprints=self.log, written=changes.written)
        self.counts = RunCounts()
        self.reject_sample: dict[str, list[Reject]] = {}
        self.stopped_early = False
        self.delivery: Delivery | None = None
        self._stop = threading.Event()
        # Two batches of read-ahead: the reader is the slower side, so a deeper queue only holds records
        # in memory (8 against 2: no faster, in bench/run.py's full syncs).
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
        self.total = -1  # records this run will count as done; -1 while unknown
        self._started = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pendo-sync-state")
        self._state_writer = state.batch_writer()  # its connection is opened and used on that one thread

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
            self._read_all(Batcher(max_records, self.settings.max_batch_bytes))
        except _Stop:
            return
        except BaseException as exc:  # handed to the event loop, which re-raises it
            if isinstance(exc, sa.exc.DBAPIError):
                exc = database_failure(exc, self.spec.name, "reading the change set", bool(self.spec.query))
            try:
                self._put(("error", exc))
            except _Stop:
                return

    def _read_all(self, batcher: Batcher) -> None:
        produced = 0  # records and rows settled without a call: what progress counts once all is delivered
        for chunk in self.changes.changed_rows(self.settings.chunk_rows):
            retried = sum(1 for row in chunk if row[ROW_RETRY] == 1)
            produced += len(chunk)  # each row becomes a record, an invalid row or a row held back
            if self.spec.existing_ids_only:
                chunk = self._held_back(chunk)
            batches, invalid = self.encoder.into_batches(chunk, batcher)
            # The chunk's figures and invalid rows first: a run the budget stops after a few of its batches
            # still counts what it read, and records the rows it found invalid.
            self._put(("read", (len(chunk), retried, invalid)))
            for full in batches:
                self._put(("batch", full))
        for duplicated in self.changes.duplicates(self.settings.chunk_rows):
            produced += len(duplicated)
            rejects = [
                Reject(reject_id(record_id), "", "duplicate", self._duplicate(record_id, n))
                for record_id, n in duplicated
            ]
            self._put(("read", (len(duplicated), 0, rejects)))
        if self.with_deletes:
            for ids in self.changes.deleted_ids(self.settings.chunk_rows):
                if self.spec.on_delete == "ignore":
                    self._put(("forget", ids))
                    continue
                produced += len(ids)
                for full in self.encoder.clears(ids, batcher):
                    self._put(("batch", full))
            for ids in self.changes.vanished_rejects(self.settings.chunk_rows):
                self._put(("settled", ids))
        for ids in self.changes.owed_clears(self.settings.chunk_rows, outside_ledger=self.with_deletes):
            produced += len(ids)
            for full in self.encoder.clears(ids, batcher):
                self._put(("batch", full))
        last = batcher.flush()
        if last:
            self._put(("batch", last))
        self.total = produced  # every record is queued now: the total is exact from here on
        self._put(("end", None))

    def _held_back(self, chunk: Sequence[ChangedRow]) -> Sequence[ChangedRow]:
        """existing_ids_only: the chunk less the rows of ids Pendo's list lacks, which are queued as
        `missing` rejects. They keep no row hash: a reject's hash holds a row back until
        missing_retry_seconds have passed (state/rejects.py), while these cost no call to look at again,
        so every run reads them and sends those whose ids Pendo's list (read anew each run) now has."""
        held = [row for row in chunk if row[ROW_PREV] == PENDO_LACKS]
        if not held:
            return chunk
        self._put(
            ("held", [Reject(reject_id(r[ROW_ID]), "", "missing", self._lacks(r[ROW_ID])) for r in held])
        )
        return [row for row in chunk if row[ROW_PREV] != PENDO_LACKS]

    def _lacks(self, record_id: str) -> str:
        length = self.spec.existing_id_length
        if length and len(record_id or "") != length:
            return (
                f"existing_ids_only sends only ids of {length} characters that Pendo has; this one has "
                f"{len(record_id or '')}"
            )
        return (
            f"Pendo's list of {self.spec.kind} ids lacks it (existing_ids_only): sent once Pendo has the id"
        )

    def _duplicate(self, record_id: str, rows: int) -> str:
        source = self.spec.table or "the query"
        return (
            f"id {record_id!r} is carried by {rows} rows of {source}; nothing is sent for it until one row "
            f"carries it (make {self.spec.id_column} unique in the source)"
        )

    # -- event loop -------------------------------------------------------------------------------
    async def run(self, client: PendoClient) -> None:
        self.total = self.changes.expected_total(with_deletes=self.with_deletes)
        budget = self.settings.runtime_budget_seconds
        self.delivery = Delivery(
            client,
            self.spec.name,
            self.spec.kind,
            self.spec.group,
            self.settings,
            self.spec.create_missing,
            deadline=self._started + budget if budget else None,
        )
        sizer = self.delivery.sizer
        reader = threading.Thread(
            target=self._read, args=(lambda: sizer.records,), name="pendo-sync-reader", daemon=True
        )
        reader.start()
        tasks: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if (
                not task.cancelled() and task.exception() is not None
            ):  # retrieved here, so never "unretrieved"
                failures.append(task.exception())  # type: ignore[arg-type]

        ticker = asyncio.create_task(self._report_progress())
        try:
            while not failures:
                kind, item = await asyncio.to_thread(self._queue.get)
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                if kind == "read":
                    rows, retried, rejects = item
                    self.counts.rows_read += rows
                    self.counts.retried += retried
                    if rejects:
                        await self._record(BatchOutcome(rejects=rejects, log=self.log))
                elif kind == "held":
                    self.counts.rows_read += len(item)
                    await self._record(BatchOutcome(rejects=item, log=self.log), held=True)
                elif kind in ("forget", "settled"):
                    if kind == "forget":
                        self.counts.deleted += len(item)
                    await self._record(BatchOutcome(forgotten=item))
                elif kind == "batch":
                    # The budget is checked once a slot is free: a call may have stopped at it meanwhile.
                    await self.delivery.limit.acquire()
                    if self._budget_spent():
                        await self.delivery.limit.release()
                        self.stopped_early = True
                        break
                    task = asyncio.create_task(self._deliver(item))
                    tasks.add(task)
                    task.add_done_callback(finished)
            if tasks:
                await asyncio.wait(set(tasks))
            if failures:
                raise failures[0]
        finally:
            self._stop.set()
            for task in [*tasks, ticker]:
                task.cancel()
            await asyncio.gather(*tasks, ticker, return_exceptions=True)
            await asyncio.to_thread(reader.join)
            self._writer.submit(self._state_writer.close)
            self._writer.shutdown(wait=True)
            stats = self.delivery.stats
            self.counts.calls, self.counts.retries = stats.calls, stats.retries
            self.counts.throttled, self.counts.splits = stats.throttled, stats.splits
            self.counts.lowest_concurrency = int(stats.min_limit)
        self._emit_progress()

    def _budget_spent(self) -> bool:
        """Near the runtime budget, stop taking batches so the in-flight ones can finish inside it."""
        budget = self.settings.runtime_budget_seconds
        if self.stopped_early:  # a batch stopped at the budget already
            return True
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
            # A wait before a retry would have passed the budget: what was settled is recorded, the rest
            # of the batch is not claimed, and the next run sends it.
            self.stopped_early |= result.out_of_time
            await self._record_result(result)
        finally:
            await self.delivery.limit.release()

    async def _record_result(self, result: BatchResult) -> None:
        self.counts.sent += result.sent
        self.counts.updated += result.updated
        self.counts.confirmed += len(result.ids)
        self.counts.cleared += len(result.cleared)
        await self._record(
            BatchOutcome(
                result.ids,
                result.hashes,
                result.new,
                rejects=result.rejects,
                forgotten=result.cleared,
                cleared=result.cleared,
                field_hashes=result.fingerprints if self.log else (),
                fields=[m.field for m in self.spec.fields],
                log=self.log,
            )
        )

    async def _record(self, batch: BatchOutcome, held: bool = False) -> None:
        """Queue a batch's outcome for the state writer. `held`: rows existing_ids_only kept back, counted
        as not_in_pendo (not as ids Pendo reported missing)."""
        for reject in batch.rejects:
            if held:
                self.counts.not_in_pendo += 1
            else:
                self.counts.add_reject(reject.kind)
            sample = self.reject_sample.setdefault(reject.kind, [])
            if len(sample) < SAMPLE_PER_KIND:
                sample.append(reject)
        counts = copy.copy(self.counts)  # as of this batch: the writer runs later, the counts move on

        def write() -> None:
            try:
                self._state_writer.record_batch(self.spec.name, self.version, self.run_id, batch, counts)
            except sa.exc.DBAPIError as exc:
                raise database_failure(
                    exc, self.spec.name, "writing a batch's outcome to the state", False
                ) from None

        await asyncio.get_running_loop().run_in_executor(self._writer, write)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self.progress_every)
            self._emit_progress()

    def _emit_progress(self) -> None:
        progress = Progress(self.counts.done, self.total, time.monotonic() - self._started)
        if self.progress:
            self.progress(progress)
        else:
            log.info("sync %s: %s", self.spec.name, progress.line())
