"""Where the database writes a row's values into the record itself (warehouse/record_sql.py), Pendo gets
exactly what the Python coercion would have sent, and exactly the same rows are rejected with the same
reasons: every value below goes once through each path, on DuckDB and PostgreSQL, and the emulator's
records and the rejects are compared. Hostile text (quotes, control characters, separators, non-ASCII),
the limits of integers and doubles, NaN and infinities, times before 1970 and infinite, and list text
that is a JSON array of strings, almost one, or something else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import pytest
import sqlalchemy as sa

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.engine import changeset, records
from pendo_sync.warehouse import record_sql
from pendo_sync.warehouse.engines import backend_of, make_engine
from pendo_sync.warehouse.slices import Slice
from pendo_sync_tests.world import World

TEXTS = [
    "plain",
    "",
    'quote"d',
    "back\\slash",
    "tab\tnew\nline\r",
    "\x01\x1f\x7f",
    "ünï €😀",
    "\u2028",
    None,
    "x" * 3000,
]
INTEGERS = [0, -1, 2**63 - 1, -(2**63), 42, None]
DOUBLES = [
    0.1,
    -0.0,
    1e300,
    5e-324,
    100.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    1 / 3,
    None,
    123456789.125,
]
BOOLEANS = [True, False, None]
TIMES = [
    dt.datetime(2026, 5, 5, 10, 10, 10, 123_999),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999_500),
    dt.datetime(1900, 1, 1),
    None,
]
LISTS = [
    '["a","b"]', "[]", ' [ "a" , null ] ', '["a",]', "[1,2]", '["\\u00e9"]', '"x"', "not json", '[["x"]]',
    None, '["tab\\tx","sl\\/ash","q\\"uote"]', "[null]", '["a"] x', "[\n\"a\"\r\n]", '["\x01"]', "[ ]",
]  # fmt: skip
NUMERIC_TEXT = ["7", " 8 ", "n/a", None, "1e3", "9" * 30]
ROWS = max(map(len, (TEXTS, INTEGERS, DOUBLES, BOOLEANS, TIMES, LISTS, NUMERIC_TEXT))) * 2

FIELDS = (
    FieldMapping("t", "t", "string"),
    FieldMapping("i", "i", "integer"),
    FieldMapping("f", "f", "float"),
    FieldMapping("fi", "fi", "float"),  # an integer column mapped to a float field
    FieldMapping("b", "b", "boolean"),
    FieldMapping("ts", "ts", "time"),
    FieldMapping("tags", "tags", "list", "string"),
    FieldMapping("n", "n", "integer"),  # text mapped to an integer: Python coerces it, every row
)
SPEC = SyncSpec(name="odd", kind="visitor", group="custom", id_column="id", table="oddities", fields=FIELDS)


def pick(values: list[Any], row: int) -> Any:
    return values[row % len(values)]


def create(world: World) -> None:
    double = "DOUBLE PRECISION" if backend_of(world.engine) == "postgresql" else "DOUBLE"
    world.sql(
        f"CREATE TABLE oddities (id VARCHAR(16) PRIMARY KEY, t VARCHAR, i BIGINT, f {double}, fi INTEGER, "
        "b BOOLEAN, ts TIMESTAMP, tags VARCHAR, n VARCHAR)"
    )
    with world.engine.begin() as conn:
        for row in range(ROWS):
            text = pick(TEXTS, row)
            if text is not None and backend_of(world.engine) == "postgresql":
                text = text.replace("\x00", "")
            conn.execute(
                sa.text(
                    "INSERT INTO oddities VALUES (:id, :t, :i, CAST(:f AS DOUBLE PRECISION), :fi, :b, :ts, "
                    ":tags, :n)"
                ),
                {
                    "id": f"r{row:03d}",
                    "t": text,
                    "i": pick(INTEGERS, row),
                    "f": None if pick(DOUBLES, row) is None else repr(pick(DOUBLES, row)),
                    "fi": row - 5,
                    "b": pick(BOOLEANS, row),
                    "ts": pick(TIMES, row + 1),
                    "tags": pick(LISTS, row),
                    "n": pick(NUMERIC_TEXT, row),
                },
            )
    for m in FIELDS:
        world.emulator.add_field("visitor", "custom", m.field, m.type, m.element_type)
    world.emulator.add_ids("visitor", [f"r{row:03d}" for row in range(ROWS)])


def python_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing_written(spec: SyncSpec, *_: Any) -> tuple[bool, ...]:
        return tuple(False for _ in spec.fields)

    monkeypatch.setattr(record_sql, "written_fields", nothing_written)  # the statement's and the encoder's


def outcome(world: World, spec: SyncSpec) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    run = world.run(spec)
    assert run.counts["invalid"] > 0 and run.counts["confirmed"] > 0
    rejects = sorted(
        (r["record_id"], r["kind"], r["reason"]) for r in world.store.rejects.outstanding(spec.name)
    )
    ours = {i: v for i, v in world.emulator.records("visitor").items() if i.startswith("r0")}
    return ours, rejects


def same_number(got: Any, want: Any, exact: bool) -> bool:
    """The same number; on DuckDB also the same JSON form (PostgreSQL writes 100.0 as 100 and -0.0 as -0,
    the same numbers to JSON, not to Python)."""
    if not exact:
        return bool(got == want)
    return got == want and type(got) is type(want) and math.copysign(1, got) == math.copysign(1, want)


@pytest.mark.parametrize(
    "wire", [{}, {"clear_with": "empty_string"}], ids=["clear with null", "clear with empty string"]
)
def test_the_database_writes_what_python_would_send(world: World, monkeypatch: pytest.MonkeyPatch, wire):
    create(world)
    spec = dataclasses.replace(SPEC, **wire)
    types = {c: t for c, t in world.sql(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'oddities'"
    )}  # fmt: skip
    written = record_sql.written_fields(spec, types, world.engine.dialect)
    assert written == (True,) * 7 + (False,)  # text mapped to an integer is Python's, in every row

    objects: list[str | None] = []
    original = records.RecordEncoder._text

    def seen(self: Any, id_json: str, values: str | None, raw: Any) -> str:
        objects.append(values)
        return original(self, id_json, values, raw)

    monkeypatch.setattr(records.RecordEncoder, "_text", seen)
    by_database, rejected = outcome(world, spec)
    assert len(objects) == ROWS
    # Most rows' values came written by the database; the rows it could not write came as they are.
    assert sum(v is not None for v in objects) >= 8 and sum(v is None for v in objects) >= 8

    world.emulator.store["visitor"] = {}
    world.emulator.add_ids("visitor", [f"r{row:03d}" for row in range(ROWS)])
    world.sql("DROP SCHEMA pendo_sync CASCADE")
    world.store._ready = False
    python_only(monkeypatch)
    by_python, python_rejected = outcome(world, spec)

    assert rejected == python_rejected
    assert by_database.keys() == by_python.keys()
    for record_id, values in by_python.items():
        got = by_database[record_id]
        assert got.keys() == values.keys(), record_id
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                exact = backend_of(world.engine) == "duckdb"
                assert same_number(got[name], value, exact), (record_id, name, got[name], value)
            else:
                assert got[name] == value, (record_id, name)


def test_which_values_the_database_writes_is_decided_once_for_the_encoder_and_the_statement(pg_world: World):
    """Whether PostgreSQL writes epoch milliseconds depends on its version, which an engine knows only
    once it has connected. A change set made on an engine that had not connected told the encoder
    "not written" while the statement, compiled later, wrote it: the record carried the field twice, the
    second time as a clear."""
    create(pg_world)
    types = {c: t for c, t in pg_world.sql(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'oddities'"
    )}  # fmt: skip
    pg_world.store.ensure_schema()
    fresh = make_engine(pg_world.url)  # has not connected: its server version is unknown
    changes = changeset.ChangeSet(
        SPEC, fresh, pg_world.store, Slice("full"), column_types=types, unique_ids=True
    )
    encoder_view = changes.written  # what the record encoder is told, as the Runner is made
    with fresh.connect():  # the statement is compiled for a connected engine
        pass
    assert encoder_view == record_sql.written_fields(SPEC, types, fresh.dialect) == (True,) * 7 + (False,)
    fresh.dispose()
