"""The change set on DuckDB: read a range at a time, never through one transaction held open while the
run writes its ledger (DuckDB would keep every later commit's undo buffers until that read ended), and
exactly the rows the one-query diff finds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from pendo_sync.config import SyncSpec
from pendo_sync.engine import changeset
from pendo_sync.engine.changeset import ROW_PREV, ChangeSet
from pendo_sync.engine.preflight import source_columns
from pendo_sync.warehouse.slices import Slice, stream_rows
from pendo_sync_tests.world import World

CHUNK = 7  # many chunks, some ranges with no rows left in them


def read_between_writes(world: World, chunks: Iterator[Sequence[Any]]) -> list[Any]:
    """Every chunk, checking that no warehouse transaction is open while the caller has a chunk, which
    is when the run writes the ledger."""
    open_transactions = [0]

    def begin(*_: Any) -> None:
        open_transactions[0] += 1

    def end(*_: Any) -> None:
        open_transactions[0] -= 1

    events = {"begin": begin, "commit": end, "rollback": end}
    for name, listener in events.items():
        sa.event.listen(world.engine, name, listener)
    rows: list[Any] = []
    try:
        for chunk in chunks:
            assert open_transactions[0] == 0, "a warehouse transaction is open between chunks"
            rows += chunk
    finally:
        for name, listener in events.items():
            sa.event.remove(world.engine, name, listener)
    return rows


def one_query_diff(world: World, changes: ChangeSet) -> list[Any]:
    """The same diff read through a single streaming query: what the ranged reads must add up to."""
    parts = stream_rows(world.engine, changes.sql.records(changes.sql.changed(changes.diff_state())), 1000)
    return [tuple(r) for part in parts for r in part]


def by_id(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda r: r[0])


def state_tables(world: World) -> set[str]:
    rows = world.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'pendo_sync'")
    return {r[0] for r in rows}


def changes_of(world: World, spec: SyncSpec, full_refresh: bool = False) -> ChangeSet:
    """The change set of a full run, hashed as run_sync hashes (with the source's column types), retrying
    ids Pendo reported missing at once."""
    world.store.ensure_schema()
    types = source_columns(world.engine, spec)
    spec = dataclasses.replace(spec, missing_retry_seconds=0)
    return ChangeSet(spec, world.engine, world.store, Slice("full"), full_refresh, column_types=types)


def test_a_first_sync_reads_the_table_by_rowid_range_across_deleted_rows(duckdb_world: World):
    world = duckdb_world
    world.sql("DELETE FROM accounts WHERE rowid % 4 = 1 OR rowid BETWEEN 100 AND 130")
    remaining = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts")}
    changes = changes_of(world, world.spec("accounts"))
    own_tables = state_tables(world)

    rows = read_between_writes(world, changes.changed_rows(CHUNK))

    assert sorted(r[0] for r in rows) == sorted(remaining)
    assert all(r[ROW_PREV] is None for r in rows)  # the ledger has none of them
    assert by_id(rows) == by_id(one_query_diff(world, changes))
    assert state_tables(world) == own_tables


def test_a_diff_is_read_from_a_scratch_copy_that_replaces_a_crashed_runs_and_is_dropped(duckdb_world: World):
    world = duckdb_world
    world.run("accounts")
    own_tables = state_tables(world)
    world.sql("UPDATE accounts SET seats = coalesce(seats, 0) + 1 WHERE rowid % 10 = 0")
    updated = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts WHERE rowid % 10 = 0")}
    gone = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts WHERE rowid % 10 = 3")}
    world.sql("DELETE FROM accounts WHERE rowid % 10 = 3")
    world.sql("CREATE TABLE pendo_sync.changes_accounts AS SELECT 'left by a crashed run' AS junk")
    changes = changes_of(world, world.spec("accounts"))

    rows = read_between_writes(world, changes.changed_rows(CHUNK))
    deleted = read_between_writes(world, changes.deleted_ids(CHUNK))

    assert by_id(rows) == by_id(one_query_diff(world, changes))
    assert updated <= {r[0] for r in rows}
    # Ids Pendo lacks were never confirmed, so they are in the diff again and not among the deleted.
    confirmed = {r[0] for r in world.sql("SELECT record_id FROM pendo_sync.ledger")}
    present = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts")}
    assert {r[0] for r in rows} == updated | (present - confirmed)
    assert sorted(deleted) == sorted(gone & confirmed)
    assert state_tables(world) == own_tables


def test_a_query_source_has_no_rowids_and_is_read_from_a_scratch_copy(duckdb_world: World):
    world = duckdb_world
    accounts = world.spec("accounts")
    columns = ", ".join([accounts.id_column, *accounts.columns, "updated_at"])
    by_query = dataclasses.replace(
        accounts, name="accounts_by_query", table=None, query=f"SELECT {columns} FROM accounts"
    )
    changes = changes_of(world, by_query)
    own_tables = state_tables(world)

    rows = read_between_writes(world, changes.changed_rows(CHUNK))

    ids = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts")}
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert by_id(rows) == by_id(one_query_diff(world, changes))
    assert state_tables(world) == own_tables


def test_a_full_refresh_reads_by_rowid_range_and_sends_every_row_again(duckdb_world: World):
    world = duckdb_world
    world.run("accounts")
    changes = changes_of(world, world.spec("accounts"), full_refresh=True)

    rows = read_between_writes(world, changes.changed_rows(CHUNK))

    ids = [r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts")]
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert by_id(rows) == by_id(one_query_diff(world, changes))
    assert not any(r[ROW_PREV] is None for r in rows)  # a refresh does not look at the ledger


def test_a_diff_over_more_rows_than_duckdb_joins_at_once_is_done_in_parts(duckdb_world: World, monkeypatch):
    world = duckdb_world
    world.run("accounts")
    monkeypatch.setattr(changeset, "DUCKDB_JOIN_ROWS", 60)  # 200 accounts: 4 parts of the id space
    world.sql("UPDATE accounts SET seats = coalesce(seats, 0) + 1 WHERE rowid % 10 = 0")
    updated = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts WHERE rowid % 10 = 0")}
    gone = {r[0] for r in world.sql("SELECT CAST(account_id AS TEXT) FROM accounts WHERE rowid % 10 = 3")}
    world.sql("DELETE FROM accounts WHERE rowid % 10 = 3")
    changes = changes_of(world, world.spec("accounts"))
    statements: list[str] = []
    sa.event.listen(world.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    rows = read_between_writes(world, changes.changed_rows(CHUNK))
    deleted = read_between_writes(world, changes.deleted_ids(CHUNK))

    whole = one_query_diff(world, changes)
    assert by_id(rows) == by_id(whole)
    assert updated <= {r[0] for r in rows}
    assert changes.count_changed() == len(rows)
    confirmed = {r[0] for r in world.sql("SELECT record_id FROM pendo_sync.ledger")}
    assert sorted(deleted) == sorted(gone & confirmed)
    for scratch in ("changes_accounts", "gone_accounts"):
        parts = [s for s in statements if f"pendo_sync.{scratch}" in s and "hash(" in s]
        assert [s.split()[0] for s in parts] == ["CREATE", "INSERT", "INSERT", "INSERT"], scratch

    # End to end: the reconcile sends the changed rows and clears the deleted ones, exactly (ids Pendo
    # reported missing in the first run are not tried again so soon).
    world.emulator.reset_stats()
    outcome = world.run("accounts")
    assert outcome.counts["cleared"] == len(gone & confirmed)
    assert sorted(world.emulator.received_ids) == sorted((updated | gone) & confirmed)
