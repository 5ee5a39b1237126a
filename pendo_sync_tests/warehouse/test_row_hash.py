"""The row hash sees the whole of every mapped value: a change past the 65,535th character of a long text, or
in the last element of a long list, is a change, and the next run sends it."""

from __future__ import annotations

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.warehouse.engines import backend_of
from pendo_sync_tests.world import World

MEGABYTE = 1_000_000
ELEMENTS = 100_000

SPEC = SyncSpec(
    name="long_values",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="long_values",
    fields=(FieldMapping("note", "note", "string"), FieldMapping("tags", "tags", "list", "string")),
)


def test_a_change_at_the_end_of_a_long_text_or_list_is_sent(world: World):
    list_type = "VARCHAR[]" if backend_of(world.engine) == "duckdb" else "TEXT[]"
    world.sql(f"CREATE TABLE long_values (visitor_id VARCHAR(64) PRIMARY KEY, note TEXT, tags {list_type})")
    tags = [f"t{n}" for n in range(ELEMENTS)]
    world.sql(
        "INSERT INTO long_values VALUES ('long-text', :note, NULL), ('long-list', NULL, :tags)",
        note="a" * MEGABYTE,
        tags=tags,
    )
    world.emulator.add_field("visitor", "custom", "note", "string")
    world.emulator.add_field("visitor", "custom", "tags", "list", "string")
    world.emulator.add_ids("visitor", ["long-text", "long-list"])
    first = world.run(SPEC)
    assert first.counts["confirmed"] == 2

    world.sql(
        "UPDATE long_values SET note = :note WHERE visitor_id = 'long-text'", note="a" * (MEGABYTE - 1) + "b"
    )
    world.sql("UPDATE long_values SET tags = :tags WHERE visitor_id = 'long-list'", tags=[*tags[:-1], "last"])
    world.emulator.reset_stats()
    second = world.run(SPEC)

    assert sorted(world.emulator.received_ids) == ["long-list", "long-text"]
    assert second.counts["confirmed"] == 2
    assert world.emulator.values_of("visitor", "long-text")["note"][-2:] == "ab"
    assert world.emulator.values_of("visitor", "long-list")["tags"][-1] == "last"
