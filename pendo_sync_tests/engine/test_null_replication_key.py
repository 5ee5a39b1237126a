"""Rows whose replication key is NULL are in every incremental run's slice, diffed against the ledger like
the rest, so they are sent once and again only when they change. The incremental slice left them out: an
incremental-only sync never sent them, and `complete` hid it."""

from __future__ import annotations

import dataclasses

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync_tests.world import World

SPEC = SyncSpec(
    name="keyed",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="keyed",
    replication_key="updated_at",
    fields=(FieldMapping("plan", "plan", "string"),),
)


def test_rows_without_a_replication_key_are_sent_once_and_again_when_they_change(world: World) -> None:
    world.sql(
        "CREATE TABLE keyed (visitor_id VARCHAR(16) PRIMARY KEY, plan VARCHAR(16), updated_at TIMESTAMP)"
    )
    world.sql(
        "INSERT INTO keyed VALUES ('k1', 'a', TIMESTAMP '2026-11-01 00:00:00'), ('n1', 'b', NULL), "
        "('k2', 'c', TIMESTAMP '2026-11-02 00:00:00'), ('n2', 'd', NULL)"
    )
    world.emulator.add_field("visitor", "custom", "plan", "string")
    world.emulator.add_ids("visitor", ["k1", "n1", "k2", "n2", "n3"])

    first = world.run(SPEC, mode="incremental")
    assert (first.status, first.counts["sent"]) == ("complete", 4)
    stored = world.emulator.records("visitor")
    assert {i: stored[i].get("plan") for i in ("k1", "n1", "k2", "n2", "n3")} == {
        "k1": "a",
        "n1": "b",
        "k2": "c",
        "n2": "d",
        "n3": None,
    }

    unchanged = world.run(SPEC, mode="incremental")
    assert (unchanged.status, unchanged.counts["sent"]) == ("complete", 0)

    world.sql("UPDATE keyed SET plan = 'b2' WHERE visitor_id = 'n1'")
    world.sql("INSERT INTO keyed VALUES ('n3', 'e', NULL)")
    third = world.run(SPEC, mode="incremental")
    assert (third.status, third.counts["sent"]) == ("complete", 2)
    assert world.emulator.values_of("visitor", "n1") == {"plan": "b2"}
    assert world.emulator.values_of("visitor", "n3") == {"plan": "e"}


def test_a_rejected_row_without_a_key_is_retried_once_not_twice(world: World) -> None:
    """The retries outside the slice also took rows whose key is NULL, which are in the slice now: such a
    row came out twice, was sent twice and confirmed twice (PostgreSQL's one-row-per-id index then failed
    every run)."""
    world.sql(
        "CREATE TABLE keyed (visitor_id VARCHAR(16) PRIMARY KEY, plan VARCHAR(16), updated_at TIMESTAMP)"
    )
    world.sql("INSERT INTO keyed VALUES ('k1', 'a', TIMESTAMP '2026-11-01 00:00:00'), ('n1', 'b', NULL)")
    world.emulator.add_field("visitor", "custom", "plan", "string")
    world.emulator.add_ids("visitor", ["k1"])  # n1 is missing from Pendo: rejected, retried later
    first = world.run(SPEC, mode="incremental")
    assert first.counts["missing"] == 1
    world.emulator.add_ids("visitor", ["n1"])
    world.emulator.reset_stats()
    retried = world.run(dataclasses.replace(SPEC, missing_retry_seconds=0), mode="incremental")
    assert world.emulator.received_ids == ["n1"]
    assert (retried.status, retried.counts["sent"], retried.counts["confirmed"]) == ("complete", 1, 1)
    assert world.sql("SELECT count(*) FROM pendo_sync.ledger WHERE record_id = 'n1'") == [(1,)]
