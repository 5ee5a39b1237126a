"""Delivery under Pendo's limits and faults, through the real client and the emulator: 429 with
Retry-After, 408 splits, 5xx and dropped connections, answers lost after Pendo applied them, a refused
key or field, and the runtime budget. In every case the ledger claims only what Pendo confirmed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pendo_sync.engine.batches import Batch
from pendo_sync.engine.delivery import FatalDeliveryError
from pendo_sync.engine.preflight import PreflightError
from pendo_sync.pendo.client import PendoAuthError
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.expected import expected_fields
from pendo_sync_tests.world import ACCOUNTS, TEST_DELIVERY, World

PRESENT = ACCOUNTS - ACCOUNTS // 50
# A Retry-After past backoff_max_seconds (TEST_DELIVERY's 0.05 s) is waited only that long and counts as a
# failed attempt: the emulator's 0.2 s needs a longer backoff_max_seconds to be obeyed.
OBEYS_RETRY_AFTER = dataclasses.replace(TEST_DELIVERY, backoff_max_seconds=1)


def assert_pendo_equals_source(world: World) -> None:
    expected = expected_fields(world.engine, world.spec("accounts"))
    have = world.emulator.records("account")
    want = {i: {f: v for f, v in vals.items() if v is not None} for i, vals in expected.items() if i in have}
    assert have == want
    ledger = world.store.ledger.rows("accounts")
    assert set(ledger) == set(want)


def test_429_waits_for_retry_after_and_loses_nothing(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.retry_after_s = 0.2
    world.emulator.inject_faults([Fault("429", count=3)])
    outcome = world.run("accounts", delivery=OBEYS_RETRY_AFTER)
    assert world.emulator.stats()["statuses"][429] == 3
    assert outcome.counts["throttled"] == 3
    assert outcome.duration_seconds >= 0.2  # waited Retry-After
    assert outcome.counts["lowest_concurrency"] < world.delivery.concurrency
    assert outcome.counts["updated"] == PRESENT
    assert_pendo_equals_source(world)


def test_rate_limit_bucket_throttles_concurrency_and_every_record_lands(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.max_calls_per_s = 5
    world.emulator.settings.retry_after_s = 0.2
    outcome = world.run(
        "accounts", delivery=dataclasses.replace(OBEYS_RETRY_AFTER, batch_records=10, max_batch_records=10)
    )
    assert world.emulator.stats()["statuses"].get(429, 0) > 0
    assert outcome.counts["updated"] == PRESENT
    assert_pendo_equals_source(world)


def test_408_halves_the_batch_until_calls_fit_the_time_limit(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.per_record_latency_s = 0.002
    world.emulator.settings.call_time_limit_s = 0.03  # 15 records per call at most
    outcome = world.run("accounts")
    stats = world.emulator.stats()
    assert stats["statuses"][408] >= 1
    assert max(stats["batch_sizes"][-5:]) <= 15
    assert outcome.counts["updated"] == PRESENT
    assert_pendo_equals_source(world)


def test_413_from_a_body_limit_in_front_of_pendo_halves_the_batch_until_calls_fit(duckdb_world: World):
    """A gateway before Pendo may refuse large bodies (HTTP 413) though Pendo takes any number of records:
    the batch is halved like a 408, and every row lands."""
    world = duckdb_world
    world.emulator.settings.max_body_bytes = 2_000  # about 15 account records
    outcome = world.run("accounts")
    stats = world.emulator.stats()
    assert stats["statuses"][413] >= 1
    assert max(stats["batch_sizes"][-5:]) <= 20
    assert outcome.counts["updated"] == PRESENT
    assert_pendo_equals_source(world)


def test_a_record_alone_over_the_body_limit_is_rejected_with_the_reason(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.max_body_bytes = 60  # below any one account record
    outcome = world.run("accounts")
    assert outcome.counts["updated"] == 0 and outcome.counts["errors"] == ACCOUNTS  # missing ids too
    reasons = {r["reason"] for r in world.store.rejects.outstanding("accounts", kind="error")}
    assert reasons == {
        "one record alone is larger than Pendo takes in a call (HTTP 413: request body over 60 bytes)"
    }


def test_5xx_and_dropped_connections_are_retried(duckdb_world: World):
    world = duckdb_world
    world.emulator.inject_faults([Fault("status", status=503, count=2), Fault("drop", count=2, after=1)])
    outcome = world.run("accounts")
    assert outcome.counts["retries"] >= 4
    assert outcome.counts["updated"] == PRESENT
    assert_pendo_equals_source(world)


def test_answer_lost_after_pendo_applied_is_resent_not_claimed_twice(duckdb_world: World):
    world = duckdb_world
    world.emulator.inject_faults([Fault("lost_answer", count=1)])
    outcome = world.run("accounts")
    assert outcome.counts["updated"] == PRESENT
    assert len(world.emulator.received_ids) == ACCOUNTS + 50  # the first batch went twice
    assert_pendo_equals_source(world)


def test_persistent_failure_rejects_the_batch_with_its_reason_and_the_next_run_delivers(duckdb_world: World):
    world = duckdb_world
    world.emulator.inject_faults([Fault("status", status=500, count=world.delivery.max_attempts)])
    first = world.run("accounts", delivery=dataclasses.replace(world.delivery, concurrency=1))
    errors = [r for r in world.store.rejects.outstanding("accounts") if r["kind"] == "error"]
    assert len(errors) == 50
    assert errors[0]["reason"] == "gave up after 6 attempts: HTTP 500: injected fault: HTTP 500"
    assert first.counts["rejected"] == 50
    assert world.store.ledger.count("accounts") == PRESENT - (
        50 - sum(1 for r in errors if world.emulator.values_of("account", r["record_id"]) is None)
    )
    world.run("accounts")
    assert_pendo_equals_source(world)


def test_wrong_key_fails_the_run_with_an_actionable_message_and_no_secret(duckdb_world: World):
    world = duckdb_world
    world.key = "a-wrong-key-123"
    with pytest.raises(PendoAuthError) as err:
        world.run("accounts")
    assert str(err.value) == (
        "sync 'accounts': Pendo refused the integration key (HTTP 401) on reading the account field schema; "
        "check PENDO_INTEGRATION_KEY and that PENDO_BASE_URL is the key's region"
    )
    assert "a-wrong-key-123" not in str(err.value)
    # The run's preflight read of Pendo's field schema was refused: it stopped before writing any state.
    world.store.ensure_schema()
    assert world.store.versions.all("accounts") == []
    assert world.store.ledger.count("accounts") == 0


def test_a_field_missing_in_pendo_fails_before_anything_is_applied(duckdb_world: World):
    world = duckdb_world
    world.emulator.remove_field("account", "custom", "annual_revenue")
    with pytest.raises(PreflightError) as err:
        world.run("accounts")
    assert err.value.problems == [
        "sync 'accounts', column 'arr': Pendo account custom field 'annual_revenue' does not exist; create it "
        "in Pendo (Settings > Data Mappings) or map the column to an existing field"
    ]
    assert world.emulator.stats()["write_calls"] == 0  # nothing sent, no state written


def test_a_field_pendo_refuses_mid_run_stops_the_run_as_failed(duckdb_world: World):
    world = duckdb_world
    world.emulator.inject_faults([Fault("status", status=400, count=1000)])
    with pytest.raises(FatalDeliveryError) as err:
        world.run("accounts")
    assert "Pendo refused the account custom write (HTTP 400: injected fault: HTTP 400)" in str(err.value)
    assert all(v == {} for v in world.emulator.records("account").values())
    assert world.store.ledger.count("accounts") == 0
    (version,) = world.store.versions.all("accounts")
    assert version.status == "failed" and version.note == str(err.value)


def test_runtime_budget_ends_the_run_cleanly_and_the_next_run_resumes(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.fixed_latency_s = 0.1
    tight = dataclasses.replace(
        world.delivery, runtime_budget_seconds=0.5, concurrency=1, batch_records=10, max_batch_records=10
    )
    first = world.run("accounts", delivery=tight)
    assert first.status == "partial"
    assert first.cursor is None  # the cursor does not move past a partial run
    confirmed = world.store.ledger.count("accounts")
    assert 0 < confirmed < PRESENT
    world.emulator.settings.fixed_latency_s = 0
    world.emulator.reset_stats()
    second = world.run("accounts")
    assert second.status == "complete"
    # Nothing confirmed is resent (ids found missing wait for missing_retry_seconds).
    assert confirmed + first.counts["missing"] == first.counts["sent"]
    assert world.emulator.stats()["records_received"] == ACCOUNTS - first.counts["sent"]
    assert_pendo_equals_source(world)


@pytest.mark.timeout(30)  # before the fix, the run slept out the whole wait: an hour
@pytest.mark.parametrize(
    "fault", [Fault("429", retry_after_s=3600), Fault("status", status=500)], ids=["retry-after", "backoff"]
)
def test_a_wait_past_the_budget_ends_the_run_partial_and_the_next_run_sends_the_batch(
    duckdb_world: World, fault: Fault
):
    """A Retry-After or a backoff that would end past the runtime budget is not waited out: the run ends
    `partial` at once, the batch unconfirmed and not rejected, and the next run sends it."""
    world = duckdb_world
    world.emulator.inject_faults([fault])
    tight = dataclasses.replace(
        world.delivery,
        runtime_budget_seconds=1,
        concurrency=1,
        backoff_base_seconds=3600,
        backoff_max_seconds=3600,
    )
    first = world.run("accounts", delivery=tight)
    assert first.status == "partial"
    assert first.duration_seconds < 30
    assert (first.counts["sent"], first.counts["confirmed"], first.counts["rejected"]) == (0, 0, 0)
    assert world.store.ledger.count("accounts") == 0
    assert world.store.rejects.outstanding("accounts") == []
    assert all(v == {} for v in world.emulator.records("account").values())
    second = world.run("accounts")
    assert second.status == "complete"
    assert_pendo_equals_source(world)


@pytest.mark.timeout(30)  # before the fix, a Retry-After of 1e308 or inf was waited out: forever
@pytest.mark.parametrize("retry_after", [3600.0, 1e308, float("inf")])
def test_a_retry_after_longer_than_a_run_waits_ends_it_partial_with_nothing_claimed(
    duckdb_world: World, retry_after: float
):
    """No budget: a Retry-After past MAX_RETRY_AFTER_SECONDS is not waited; the run stops as partial, the
    batch neither confirmed nor rejected, and the next run delivers it."""
    world = duckdb_world
    world.emulator.inject_faults([Fault("429", retry_after_s=retry_after, count=1)])
    first = world.run("accounts", delivery=dataclasses.replace(world.delivery, concurrency=1))
    assert first.status == "partial"
    assert (first.counts["confirmed"], first.counts["rejected"]) == (0, 0)
    assert world.store.rejects.outstanding("accounts") == []
    assert world.run("accounts").status == "complete"
    assert_pendo_equals_source(world)


def test_a_retry_after_past_backoff_max_is_obeyed_not_retried_early(duckdb_world: World):
    """A Retry-After longer than backoff_max_seconds (and shorter than a run ever waits) is waited out:
    retrying before it, as an attempt, rejected rows Pendo would have taken."""
    world = duckdb_world
    world.emulator.inject_faults([Fault("429", retry_after_s=0.3, count=3)])
    impatient = dataclasses.replace(world.delivery, max_attempts=2, backoff_max_seconds=0.05, concurrency=1)
    outcome = world.run("accounts", delivery=impatient)
    assert (outcome.status, outcome.counts["rejected"]) == ("complete", 0)
    assert outcome.counts["throttled"] == 3
    assert_pendo_equals_source(world)


def test_halved_batches_carry_exactly_their_records_json():
    values = ["plain", 'quote " and comma ,', "[bracket]", "ünï €", "", "x" * 300, "7"]
    encoded = [json.dumps({"visitorId": f"v{i}", "values": {"s": v}}).encode() for i, v in enumerate(values)]
    expected = [json.loads(e) for e in encoded]
    batch = Batch.of([f"v{i}" for i in range(len(values))], encoded)
    assert json.loads(batch.body) == expected
    assert batch.size_bytes == len(batch.body)

    def leaves(b: Batch) -> list[Batch]:
        if len(b) == 1:
            return [b]
        first, second = b.halves()
        assert json.loads(first.body) + json.loads(second.body) == json.loads(b.body)
        assert first.ids + second.ids == b.ids
        return leaves(first) + leaves(second)

    singles = leaves(batch)
    assert [json.loads(b.body) for b in singles] == [[e] for e in expected]
    assert [b.ids[0] for b in singles] == [f"v{i}" for i in range(len(values))]
