"""A replication key far in the future (a placeholder like 9999-12-31) must not move the cursor past every
row still to come: the cursor stops at the newest key at most a day past now, the far rows stay in every
incremental slice (diffed with the ledger, so sent only when they change), and the run says which column
holds them. Before, the cursor jumped to 9999-12-31 and every later incremental run sent nothing."""

from __future__ import annotations

import datetime as dt

from pendo_sync.warehouse.slices import days_with_rows_after, key_ceiling, past_ceiling
from pendo_sync_tests.world import World


def present_accounts(world: World, n: int) -> list[str]:
    return [i for i, v in sorted(world.emulator.records("account").items())][:n]


def now() -> dt.datetime:
    """Now, as the sample tables' naive UTC keys hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def set_plan(world: World, account: str, plan: str, updated_at: object) -> None:
    world.sql(
        "UPDATE accounts SET plan = :p, updated_at = :t WHERE account_id = :a",
        p=plan,
        t=updated_at,
        a=account,
    )


def test_a_far_future_key_does_not_freeze_incremental_runs(world: World):
    world.run("accounts", mode="incremental")
    far, later = present_accounts(world, 2)
    set_plan(world, far, "far", dt.datetime(9999, 12, 31))
    world.emulator.reset_stats()
    second = world.run("accounts", mode="incremental")
    assert world.emulator.received_ids == [far]
    assert world.emulator.values_of("account", far)["plan"] == "far"
    ceiling = now() + dt.timedelta(days=1)
    assert second.cursor < ceiling
    assert (
        "1 row of accounts has updated_at later than a day from now (the latest 9999-12-31 00:00:00): the "
        "cursor stops at the newest key before it, and such rows are read by every incremental run; "
        "correct updated_at in the source"
    ) in second.note

    set_plan(world, later, "later", now())
    world.emulator.reset_stats()
    third = world.run("accounts", mode="incremental")
    assert world.emulator.received_ids == [later]  # the far row is read again, but unchanged: not sent
    assert world.emulator.values_of("account", later)["plan"] == "later"
    assert third.cursor < ceiling


def test_a_full_run_stops_its_cursor_before_far_future_keys(world: World):
    (far,) = present_accounts(world, 1)
    world.sql("UPDATE accounts SET updated_at = :t WHERE account_id = :a", t=dt.datetime(9999, 1, 1), a=far)
    outcome = world.run("accounts", mode="full")
    assert outcome.cursor < dt.datetime(2100, 1, 1)
    assert "the latest 9999-01-01 00:00:00" in outcome.note


def test_the_new_rows_sensors_cursor_stops_before_far_future_keys(world: World):
    spec = world.spec("accounts")
    (far,) = [r[0] for r in world.sql("SELECT min(account_id) FROM accounts")]
    world.sql("UPDATE accounts SET updated_at = :t WHERE account_id = :a", t=dt.datetime(9999, 1, 1), a=far)
    days, newest = days_with_rows_after(world.engine, spec, None)
    assert dt.date(9999, 1, 1) in days  # reported (no partition has it: the sensor requests none)
    assert newest < dt.datetime(2100, 1, 1)
    world.sql(
        "UPDATE accounts SET updated_at = :t WHERE account_id = :a", t=newest + dt.timedelta(hours=1), a=far
    )
    days, after = days_with_rows_after(world.engine, spec, newest)
    assert after == newest + dt.timedelta(hours=1)  # a row past the old cursor is still seen


def test_a_far_key_after_the_keys_type_gained_a_zone_is_compared_with_the_cursor_in_that_type(world: World):
    """The key went from timestamp to timestamptz after the cursor was kept (naive), then a far row came:
    the run and the sensor compared the naive cursor with the zoned key and died with a TypeError."""
    first = world.run("accounts", mode="incremental")
    world.sql("ALTER TABLE accounts ALTER updated_at TYPE TIMESTAMPTZ")
    far, later = present_accounts(world, 2)
    set_plan(world, far, "far", dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
    world.emulator.reset_stats()
    second = world.run("accounts", mode="incremental")
    assert second.status == "complete"
    assert world.emulator.received_ids == [far]
    assert second.cursor == first.cursor.replace(tzinfo=dt.UTC)  # nothing newer before the far row
    assert "the latest 9999-12-31 00:00:00+00:00" in second.note
    days, newest = days_with_rows_after(world.engine, world.spec("accounts"), first.cursor)
    assert days == [dt.date(9999, 12, 31)] and newest == first.cursor  # the sensor's cursor stays
    set_plan(world, later, "later", dt.datetime.now(dt.UTC))
    world.emulator.reset_stats()
    third = world.run("accounts", mode="incremental")
    assert world.emulator.received_ids == [later]
    assert third.cursor > second.cursor


def test_a_cursor_an_earlier_release_left_in_the_future_is_read_past(world: World):
    """A cursor of 9999-12-31 (what runs before this fix kept) would skip every row: the next incremental
    run diffs the whole table instead, and sends what changed meanwhile."""
    first = world.run("accounts", mode="incremental")
    world.sql(
        "UPDATE pendo_sync.versions SET cursor_value = '9999-12-31T00:00:00' WHERE version = :v",
        v=first.version,
    )
    (changed,) = present_accounts(world, 1)
    set_plan(world, changed, "meanwhile", now() - dt.timedelta(hours=1))
    world.emulator.reset_stats()
    second = world.run("accounts", mode="incremental")
    assert second.slice.endswith("(every row: the cursor 9999-12-31 00:00:00 was more than a day past now)")
    assert world.emulator.received_ids == [changed]
    assert second.cursor < now()


def test_the_ceiling_of_each_kind_of_key():
    now = dt.datetime.now(dt.UTC)
    assert abs(key_ceiling(now) - (now + dt.timedelta(days=1))) < dt.timedelta(minutes=1)  # aware
    naive = now.replace(tzinfo=None)
    assert abs(key_ceiling(naive) - (naive + dt.timedelta(days=1))) < dt.timedelta(minutes=1)
    assert key_ceiling(now.date()) == now.date() + dt.timedelta(days=1)
    assert key_ceiling(99999999999) is None  # an integer key has no clock: never capped
    assert past_ceiling(dt.date(9999, 12, 31)) and not past_ceiling(now.date())


def test_keys_no_datetime_holds_are_read_by_every_incremental_run(world: World):
    """'infinity' (the driver's datetime.max was the window's upper bound, and infinity lies past it) and a
    year past 9999 (PostgreSQL's driver cannot read it: the run failed; DuckDB's gives text: the cursor
    became that text and no later row was read) are far-future keys like 9999-12-31."""
    world.run("accounts", mode="incremental")
    endless, far, later = present_accounts(world, 3)
    world.sql(
        "UPDATE accounts SET plan = 'endless', updated_at = 'infinity' WHERE account_id = :a", a=endless
    )
    world.sql("UPDATE accounts SET plan = 'far', updated_at = '10000-01-01' WHERE account_id = :a", a=far)
    world.emulator.reset_stats()
    second = world.run("accounts", mode="incremental")
    assert second.status == "complete"
    assert sorted(world.emulator.received_ids) == sorted([endless, far])
    ceiling = now() + dt.timedelta(days=1)
    assert isinstance(second.cursor, dt.datetime) and second.cursor < ceiling
    assert "2 rows of accounts have updated_at later than a day from now" in second.note

    world.sql("UPDATE accounts SET plan = 'endless 2' WHERE account_id = :a", a=endless)
    world.sql("UPDATE accounts SET plan = 'far 2' WHERE account_id = :a", a=far)
    set_plan(world, later, "later", now())
    world.emulator.reset_stats()
    third = world.run("accounts", mode="incremental")
    assert sorted(world.emulator.received_ids) == sorted([endless, far, later])
    assert world.emulator.values_of("account", far)["plan"] == "far 2"
    assert third.cursor > second.cursor and third.cursor < ceiling
    days, newest = days_with_rows_after(world.engine, world.spec("accounts"), second.cursor)
    assert newest == third.cursor

    world.sql(  # only the year 10000 left far: the newest key is one psycopg2 cannot read
        "UPDATE accounts SET updated_at = :t WHERE account_id = :a",
        t=now(),
        a=endless,
    )
    fourth = world.run("accounts", mode="incremental")
    assert fourth.status == "complete" and fourth.cursor < ceiling
    assert "1 row of accounts has updated_at later than a day from now" in fourth.note
    days, newest = days_with_rows_after(world.engine, world.spec("accounts"), third.cursor)
    assert newest == fourth.cursor and dt.datetime.now(dt.UTC).date() in days


def test_the_sensors_first_tick_reads_past_a_key_no_datetime_holds(world: World):
    """The new-rows sensor's first tick (no cursor yet) with a key past the year 9999: both databases give
    its text, which must be a far-future key too, not a cursor of text."""
    (far,) = present_accounts(world, 1)
    world.sql("UPDATE accounts SET updated_at = '10000-01-01' WHERE account_id = :a", a=far)
    days, newest = days_with_rows_after(world.engine, world.spec("accounts"), None)
    ceiling = now() + dt.timedelta(days=1)
    assert isinstance(newest, dt.datetime) and newest < ceiling
    assert days and all(isinstance(day, dt.date) for day in days)
