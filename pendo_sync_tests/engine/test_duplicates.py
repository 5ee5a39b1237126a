"""Duplicate ids: every row of an id that more than one source row carries is rejected with a reason that
names the id and the count; nothing is sent for it, `check` and the run say how many ids are duplicated,
and the ledger holds at most one row per (sync, id), on every backend."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pendo_sync_tests.world import World

QUERY = "SELECT account_id, plan, seats, arr, health_score, is_paying, renewal_date, updated_at FROM accounts_copy"


@pytest.fixture
def duplicated(world: World) -> tuple[World, list[str]]:
    """accounts_copy: the accounts (no key), one id carried twice with other values, one three times."""
    world.sql("CREATE TABLE accounts_copy AS SELECT * FROM accounts")
    ids = [r[0] for r in world.sql("SELECT account_id FROM accounts ORDER BY account_id")]
    present = [i for i in ids if world.emulator.values_of("account", i) is not None]
    twice, thrice = present[0], present[1]
    for record_id, plan, copies in ((twice, "pro", 1), (thrice, "free", 2)):
        for n in range(copies):
            world.sql(
                "INSERT INTO accounts_copy (account_id, plan, seats, updated_at) VALUES (:i, :p, :s, :t)",
                i=record_id,
                p=plan,
                s=n,
                t=dt.datetime(2026, 10, 30),
            )
    return world, [twice, thrice]


def spec_of(world: World, **changes):
    return dataclasses.replace(
        world.spec("accounts"), **{"name": "accounts_copy", "table": "accounts_copy", **changes}
    )


def ledger_ids_held_twice(world: World) -> list:
    return world.sql(
        "SELECT record_id FROM pendo_sync.ledger GROUP BY sync_name, record_id HAVING count(*) > 1"
    )


def test_every_row_of_a_duplicated_id_is_rejected_and_none_is_sent(duplicated):
    world, (twice, thrice) = duplicated
    outcome = world.run(spec_of(world))

    assert outcome.status == "with_rejects"
    assert outcome.counts["duplicate"] == 2
    assert not {twice, thrice} & set(world.emulator.received_ids)
    assert world.emulator.values_of("account", twice) == {}
    reasons = {
        r["record_id"]: (r["kind"], r["reason"])
        for r in world.store.rejects.outstanding("accounts_copy", kind="duplicate")
    }
    assert reasons == {
        twice: (
            "duplicate",
            f"id {twice!r} is carried by 2 rows of accounts_copy; nothing is sent for it until one row carries it (make account_id unique in the source)",
        ),
        thrice: (
            "duplicate",
            f"id {thrice!r} is carried by 3 rows of accounts_copy; nothing is sent for it until one row carries it (make account_id unique in the source)",
        ),
    }
    assert ledger_ids_held_twice(world) == []
    assert twice not in world.store.ledger.rows("accounts_copy")

    # Nothing is resent over and over: a second run sends nothing, and rejects the two ids again.
    world.emulator.reset_stats()
    again = world.run(spec_of(world))
    assert world.emulator.received_ids == []
    assert again.counts["duplicate"] == 2

    # One row per id again: the id is sent, once, with the row that is left.
    world.sql("DELETE FROM accounts_copy WHERE account_id = :i AND plan = 'pro' AND seats = 0", i=twice)
    world.emulator.reset_stats()
    world.run(spec_of(world))
    assert world.emulator.received_ids == [twice]
    assert ledger_ids_held_twice(world) == []


def test_an_incremental_run_rejects_an_id_duplicated_outside_its_window(duplicated):
    world, (twice, _) = duplicated
    spec = spec_of(world)
    world.run(spec, mode="incremental")
    # A new row for an id another, older row carries: the window holds one of the two rows.
    (record_id,) = [i for i in world.store.ledger.rows("accounts_copy") if i != twice][:1]
    world.sql(
        "INSERT INTO accounts_copy (account_id, plan, updated_at) VALUES (:i, 'starter', :t)",
        i=record_id,
        t=dt.datetime(2026, 11, 30),
    )
    world.emulator.reset_stats()
    outcome = world.run(spec, mode="incremental")
    assert record_id not in world.emulator.received_ids
    assert outcome.counts["duplicate"] == 3
    assert ledger_ids_held_twice(world) == []


def test_a_query_source_with_duplicates_is_caught(duplicated):
    world, (twice, thrice) = duplicated
    outcome = world.run(spec_of(world, table=None, query=QUERY))
    assert outcome.counts["duplicate"] == 2
    assert not {twice, thrice} & set(world.emulator.received_ids)
    assert ledger_ids_held_twice(world) == []
