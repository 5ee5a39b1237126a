"""A changed mapping (a field added, a type, a wire form) changes what every row sends, so the next run
of any mode sends every row once, however far back its key: the incremental run sent only its look-back
window and said complete, and Pendo kept the old form of the other rows until a full run."""

from __future__ import annotations

import dataclasses

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync_tests.world import World

SPEC = SyncSpec(
    name="mapped",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="mapped",
    replication_key="updated_at",
    lookback_seconds=60,
    fields=(FieldMapping("plan", "plan", "string"),),
)
IDS = [f"m{n}" for n in range(6)]
WIDER = dataclasses.replace(SPEC, fields=(*SPEC.fields, FieldMapping("seats", "seats", "integer")))


def mapped_table(world: World) -> None:
    """Six rows whose keys are a day apart (the look-back covers only the newest), and their fields."""
    world.sql(
        "CREATE TABLE mapped (visitor_id VARCHAR(16) PRIMARY KEY, plan VARCHAR(16), seats INTEGER, updated_at TIMESTAMP)"
    )
    for n, rid in enumerate(IDS):
        world.sql(
            "INSERT INTO mapped VALUES (:i, 'free', :n, TIMESTAMP '2026-11-01 00:00:00' + :n * INTERVAL '1 day')",
            i=rid,
            n=n,
        )
    for name, kind in (("plan", "string"), ("seats", "integer")):
        world.emulator.add_field("visitor", "custom", name, kind)
    world.emulator.add_ids("visitor", IDS)


def test_the_run_after_a_mapping_change_sends_every_row_once_in_any_mode(world: World) -> None:
    mapped_table(world)
    assert world.run(SPEC, mode="incremental").counts["sent"] == 6
    assert world.run(SPEC, mode="incremental").counts["sent"] == 0

    changed = world.run(WIDER, mode="incremental")
    assert (changed.status, changed.counts["sent"]) == ("complete", 6)
    assert changed.slice.endswith("(every row: the mapping changed since version 2)")
    assert {i: world.emulator.values_of("visitor", i) for i in IDS} == {
        rid: {"plan": "free", "seats": n} for n, rid in enumerate(IDS)
    }
    after = world.run(WIDER, mode="incremental")  # back to the window
    assert (after.status, after.counts["sent"]) == ("complete", 0)
    assert after.slice.startswith("replication key in [")


def test_a_sync_whose_replication_key_was_removed_runs_full(world: World) -> None:
    """The cursor of the runs before stays in the state; it was an internal error (AssertionError)."""
    assert world.run("accounts", mode="incremental").status in ("complete", "with_rejects")
    keyless = world.spec("accounts", replication_key=None)
    outcome = world.run(keyless)
    assert (outcome.status, outcome.slice, outcome.counts["sent"]) in {
        ("complete", "all rows", 0),
        ("with_rejects", "all rows", 0),
    }


def test_a_backfill_after_a_mapping_change_does_not_hide_it_from_the_next_incremental_run(
    world: World,
) -> None:
    """A backfill covers only its window: the mapping it ran with is not what every row has."""
    import datetime as dt

    mapped_table(world)
    assert world.run(SPEC, mode="incremental").counts["sent"] == 6

    day = world.run(WIDER, mode="backfill", window=(dt.datetime(2026, 11, 6), dt.datetime(2026, 11, 7)))
    assert day.counts["sent"] == 1
    changed = world.run(WIDER, mode="incremental")
    assert changed.counts["sent"] == 5 and "the mapping changed since version 1" in changed.slice
