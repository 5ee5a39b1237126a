"""The small policies of delivery, alone: Retry-After in both its forms, batch sizing, the adaptive limit."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from pendo_sync.config import DeliverySettings
from pendo_sync.engine.delivery import AdaptiveLimit, BatchSizer, DeliveryStats, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.25", 0.25),
        ("-3", 0.0),
        (None, 2.0),
        ("", 2.0),
        ("soon", 2.0),
        ("nan", 2.0),
        ("-inf", 0.0),
        ("1e308", 1e308),
        ("inf", float("inf")),  # bounded by the delivery (backoff_max_seconds), not here
    ],
)
def test_retry_after_in_seconds_or_absent(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value, default=2.0) == seconds


def test_retry_after_as_an_http_date() -> None:
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(in_30s, default=2.0) <= 30
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after(past, default=2.0) == 0.0


def test_batch_sizer_starts_at_batch_records_and_sizes_by_latency_within_the_cap() -> None:
    sizer = BatchSizer(DeliverySettings(batch_records=1000, max_batch_records=5000, target_call_seconds=4))
    assert sizer.records == 1000
    sizer.observe(1000, 1.0)  # 1 ms a record: 4 s allow 4,000
    assert sizer.records == 4000
    sizer.observe(4000, 20.0)  # 5 ms a record now: the moving average goes to 1.8 ms, 4 s allow 2,222
    assert sizer.records == 2222
    assert sizer.call_seconds == pytest.approx(0.8 * 1.0 + 0.2 * 20.0)
    sizer.observe(1000, 0.001)
    sizer.observe(1000, 0.001)
    assert sizer.records <= 5000  # never past max_batch_records


def test_batch_sizer_after_a_408_never_goes_past_half_of_what_ran_too_long() -> None:
    sizer = BatchSizer(DeliverySettings(batch_records=800, max_batch_records=5000, target_call_seconds=60))
    sizer.too_big(800)
    assert (sizer.ceiling, sizer.records) == (400, 400)
    sizer.observe(400, 0.01)  # fast answers do not lift the ceiling again
    assert sizer.records == 400
    sizer.too_big(1)
    assert sizer.ceiling == 1


def test_adaptive_limit_halves_on_429_to_its_floor_and_grows_back_by_one_per_window() -> None:
    stats = DeliveryStats()
    limit = AdaptiveLimit(start=8, floor=3, stats=stats)
    limit.throttled(0.0)
    limit.throttled(0.0)
    limit.throttled(0.0)
    assert (limit.limit, stats.min_limit) == (3, 3)
    for _ in range(3):
        limit.succeeded()  # about one more call per window of `limit` successes
    assert 3.9 < limit.limit < 4.1
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 8  # never past the configured concurrency


def test_adaptive_limit_holds_callers_past_the_limit_and_pauses_for_retry_after() -> None:
    async def scenario() -> tuple[int, float]:
        limit = AdaptiveLimit(start=2, floor=1, stats=DeliveryStats())
        await limit.acquire()
        await limit.acquire()
        third = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.01)
        held = int(not third.done())
        await limit.release()
        await asyncio.wait_for(third, 1)
        limit.throttled(0.1)
        started = time.monotonic()
        await asyncio.sleep(limit.pause_left())
        return held, time.monotonic() - started

    held, paused = asyncio.run(scenario())
    assert held == 1 and paused >= 0.09
