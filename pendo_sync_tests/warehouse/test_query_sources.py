"""Query sources as people write them: a trailing `-- comment`, a leading `/* comment */`, colons in text
and in array slices, a percent sign, and a trailing semicolon; each runs on PostgreSQL and DuckDB."""

from __future__ import annotations

import dataclasses

import pytest

from pendo_sync.config import FieldMapping, parse_config
from pendo_sync.warehouse.engines import backend_of
from pendo_sync_tests.world import ACCOUNTS, World

SLICE = {"duckdb": "(['a', 'b', 'c'])[:2]", "postgresql": "(ARRAY['a', 'b', 'c'])[:2]"}
QUERIES = {
    "trailing comment": "SELECT account_id, plan, updated_at FROM accounts -- every account",
    "leading comment": "/* accounts for Pendo */\nSELECT account_id, plan, updated_at FROM accounts",
    "colons": "SELECT account_id, plan || ' at 12:30' AS plan, {slice} AS tags, updated_at FROM accounts",
    "percent and semicolon": (
        "SELECT account_id, CASE WHEN plan LIKE '%o%' THEN plan ELSE 'x' END AS plan, updated_at\n"
        "FROM accounts; -- done"
    ),
}


@pytest.mark.parametrize("name", QUERIES)
def test_a_query_source_runs_as_written(world: World, name: str):
    query = QUERIES[name].format(slice=SLICE[backend_of(world.engine)])
    raw = {"syncs": {"by_query": {"kind": "account", "query": query, "id_column": "account_id",
                                  "replication_key": "updated_at", "fields": {"plan": "string"}}}}  # fmt: skip
    (spec,) = parse_config(raw).syncs
    if name == "colons":
        spec = dataclasses.replace(
            spec, fields=(*spec.fields, FieldMapping("tags", "tags", "list", "string"))
        )
        world.emulator.add_field("account", "custom", "tags", "list", "string")
    outcome = world.run(spec)
    assert outcome.counts["rows_read"] == ACCOUNTS
    assert outcome.status == "complete"
    values = next(v for v in world.emulator.records("account").values() if v)
    if name == "colons":
        assert values["plan"].endswith(" at 12:30") and values["tags"] == ["a", "b"]
    incremental = world.run(spec, mode="incremental")
    assert incremental.status == "complete"
