"""Column and table names as warehouses allow them (spaces, %, dots, brackets, quotes, non-ASCII), on
DuckDB and PostgreSQL: a full run, an incremental run by a replication key with such a name, and the
change log all work, and Pendo ends up holding exactly the source."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from pendo_sync.config import parse_config
from pendo_sync.demo.run import add_fields
from pendo_sync.engine.run import RunOptions, SyncOutcome, run_sync
from pendo_sync_tests.world import World

TABLE = 'odd "visitors" 100%'
ID, PLAN, SEATS, SIZE, FLAG, SEEN = (
    "Visitor ID",
    "plan.name%",
    "seats[total]",
    "größe",
    "it's on",
    "updated at %(x)s",
)


def make_columns() -> list[sa.Column[object]]:
    return [
        sa.Column(ID, sa.String, primary_key=True),
        sa.Column(PLAN, sa.String),
        sa.Column(SEATS, sa.Integer),
        sa.Column(SIZE, sa.Float),
        sa.Column(FLAG, sa.Boolean),
        sa.Column(SEEN, sa.DateTime),
    ]


def make_table(world: World) -> None:
    md = sa.MetaData()
    table = sa.Table(TABLE, md, *make_columns())
    md.create_all(world.engine)
    start = dt.datetime(2026, 11, 1)
    rows = [
        {ID: f"v%{i} '{i}'", PLAN: f"plan {i % 3}", SEATS: i, SIZE: i / 4, FLAG: i % 2 == 0, SEEN: start}
        for i in range(30)
    ]
    with world.engine.begin() as conn:
        conn.execute(table.insert(), rows)


def test_a_source_with_hostile_names_syncs_fully_and_incrementally_with_its_change_log(world: World) -> None:
    make_table(world)
    config = parse_config(
        {
            "syncs": {
                "odd": {
                    "kind": "visitor",
                    "table": TABLE,
                    "id_column": ID,
                    "replication_key": SEEN,
                    "change_log": {"retention_days": 30},
                    "fields": {
                        PLAN: {"field": "plan_name", "type": "string"},
                        SEATS: {"field": "seats_total", "type": "integer"},
                        SIZE: {"field": "size", "type": "float"},
                        FLAG: {"field": "is_on", "type": "boolean"},
                    },
                }
            }
        }
    )
    spec = config.sync("odd")
    add_fields(world.emulator, config)
    ids = [f"v%{i} '{i}'" for i in range(30)]
    world.emulator.add_ids("visitor", ids)

    def run(mode: str, run_id: str) -> SyncOutcome:
        options = RunOptions(mode=mode, run_id=run_id)
        return run_sync(spec, world.engine, world.store, world.client, world.delivery, options)

    first = run("full", "first")
    assert (first.status, first.counts["updated"]) == ("complete", 30)
    assert world.emulator.values_of("visitor", "v%7 '7'") == {
        "plan_name": "plan 1",
        "seats_total": 7,
        "size": 1.75,
        "is_on": False,
    }

    table = sa.Table(TABLE, sa.MetaData(), *make_columns())
    with world.engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c[ID] == "v%7 '7'")
            .values({SEATS: 700, SEEN: dt.datetime(2026, 11, 2)})
        )
    second = run("incremental", "second")
    assert (second.status, second.counts["sent"]) == ("complete", 1)
    assert world.emulator.values_of("visitor", "v%7 '7'")["seats_total"] == 700  # type: ignore[index]
    logged = world.sql(
        "SELECT record_id, changed_fields FROM pendo_sync.change_log WHERE sync_name = 'odd' "
        "AND run_id = :run",
        run="second",
    )
    assert [tuple(r) for r in logged] == [("v%7 '7'", "seats_total")]
