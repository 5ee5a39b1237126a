"""A full refresh (resend every row, whatever the ledger says) is owed until a run completes it: a refresh
stopped by the runtime budget, or killed, is continued by the next run of any mode, which sends exactly
the rows the refresh has not sent yet (invariant 5: a run that nears its budget ends cleanly and the next
one resumes). Before, each partial refresh started over, and a plain run after one sent nothing."""

from __future__ import annotations

import dataclasses

import pytest

from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import make_engine
from pendo_sync_tests.engine.test_delivery import PRESENT, assert_pendo_equals_source
from pendo_sync_tests.world import World


def tight(world: World):
    """A delivery that spends its 0.5 s budget after a few 10-record calls of 0.1 s each."""
    world.emulator.settings.fixed_latency_s = 0.1
    return dataclasses.replace(
        world.delivery, runtime_budget_seconds=0.5, concurrency=1, batch_records=10, max_batch_records=10
    )


def refreshed_in_parts(world: World, then: dict) -> tuple[list[str], list[str]]:
    """A first sync, then a refresh stopped by the budget, then the run `then` asks for: the ids each of
    the last two sent."""
    world.run("accounts")
    world.emulator.reset_stats()
    partial = world.run("accounts", delivery=tight(world), full_refresh=True)
    assert partial.status == "partial"
    first_part = list(world.emulator.received_ids)
    assert 0 < len(first_part) < PRESENT
    world.emulator.settings.fixed_latency_s = 0
    world.emulator.reset_stats()
    rest = world.run("accounts", **then)
    assert rest.status == "complete"
    assert "refresh" in rest.slice  # the run says it continues a refresh
    return first_part, list(world.emulator.received_ids)


def all_sent_once(world: World, first_part: list[str], rest: list[str]) -> None:
    present = {i for i, _ in world.emulator.records("account").items()}
    assert len(first_part) + len(rest) == len(set(first_part) | set(rest))  # nothing sent twice
    assert set(first_part) | set(rest) >= present  # every record Pendo has got the refresh
    assert_pendo_equals_source(world)
    world.emulator.reset_stats()
    after = world.run("accounts")
    assert after.status == "complete" and world.emulator.received_ids == []  # the refresh is done


def test_a_plain_full_run_completes_a_refresh_the_budget_stopped(world: World):
    first_part, rest = refreshed_in_parts(world, {})
    all_sent_once(world, first_part, rest)


def test_a_refresh_run_again_continues_instead_of_starting_over(world: World):
    world.run("accounts")
    world.emulator.reset_stats()
    delivery = tight(world)
    sent: list[str] = []
    for _ in range(60):  # each run sends a few batches; together they must finish
        outcome = world.run("accounts", delivery=delivery, full_refresh=True)
        sent += world.emulator.received_ids
        world.emulator.reset_stats()
        if outcome.status == "complete":
            break
    else:
        pytest.fail("a budget-limited refresh never completed")
    assert len(sent) == len(set(sent))
    assert set(sent) >= set(world.emulator.records("account"))
    assert_pendo_equals_source(world)


def test_an_incremental_run_completes_a_refresh_the_budget_stopped(world: World):
    first_part, rest = refreshed_in_parts(world, {"mode": "incremental"})
    all_sent_once(world, first_part, rest)


@pytest.mark.postgres
def test_a_refresh_continues_with_a_separate_state_database(duckdb_world: World, pg_url: str):
    world = duckdb_world
    world.store = StateStore(make_engine(pg_url), "pendo_sync")
    first_part, rest = refreshed_in_parts(world, {})
    all_sent_once(world, first_part, rest)


def test_a_killed_refresh_is_continued(world: World):
    """A refresh whose process died leaves its version running: the next run marks it abandoned and
    continues the refresh from what it confirmed."""
    world.run("accounts")
    world.emulator.reset_stats()
    partial = world.run("accounts", delivery=tight(world), full_refresh=True)
    first_part = list(world.emulator.received_ids)
    # As a kill -9 leaves it: the version still running (test_kill.py kills real processes).
    world.sql(
        "UPDATE pendo_sync.versions SET status = 'running' WHERE sync_name = 'accounts' AND version = :v",
        v=partial.version,
    )
    world.emulator.settings.fixed_latency_s = 0
    world.emulator.reset_stats()
    rest = world.run("accounts")
    assert [v.status for v in world.store.versions.all("accounts")][-2:] == ["abandoned", "complete"]
    assert "refresh" in rest.slice
    all_sent_once(world, first_part, list(world.emulator.received_ids))
