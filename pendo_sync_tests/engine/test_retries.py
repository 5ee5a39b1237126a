"""Rows a run could not apply are retried by every later run, whatever its mode and its slice: an
incremental run's rejects come back in the next incremental run even though its cursor moved past them,
in a backfill of other days, and with the ledger in a separate state database. The end state in Pendo is
the source's; rows that still fail stay rejected with their newest reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from pendo_sync.pendo.emulator import Fault
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import make_engine
from pendo_sync_tests.expected import expected_fields
from pendo_sync_tests.world import ACCOUNTS, TEST_DELIVERY, World

PRESENT = ACCOUNTS - ACCOUNTS // 50
FAILING = replace(TEST_DELIVERY, max_attempts=2, concurrency=1)


def outstanding(world: World, store: StateStore | None = None) -> dict[str, int]:
    """Outstanding rejects of the accounts sync by kind, read straight from the rejects table."""
    engine = (store or world.store).engine
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT kind, count(*) FROM pendo_sync.rejects WHERE sync_name = 'accounts' GROUP BY kind"
        ).all()
    return {kind: int(n) for kind, n in rows}


def pendo_equals_source(world: World) -> bool:
    expected = expected_fields(world.engine, world.spec("accounts"))
    have = world.emulator.records("account")
    want = {i: {f: v for f, v in vals.items() if v is not None} for i, vals in expected.items() if i in have}
    return {i: v for i, v in have.items() if v} == {i: v for i, v in want.items() if v}


def fail_every_call(world: World) -> None:
    world.emulator.inject_faults([Fault("status", status=500, count=100_000)])


def fail_the_first_batch(world: World) -> None:
    """Every attempt at the first batch answers 500 (FAILING: two attempts, one call at a time)."""
    world.emulator.inject_faults([Fault("status", status=500, count=FAILING.max_attempts)])


def refuse_most_health_scores(world: World) -> None:
    """Pendo's `errors` for every row with a health score: the field now has another type in Pendo."""
    world.emulator.add_field("account", "custom", "health_score", "integer")


def restore(world: World) -> None:
    world.emulator.clear_faults()
    world.emulator.add_field("account", "custom", "health_score", "float")


@pytest.mark.parametrize(
    "failure", [fail_the_first_batch, refuse_most_health_scores], ids=["http-500", "pendo-errors"]
)
def test_an_incremental_runs_rejects_are_sent_by_the_next_incremental_run(world: World, failure):
    failure(world)
    first = world.run("accounts", delivery=FAILING, mode="incremental")
    owed = outstanding(world).get("error", 0)
    assert 0 < owed < ACCOUNTS
    assert first.status == "with_rejects"
    assert first.cursor is not None  # the cursor moves: the rejects, not the cursor, hold what is owed
    restore(world)

    second = world.run("accounts", mode="incremental")

    assert second.counts["retried"] == owed
    assert pendo_equals_source(world)
    assert outstanding(world) == {"missing": ACCOUNTS // 50}
    assert world.store.ledger.count("accounts") == PRESENT


def test_a_backfill_of_other_days_retries_the_outstanding_rejects(world: World):
    fail_every_call(world)
    world.run("accounts", delivery=FAILING)
    world.emulator.clear_faults()
    # A window of the key that holds no rows: only the rejects come back.
    empty_day = (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 2))
    outcome = world.run("accounts", mode="backfill", window=empty_day)
    assert outcome.counts["retried"] == ACCOUNTS
    assert pendo_equals_source(world)
    assert world.store.versions.current_cursor("accounts") is None  # a backfill leaves the live cursor


def test_rows_that_still_fail_stay_rejected_with_their_newest_reason(duckdb_world: World):
    world = duckdb_world
    fail_the_first_batch(world)
    world.run("accounts", delivery=FAILING, mode="incremental")
    first = {r["record_id"]: r["reason"] for r in world.store.rejects.outstanding("accounts", kind="error")}
    assert set(first.values()) == {"gave up after 2 attempts: HTTP 500: injected fault: HTTP 500"}
    refuse_most_health_scores(world)
    world.run("accounts", delivery=FAILING, mode="incremental")
    with_score = {r[0] for r in world.sql("SELECT account_id FROM accounts WHERE health_score IS NOT NULL")}
    second = {r["record_id"]: r["reason"] for r in world.store.rejects.outstanding("accounts", kind="error")}
    assert set(second) == set(first) & with_score
    assert all(
        reason.startswith("Pendo rejected the value: field 'health_score': value ")
        for reason in second.values()
    )
    assert all(reason.endswith(" is not an integer") for reason in second.values())


def test_missing_ids_are_retried_once_missing_retry_seconds_have_passed(world: World):
    world.run("accounts", mode="incremental")
    missing = {r["record_id"] for r in world.store.rejects.outstanding("accounts", kind="missing")}
    assert len(missing) == ACCOUNTS // 50
    world.emulator.reset_stats()
    world.run("accounts", mode="incremental")  # within missing_retry_seconds: not tried again yet
    assert not missing & set(world.emulator.received_ids)
    world.emulator.add_ids("account", sorted(missing))  # Pendo has them now
    world.run(world.spec("accounts", missing_retry_seconds=0), mode="incremental")
    assert missing <= set(world.emulator.received_ids)
    assert outstanding(world) == {}
    assert pendo_equals_source(world)


def test_a_rejected_row_that_left_the_source_is_forgotten_by_a_full_run(duckdb_world: World):
    world = duckdb_world
    fail_every_call(world)
    world.run("accounts", delivery=FAILING)
    world.emulator.clear_faults()
    gone = world.sql("SELECT account_id FROM accounts ORDER BY account_id LIMIT 3")
    world.sql(
        "DELETE FROM accounts WHERE account_id IN (:a, :b, :c)", a=gone[0][0], b=gone[1][0], c=gone[2][0]
    )
    world.run("accounts")
    left = {r["record_id"] for r in world.store.rejects.outstanding("accounts")}
    assert not left & {g[0] for g in gone}
    assert pendo_equals_source(world)


@pytest.mark.postgres
def test_a_separate_state_database_retries_rejects_by_id(duckdb_world: World, pg_url: str):
    world = duckdb_world
    world.store = StateStore(make_engine(pg_url), "pendo_sync")
    fail_the_first_batch(world)
    first = world.run("accounts", delivery=FAILING, mode="incremental")
    assert (first.status, outstanding(world)["error"]) == ("with_rejects", TEST_DELIVERY.batch_records)
    second = world.run("accounts", mode="incremental")
    assert second.counts["retried"] == TEST_DELIVERY.batch_records
    assert pendo_equals_source(world)
    world.emulator.reset_stats()
    world.run("accounts", mode="incremental")
    assert world.emulator.received_ids == []  # nothing owed any more: nothing sent
