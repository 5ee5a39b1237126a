"""A revert forgets what later versions confirmed, and the next run of any mode resends it: the rows it
forgets may have keys at or below the cursor it goes back to (a full run confirmed them), so the next
incremental run diffs the whole table with the ledger. Rows still owed stay owed: their rejects are kept.
The revert restored the old cursor and deleted later rejects, so an incremental run resent nothing, the
invalid rows left the rejects, and both ended `complete`."""

from __future__ import annotations

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync_tests.world import World

SPEC = SyncSpec(
    name="rv",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="rv",
    replication_key="updated_at",
    fields=(FieldMapping("plan", "plan", "string"), FieldMapping("seats", "seats", "integer")),
)
IDS = [f"r{n:02d}" for n in range(20)]


def test_the_run_after_a_revert_resends_what_it_forgot_and_keeps_what_is_owed(world: World) -> None:
    world.sql(
        "CREATE TABLE rv (visitor_id VARCHAR(16) PRIMARY KEY, plan VARCHAR(16), seats VARCHAR(8), updated_at TIMESTAMP)"
    )
    for n, rid in enumerate(IDS):
        seats = "n/a" if n < 3 else str(n)  # three rows invalid: rejected, owed
        world.sql("INSERT INTO rv VALUES (:i, 'free', :s, TIMESTAMP '2026-11-01 00:00:00')", i=rid, s=seats)
    world.emulator.add_field("visitor", "custom", "plan", "string")
    world.emulator.add_field("visitor", "custom", "seats", "integer")
    world.emulator.add_ids("visitor", IDS)

    first = world.run(SPEC, mode="incremental")
    assert (first.status, first.counts["confirmed"], first.counts["rejected"]) == ("with_rejects", 17, 3)
    # Changed without a newer key: only a full run sees it.
    world.sql("UPDATE rv SET plan = 'pro' WHERE visitor_id IN ('r10', 'r11', 'r12', 'r13', 'r14')")
    second = world.run(SPEC, mode="full")
    assert second.counts["confirmed"] == 5

    world.store.versions.revert("rv", first.version)
    assert len(world.store.rejects.outstanding("rv")) == 3  # still owed
    world.emulator.reset_stats()
    third = world.run(SPEC, mode="incremental")
    assert third.status == "with_rejects"
    assert third.slice.endswith("(every row: reverted to version 1)")
    assert sorted(world.emulator.received_ids) == ["r10", "r11", "r12", "r13", "r14"]
    assert sorted(r["record_id"] for r in world.store.rejects.outstanding("rv")) == ["r00", "r01", "r02"]
    assert len(world.store.ledger.rows("rv")) == 17
