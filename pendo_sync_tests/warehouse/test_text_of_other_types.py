"""A column of a type that is not text, mapped to a string field: Pendo gets its text as the database writes
it (JSON as JSON, not Python's repr of a dict), or, where pendo_sync knows no faithful text (binary, an
interval), the row is rejected naming the column and the cast that fixes it. It sent "{'a': [1, 2]}" for
{"a": [1, 2]} and "<memory at 0x...>" for a bytea, and verify then saw drift in every such row."""

from __future__ import annotations

import asyncio

import orjson

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.engine.verify import verify
from pendo_sync_tests.world import World

SPEC = SyncSpec(
    name="others",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="others",
    fields=(FieldMapping("doc", "doc", "string"), FieldMapping("raw", "raw", "string")),
)


def test_json_goes_as_json_text_and_binary_is_rejected_with_the_fix(world: World) -> None:
    postgres = world.engine.dialect.name == "postgresql"
    doc, raw = ("JSONB", "BYTEA") if postgres else ("JSON", "BLOB")
    world.sql(f"CREATE TABLE others (visitor_id VARCHAR(16) PRIMARY KEY, doc {doc}, raw {raw})")
    blob = "'\\xdeadbeef'::bytea" if postgres else "'\\xDE\\xAD'::BLOB"
    world.sql(
        "INSERT INTO others VALUES ('j1', '{\"a\": [1, 2], \"b\": \"x\"}', NULL), ('j2', '[1, \"two\"]', NULL), "
        f"('b1', NULL, {blob})"
    )
    for name in ("doc", "raw"):
        world.emulator.add_field("visitor", "custom", name, "string")
    world.emulator.add_ids("visitor", ["j1", "j2", "b1"])

    outcome = world.run(SPEC)
    assert (outcome.counts["confirmed"], outcome.counts["rejected"]) == (2, 1)
    stored = world.emulator.records("visitor")
    # JSON text (DuckDB's as stored, PostgreSQL's jsonb written compact), never Python's repr of it.
    assert isinstance(stored["j1"]["doc"], str) and orjson.loads(stored["j1"]["doc"]) == {
        "a": [1, 2],
        "b": "x",
    }
    assert isinstance(stored["j2"]["doc"], str) and orjson.loads(stored["j2"]["doc"]) == [1, "two"]
    (reject,) = world.store.rejects.outstanding("others")
    assert (reject["record_id"], reject["kind"], reject["reason"]) == (
        "b1",
        "invalid",
        "column 'raw' -> field 'raw': a binary value has no text form to send; select the "
        "text you want in the sync's query (hex, base64 or a decoding)",
    )

    async def read_back():  # type: ignore[no-untyped-def]
        async with world.client() as client:
            return await verify(SPEC, world.engine, world.store, client, None)

    result = asyncio.run(read_back())
    assert (result.checked, result.differing) == (2, 0)  # the JSON text is what the source holds
