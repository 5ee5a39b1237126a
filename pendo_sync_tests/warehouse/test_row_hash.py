"""The row hash sees the whole of every mapped value: a change past the 65,535th character of a long text, or
in the last element of a long list, is a change, and the next run sends it."""

from __future__ import annotations

import dataclasses
import hashlib

import sqlalchemy as sa

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.warehouse.engines import backend_of
from pendo_sync.warehouse.hashes import field_fingerprints, row_hash
from pendo_sync.warehouse.slices import source_relation
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


def test_the_row_hash_is_the_md5_of_the_same_text_as_every_release_hashed(world: World):
    """A ledger written by an earlier release must keep matching: the hashed text is the mapping's
    signature, then each value's text (NULL as chr 30), each after chr 31; however the SQL builds it."""
    world.sql(
        "CREATE TABLE hashed (visitor_id VARCHAR(64) PRIMARY KEY, note TEXT, seats INTEGER, paid BOOLEAN)"
    )
    world.sql("INSERT INTO hashed VALUES ('v1', 'a,b', 3, true), ('v2', NULL, NULL, false)")
    spec = SyncSpec(
        name="hashed",
        kind="visitor",
        group="custom",
        id_column="visitor_id",
        table="hashed",
        fields=(
            FieldMapping("note", "note", "string"),
            FieldMapping("seats", "seats", "integer"),
            FieldMapping("paid", "paid", "boolean"),
        ),
    )
    rel = source_relation(spec)
    with world.engine.connect() as conn:
        got = dict(
            conn.execute(
                sa.select(rel.c.visitor_id, row_hash(rel, spec, {"paid": "boolean"})).order_by(
                    rel.c.visitor_id
                )
            ).all()
        )
    signature = "note>note:string:|seats>seats:integer:|paid>paid:boolean:"
    assert got == {
        "v1": hashlib.md5(f"{signature}\x1fa,b\x1f3\x1ft".encode()).hexdigest(),
        "v2": hashlib.md5(f"{signature}\x1f\x1e\x1f\x1e\x1ff".encode()).hexdigest(),
    }


def test_a_wide_sync_hashes_and_fingerprints_every_field(world: World):
    """PostgreSQL takes at most 100 arguments to a function: 120 fields still hash to the same text, and
    the change log's 113 fingerprints are all there."""
    columns = [f"c{n}" for n in range(120)]
    world.sql(
        f"CREATE TABLE wide (visitor_id VARCHAR(64) PRIMARY KEY, {', '.join(f'{c} INTEGER' for c in columns)})"
    )
    world.sql(f"INSERT INTO wide VALUES ('v1', {', '.join(str(n) for n in range(120))})")
    spec = SyncSpec(
        name="wide",
        kind="visitor",
        group="custom",
        id_column="visitor_id",
        table="wide",
        fields=tuple(FieldMapping(c, c, "integer") for c in columns),
    )
    rel = source_relation(spec)
    logged = dataclasses.replace(spec, fields=spec.fields[:113])
    with world.engine.connect() as conn:
        ((got, prints),) = conn.execute(sa.select(row_hash(rel, spec), field_fingerprints(rel, logged))).all()
    signature = "|".join(f"{c}>{c}:integer:" for c in columns)
    assert got == hashlib.md5((signature + "".join(f"\x1f{n}" for n in range(120))).encode()).hexdigest()
    assert len(prints.split(",")) == 113 and len(set(prints.split(","))) == 113


SEPARATORS = SyncSpec(
    name="people",
    kind="visitor",
    group="custom",
    id_column="id",
    table="people",
    fields=(FieldMapping("first", "first", "string"), FieldMapping("last", "last", "string")),
)


def test_values_holding_the_hashs_own_separators_are_told_apart(world: World):
    """The hashed text joins values with chr 31 and writes NULL as chr 30: a value that was exactly chr 30
    hashed as NULL, and a chr 31 moving between two neighbouring values hashed the same, so such a change
    was never sent (found by a black-box hunt). Values holding chr 29, 30 or 31 are now escaped; all
    others hash as every release hashed them."""
    world.sql("CREATE TABLE people (id VARCHAR(16) PRIMARY KEY, first VARCHAR(64), last VARCHAR(64))")
    world.sql(
        "INSERT INTO people VALUES ('v1', 'Ann' || chr(31) || 'Lee', 'Smith'), ('v2', chr(30), 'Jones'), "
        "('v3', chr(29) || 'b', 'x'), ('v4', 'plain', 'row')"
    )
    for name in ("first", "last"):
        world.emulator.add_field("visitor", "custom", name, "string")
    world.emulator.add_ids("visitor", ["v1", "v2", "v3", "v4"])
    assert world.run(SEPARATORS).counts["confirmed"] == 4
    world.sql("UPDATE people SET first = 'Ann', last = 'Lee' || chr(31) || 'Smith' WHERE id = 'v1'")
    world.sql("UPDATE people SET first = NULL WHERE id = 'v2'")
    world.sql("UPDATE people SET first = chr(30) WHERE id = 'v3'")  # escaped as chr 29 'b' would be
    world.emulator.reset_stats()
    again = world.run(SEPARATORS)
    assert sorted(world.emulator.received_ids) == ["v1", "v2", "v3"]
    assert again.counts["confirmed"] == 3
    assert world.emulator.values_of("visitor", "v1") == {"first": "Ann", "last": "Lee\x1fSmith"}
    assert "first" not in world.emulator.values_of("visitor", "v2")  # cleared
    assert world.emulator.values_of("visitor", "v3")["first"] == "\x1e"
