"""Replication keys that are numbers: the cursor keeps the key exactly, and rows that arrive later with
the key the cursor holds are read (found by a black-box hunt)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.errors import UsageError
from pendo_sync_tests.world import World


def number_key_sync(world: World, key_type: str) -> SyncSpec:
    world.sql(f"CREATE TABLE nkey (id VARCHAR(16) PRIMARY KEY, v VARCHAR(16), k {key_type})")
    world.emulator.add_field("visitor", "custom", "v", "string")
    world.emulator.add_ids("visitor", ["n1", "n2", "n3"])
    return SyncSpec(
        name="nkey", kind="visitor", group="custom", id_column="id", table="nkey", replication_key="k",
        fields=(FieldMapping("v", "v", "string"),),
    )  # fmt: skip


def test_a_decimal_keys_cursor_is_kept_exactly(world: World):
    """The cursor 123456789012345678.25 was read back through a float (1.2345678901234568e+17), past
    123456789012345678.30: that row was never sent by an incremental run."""
    spec = number_key_sync(world, "DECIMAL(20, 2)")
    world.sql("INSERT INTO nkey VALUES ('n1', 'a', 123456789012345678.25)")
    first = world.run(spec, mode="incremental")
    assert first.cursor == Decimal("123456789012345678.25")
    world.sql("INSERT INTO nkey VALUES ('n2', 'b', 123456789012345678.30)")
    second = world.run(spec, mode="incremental")
    assert (second.counts["confirmed"], second.cursor) == (1, Decimal("123456789012345678.30"))
    assert world.emulator.values_of("visitor", "n2") == {"v": "b"}


def test_a_row_arriving_later_with_the_cursors_integer_key_is_sent(world: World):
    """An integer key has no look-back: the window began after the cursor, so a row committed later
    with the same key (epoch seconds, a batch number) was never read by an incremental run. The window
    now begins at the cursor; the diff with the ledger sends only what changed."""
    spec = number_key_sync(world, "BIGINT")
    world.sql("INSERT INTO nkey VALUES ('n1', 'a', 100), ('n2', 'b', 200)")
    assert world.run(spec, mode="incremental").cursor == 200
    world.sql("INSERT INTO nkey VALUES ('n3', 'c', 200)")
    world.emulator.reset_stats()
    second = world.run(spec, mode="incremental")
    assert world.emulator.received_ids == ["n3"]
    assert (second.counts["confirmed"], second.cursor) == (1, 200)


def test_a_cursor_the_keys_new_type_cannot_take_is_named_with_the_fix(world: World):
    """The key's type changed (epoch seconds to a timestamp): every incremental run failed with the
    database's 'operator does not exist: timestamp with time zone >= integer' (found by a black-box hunt).
    Now the run says which cursor no longer fits and what to do; a full run starts the cursor again."""
    spec = number_key_sync(world, "BIGINT")
    world.sql("INSERT INTO nkey VALUES ('n1', 'a', 1700000000)")
    world.run(spec, mode="incremental")
    world.sql("ALTER TABLE nkey ALTER COLUMN k TYPE TIMESTAMPTZ USING to_timestamp(k)")
    with pytest.raises(UsageError) as refused:
        world.run(spec, mode="incremental")
    assert str(refused.value) == (
        "sync 'nkey': the cursor 1700000000 kept by the last run is not a time, as replication key 'k' now "
        "is (its type changed); run the sync once with --mode full to read every row and start the cursor "
        "again"
    )
    full = world.run(spec, mode="full")
    assert full.cursor == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert world.run(spec, mode="incremental").status == "complete"
