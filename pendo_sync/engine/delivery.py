"""Delivery under Pendo's limits: batches sized by records, JSON bytes and observed latency; a bounded,
adaptive pool of concurrent calls; retries that obey the server; row-level outcomes.

Status handling, in one place:
  200  missing/errors become row rejects, the rest is confirmed
  408  the call ran past Pendo's time limit: split the batch in half, retry the halves
  413  the body was over a limit (a gateway's before Pendo): split the batch in half, as for 408
  429  wait Retry-After (seconds or HTTP date) and halve concurrency (AIMD); one past
       MAX_RETRY_AFTER_SECONDS is not waited: the batch is left unclaimed, the run ends partial
  5xx, timeouts, dropped connections: exponential backoff with jitter, then reject the rows with the reason
  400  a field without a mapping, or a body Pendo cannot read: stop the sync (FatalDeliveryError)
  connection refused through every attempt: Pendo is gone; stop the sync (FatalDeliveryError)
  401/403  the integration key was refused: stop the sync
A wait (Retry-After or backoff) that would outlast the runtime budget is not waited: the batch is left
unclaimed, the run ends partial and the next run sends it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pendo_sync.config import DeliverySettings
from pendo_sync.engine.batches import Batch, BatchResult
from pendo_sync.pendo.client import PendoClient, PendoError


class FatalDeliveryError(PendoError):
    """Pendo refused the sync itself (key, field mapping): nothing more can be sent this run."""


# The longest Retry-After a run waits (Pendo's are seconds); a run asked to wait longer stops (OutOfTime).
MAX_RETRY_AFTER_SECONDS = 900.0


class OutOfTime(Exception):
    """A wait before a retry would end past the runtime budget, or Pendo asked for one longer than a run
    waits: the batch stops unclaimed."""


@dataclass
class DeliveryStats:
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    splits: int = 0
    bytes_sent: int = 0
    max_in_flight: int = 0
    min_limit: float = 0.0


class BatchSizer:
    """How many records the next batch may hold: within the configured caps, and small enough that a
    call is expected to finish inside `target_call_seconds` given the latency observed so far."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        # The most records a call may carry: max_batch_records, until a 408 shows that fewer must do.
        self.ceiling = max(1, settings.max_batch_records)
        self.records = max(1, min(settings.batch_records, self.ceiling))
        self.seconds_per_record: float | None = None
        self.call_seconds = 0.0

    def observe(self, records: int, elapsed: float) -> None:
        if records <= 0:
            return
        per_record = elapsed / records
        self.seconds_per_record = (
            per_record
            if self.seconds_per_record is None
            else 0.8 * self.seconds_per_record + 0.2 * per_record
        )
        self.call_seconds = elapsed if not self.call_seconds else 0.8 * self.call_seconds + 0.2 * elapsed
        allowed = int(self.settings.target_call_seconds / max(self.seconds_per_record, 1e-9))
        self.records = max(1, min(self.ceiling, allowed))

    def too_big(self, records: int) -> None:
        """A call of `records` ran past Pendo's time limit (408) or over a body limit (413): for the rest of
        the run, no call carries more than half of that (the halves of the batch are what is tried next)."""
        self.ceiling = max(1, min(self.ceiling, records // 2))
        self.records = min(self.records, self.ceiling)


class AdaptiveLimit:
    """A concurrency limit that grows by one per window of successes and halves on 429 (AIMD), and a
    shared pause that holds every caller until a Retry-After has passed."""

    def __init__(self, start: int, floor: int, stats: DeliveryStats) -> None:
        self.ceiling = max(1, start)
        self.floor = max(1, min(floor, self.ceiling))
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.paused_until = 0.0
        self.stats = stats
        stats.min_limit = self.limit
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            while self.in_flight >= int(self.limit):
                await self._changed.wait()
            self.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.in_flight)

    async def release(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def pause_left(self) -> float:
        """Seconds until a Retry-After has passed (0 when none holds callers)."""
        return max(0.0, self.paused_until - time.monotonic())

    def succeeded(self) -> None:
        self.limit = min(self.ceiling, self.limit + 1.0 / max(self.limit, 1.0))

    def throttled(self, retry_after: float) -> None:
        self.limit = max(self.floor, self.limit / 2)
        self.stats.min_limit = min(self.stats.min_limit, self.limit)
        self.paused_until = max(self.paused_until, time.monotonic() + retry_after)


def parse_retry_after(value: str | None, default: float) -> float:
    """Retry-After as seconds: either a number of seconds or an HTTP date; `default` for anything else.
    Not bounded here (1e308 and inf pass): the delivery stops past MAX_RETRY_AFTER_SECONDS."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return default if math.isnan(seconds) else max(0.0, seconds)


class Delivery:
    """Sends batches for one sync and turns every answer into confirmed rows or rejects with reasons."""

    TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

    def __init__(
        self,
        client: PendoClient,
        sync_name: str,
        kind: str,
        group: str,
        settings: DeliverySettings,
        create_missing: bool = False,
        sleep: Callable[[float], Any] = asyncio.sleep,
        deadline: float | None = None,
    ) -> None:
        """`deadline`: the time.monotonic() at which the run's budget is spent (None: no budget)."""
        self.client = client
        self.sync_name = sync_name
        self.kind, self.group = kind, group
        self.settings = settings
        self.create_missing = create_missing
        self.stats = DeliveryStats()
        self.sizer = BatchSizer(settings)
        self.limit = AdaptiveLimit(settings.concurrency, settings.min_concurrency, self.stats)
        self._sleep = sleep
        self.deadline = deadline

    async def send(self, batch: Batch) -> BatchResult:
        """Deliver one batch (splitting it on 408 and 413) and account for every record in it, or, if the
        budget runs out while it waits to retry, for those it settled (`out_of_time`: the rest is unclaimed)."""
        result = BatchResult()
        try:
            await self._send_into(batch, result)
        except OutOfTime:
            result.out_of_time = True
        return result

    async def _send_into(self, batch: Batch, result: BatchResult) -> None:
        if len(batch) > self.sizer.ceiling:
            # Batched before a 408 taught the sizer what fits: halve it first, without a call.
            for half in batch.halves():
                await self._send_into(half, result)
            return
        attempts, throttles = 0, 0
        while True:
            await self._wait(self.limit.pause_left())
            started = time.monotonic()
            try:
                self.stats.calls += 1
                # A clear never creates a record (an owed clear's id may be one Pendo never got).
                create = self.create_missing and batch.op != "clear"
                response = await self.client.post_values(self.kind, self.group, batch.body, create)
            except self.TRANSIENT as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                attempts += 1
                if attempts >= self.settings.max_attempts and isinstance(exc, httpx.ConnectError):
                    # Not one row refused: Pendo is gone (every batch after would wait out its retries
                    # too). The batch is not recorded, so the next run sends it with the rest.
                    raise FatalDeliveryError(
                        f"sync {self.sync_name!r}: Pendo stopped answering at {self.client.base_url} "
                        f"({reason}, {attempts} attempts); what it confirmed is kept and the next run sends "
                        "the rest: check that Pendo is reachable, then run again"
                    ) from None
                if await self._gave_up(batch, result, attempts, reason):
                    return
                continue
            elapsed = time.monotonic() - started
            status = response.status_code
            if status == 200:
                self.limit.succeeded()
                self.sizer.observe(len(batch), elapsed)
                self.stats.bytes_sent += batch.size_bytes
                self._apply_answer(batch, response, result)
                return
            if status in (408, 413):
                self.sizer.too_big(len(batch))
                if len(batch) == 1:
                    alone = (
                        "ran past Pendo's time limit (HTTP 408)"
                        if status == 408
                        else f"is larger than Pendo takes in a call (HTTP 413: {_error_text(response)})"
                    )
                    result.reject(batch, 0, "error", f"one record alone {alone}")
                    return
                self.stats.splits += 1
                first, second = batch.halves()
                await self._send_into(first, result)
                await self._send_into(second, result)
                return
            if status == 429:
                throttles += 1
                self.stats.throttled += 1
                self.stats.retries += 1
                wait = parse_retry_after(response.headers.get("retry-after"), self._backoff(throttles))
                if wait > MAX_RETRY_AFTER_SECONDS:  # an hour, 1e308, inf: the batch is left to the next run
                    raise OutOfTime
                self.limit.throttled(wait)
                if throttles > 20 * self.settings.max_attempts:
                    self._reject_all(
                        batch, result, "error", f"still rate limited (HTTP 429) after {throttles} waits"
                    )
                    return
                continue
            if status in (401, 403):
                raise FatalDeliveryError(
                    f"sync {self.sync_name!r}: Pendo refused the integration key (HTTP {status}); check "
                    "PENDO_INTEGRATION_KEY and that PENDO_BASE_URL is the key's region"
                )
            if status == 400 or (400 <= status < 500 and status not in (409, 425)):
                raise FatalDeliveryError(
                    f"sync {self.sync_name!r}: Pendo refused the {self.kind} {self.group} write "
                    f"(HTTP {status}: {_error_text(response)}); check that every mapped field exists in Pendo "
                    f"under {self.kind} / {self.group} (pendo-sync check)"
                )
            attempts += 1
            if await self._gave_up(batch, result, attempts, f"HTTP {status}: {_error_text(response)}"):
                return

    async def _gave_up(self, batch: Batch, result: BatchResult, attempts: int, reason: str) -> bool:
        if attempts >= self.settings.max_attempts:
            self._reject_all(batch, result, "error", f"gave up after {attempts} attempts: {reason}")
            return True
        self.stats.retries += 1
        await self._wait(self._backoff(attempts))
        return False

    async def _wait(self, seconds: float) -> None:
        """Wait before a retry; OutOfTime if the wait and the call after it would end past the budget."""
        if seconds <= 0:
            return
        if self.deadline is not None and time.monotonic() + seconds + self.sizer.call_seconds > self.deadline:
            raise OutOfTime
        await self._sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to base * 2^attempt, capped."""
        cap = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2**attempt)
        return random.uniform(cap / 2, cap)

    def _reject_all(self, batch: Batch, result: BatchResult, kind: str, reason: str) -> None:
        for i in range(len(batch)):
            result.reject(batch, i, kind, reason)

    def _apply_answer(self, batch: Batch, response: httpx.Response, result: BatchResult) -> None:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        result.sent += len(batch)
        if not isinstance(answer, dict):
            # Pendo said 200 but we cannot tell what it applied: claim nothing, the next run resends.
            self._reject_all(
                batch, result, "error", "Pendo answered 200 with a body that is not the documented JSON"
            )
            return
        result.updated += int(answer.get("updated") or 0)
        missing = {str(i) for i in answer.get("missing") or []}
        errors: dict[str, str] = {}
        unattributed: list[str] = []
        for item in answer.get("errors") or []:
            if isinstance(item, dict) and item.get("id") is not None:
                detail = item.get("error") or item.get("message") or json.dumps(item)
                field_name = f"field {item['field']!r}: " if item.get("field") else ""
                errors[str(item["id"])] = f"Pendo rejected the value: {field_name}{detail}"
            else:
                unattributed.append(json.dumps(item) if not isinstance(item, str) else item)
        if not (missing or errors or unattributed):
            result.confirm(batch)
            return
        if unattributed:
            reason = f"Pendo reported errors without ids ({'; '.join(unattributed)[:300]}); not claimed"
        for i, record_id in enumerate(batch.ids):
            if record_id in missing:
                result.reject(batch, i, "missing", f"{self.kind} id not found in Pendo")
            elif record_id in errors:
                result.reject(batch, i, "error", errors[record_id])
            elif unattributed:
                result.reject(batch, i, "error", reason)
            else:
                result.confirm(batch, i)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])[:300]
    except ValueError:
        pass
    return response.text[:300] or response.reason_phrase
