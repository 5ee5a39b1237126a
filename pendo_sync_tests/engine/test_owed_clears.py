"""With on_delete: clear, what a run could not settle with Pendo is cleared once its id leaves the source,
by every later run whatever its mode (invariants 2 and 4; found by a black-box hunt):
- a write Pendo applied but never confirmed (its answer lost) for an id new to the ledger: the error
  reject was forgotten when the id left the source, and Pendo kept the values;
- a clear that failed: only full runs tried it again; incremental runs reported `complete`."""

from __future__ import annotations

from dataclasses import replace

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.world import TEST_DELIVERY, World

ONCE = replace(TEST_DELIVERY, max_attempts=1)


def plans_sync(world: World) -> SyncSpec:
    world.sql(
        "CREATE TABLE plans (id VARCHAR(16) PRIMARY KEY, plan VARCHAR(16), updated_at TIMESTAMP NOT NULL)"
    )
    world.emulator.add_field("account", "custom", "plan", "string")
    world.emulator.add_ids("account", ["a1", "a2"])
    return SyncSpec(
        name="plans", kind="account", group="custom", id_column="id", table="plans",
        replication_key="updated_at", on_delete="clear", fields=(FieldMapping("plan", "plan", "string"),),
    )  # fmt: skip


def test_a_write_whose_answer_was_lost_is_cleared_when_its_id_leaves_the_source(every_world: World):
    world = every_world
    spec = plans_sync(world)
    world.sql("INSERT INTO plans VALUES ('a1', 'pro', now())")
    world.run(spec)
    world.sql("INSERT INTO plans VALUES ('a2', 'ghost', now())")
    world.emulator.inject_faults([Fault("lost_answer", count=5)])
    lost = world.run(spec, delivery=ONCE, mode="incremental")
    assert lost.counts["errors"] == 1
    assert world.emulator.values_of("account", "a2") == {"plan": "ghost"}  # applied, never confirmed
    world.sql("DELETE FROM plans WHERE id = 'a2'")
    after = world.run(spec, mode="full")
    assert after.counts["cleared"] == 1
    assert world.emulator.values_of("account", "a2") == {}
    assert world.store.rejects.outstanding("plans") == []


def test_a_failed_clear_is_retried_by_incremental_runs(world: World):
    spec = plans_sync(world)
    world.sql("INSERT INTO plans VALUES ('a1', 'pro', now()), ('a2', 'basic', now())")
    world.run(spec)
    world.sql("DELETE FROM plans WHERE id = 'a2'")
    world.emulator.inject_faults([Fault("status", status=503, count=5)])
    failed = world.run(spec, delivery=ONCE, mode="full")
    assert failed.counts["errors"] == 1
    (owed,) = world.store.rejects.outstanding("plans")
    assert (owed["record_id"], owed["kind"]) == ("a2", "error")
    incremental = world.run(spec, mode="incremental")
    assert (incremental.status, incremental.counts["cleared"]) == ("complete", 1)
    assert world.emulator.values_of("account", "a2") == {}
    assert world.store.rejects.outstanding("plans") == []


def test_an_owed_clear_never_creates_a_record(duckdb_world: World):
    """With create_missing, the owed clear of an id Pendo never got (its write failed with a 503) created an
    empty record in Pendo (found by a review)."""
    world = duckdb_world
    spec = replace(plans_sync(world), create_missing=True)
    world.sql("INSERT INTO plans VALUES ('a1', 'pro', now())")
    world.run(spec)
    world.sql("INSERT INTO plans VALUES ('zz', 'never', now())")
    world.emulator.inject_faults([Fault("status", status=503, count=5)])
    assert world.run(spec, delivery=ONCE, mode="incremental").counts["errors"] == 1
    world.sql("DELETE FROM plans WHERE id = 'zz'")
    world.run(spec, mode="incremental")
    assert "zz" not in world.emulator.records("account")
    assert world.store.rejects.outstanding("plans") == []


def test_rejected_ids_come_page_by_page_each_read_on_its_own(duckdb_world: World):
    """With a separate state database, owed_clears reads the error rejects while the run's writer commits:
    each page is a query of its own, so no read stays open across them."""
    world = duckdb_world
    world.run("accounts")
    missing = sorted(r["record_id"] for r in world.store.rejects.outstanding("accounts"))
    pages = list(world.store.rejects.rejected_ids("accounts", 3, only="missing"))
    assert [len(p) for p in pages] == [3, 1] and sum(pages, []) == missing
