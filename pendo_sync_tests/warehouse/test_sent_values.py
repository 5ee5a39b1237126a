"""Where the database converts a value for Pendo (pendo/types.py database_conversion), what Pendo receives
is exactly what the Python coercion would have sent: epoch milliseconds, floored, for timestamps with and
without a zone and for dates, before 1970, past the 2^53 microseconds of a double, and at the last
microsecond of a millisecond. On Redshift (and PostgreSQL before 14) the query leaves the column as it
is and Python converts it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy_redshift.dialect import RedshiftDialect_psycopg2

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.pendo.types import coercer_for
from pendo_sync.warehouse.slices import EpochMillis
from pendo_sync_tests.world import World

UTC = dt.UTC
MOMENTS = [
    dt.datetime(1969, 12, 31, 23, 59, 59, 999_500),
    dt.datetime(1969, 12, 31, 23, 59, 59, 998_500),
    dt.datetime(1900, 1, 1, 0, 0, 0, 100),
    dt.datetime(2026, 5, 5, 10, 10, 10, 123_999),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(1, 1, 1),
]

SPEC = SyncSpec(
    name="moments",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="moments",
    fields=(
        FieldMapping("naive", "naive", "time"),
        FieldMapping("zoned", "zoned", "time"),
        FieldMapping("day", "day", "time"),
    ),
)


def test_the_databases_epoch_milliseconds_are_pythons(world: World):
    world.sql(
        "CREATE TABLE moments (visitor_id VARCHAR(16) PRIMARY KEY, naive TIMESTAMP, zoned TIMESTAMPTZ, "
        "day DATE)"
    )
    for n, moment in enumerate(MOMENTS):
        world.sql(
            "INSERT INTO moments VALUES (:id, :naive, :zoned, :day)",
            id=f"m{n}",
            naive=moment,
            zoned=moment.replace(tzinfo=UTC),
            day=moment.date(),
        )
    for name in ("naive", "zoned", "day"):
        world.emulator.add_field("visitor", "custom", name, "time")
    world.emulator.add_ids("visitor", [f"m{n}" for n in range(len(MOMENTS))])
    assert world.run(SPEC).counts["confirmed"] == len(MOMENTS)

    to_time = coercer_for("time")
    for n, moment in enumerate(MOMENTS):
        midnight = dt.datetime.combine(moment.date(), dt.time())
        assert world.emulator.values_of("visitor", f"m{n}") == {
            "naive": to_time(moment),
            "zoned": to_time(moment.replace(tzinfo=UTC)),
            "day": to_time(midnight),
        }, moment


def test_infinite_times_go_as_the_drivers_bounds_not_null_and_not_an_error(world: World):
    # 'infinity' is common in history tables (valid_to); both drivers hand it over as datetime.max/.min.
    world.sql(
        "CREATE TABLE moments (visitor_id VARCHAR(16) PRIMARY KEY, naive TIMESTAMP, zoned TIMESTAMPTZ, day DATE)"
    )
    world.sql("INSERT INTO moments VALUES ('up', 'infinity', 'infinity', 'infinity')")
    world.sql("INSERT INTO moments VALUES ('down', '-infinity', '-infinity', '-infinity')")
    world.sql("INSERT INTO moments VALUES ('none', NULL, NULL, NULL)")
    for name in ("naive", "zoned", "day"):
        world.emulator.add_field("visitor", "custom", name, "time")
    world.emulator.add_ids("visitor", ["up", "down", "none"])
    assert world.run(SPEC).counts["confirmed"] == 3
    to_time = coercer_for("time")
    latest, earliest = to_time(dt.datetime.max), to_time(dt.datetime.min)
    last_day = to_time(dt.datetime.combine(dt.date.max, dt.time()))
    assert world.emulator.values_of("visitor", "up") == {"naive": latest, "zoned": latest, "day": last_day}
    assert world.emulator.values_of("visitor", "down") == {
        "naive": earliest,
        "zoned": earliest,
        "day": earliest,
    }
    assert world.emulator.values_of("visitor", "none") == {}  # NULL stays NULL: nothing set


def compiled(dialect: sa.engine.Dialect) -> str:
    return str(sa.select(EpochMillis(sa.column("t"), is_date=False)).compile(dialect=dialect))


def test_where_it_cannot_be_exact_the_column_comes_as_it_is():
    old = postgresql.psycopg2.dialect()
    old.server_version_info = (13, 9)
    new = postgresql.psycopg2.dialect()
    new.server_version_info = (15, 2)
    assert compiled(RedshiftDialect_psycopg2()) == "SELECT t AS epoch_millis_1"
    assert compiled(old) == "SELECT t AS epoch_millis_1"
    assert compiled(new) == (
        "SELECT CASE WHEN isfinite(t) THEN CAST(FLOOR(EXTRACT(EPOCH FROM t) * 1000) AS BIGINT) "
        "WHEN t > CAST('epoch' AS DATE) THEN 253402300799999 "
        "WHEN t < CAST('epoch' AS DATE) THEN -62135596800000 END AS epoch_millis_1"
    )
