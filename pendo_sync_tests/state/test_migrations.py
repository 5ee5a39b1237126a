"""An install made by an older release is migrated in place: the schema version row, a column for every run
figure, one ledger row per (sync, id); then a run works on it, and a new install starts at the latest
version."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from pendo_sync.state import migrations
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import backend_of, make_engine
from pendo_sync_tests.world import World

# The state schema of the releases before schema_info (version 1), as they created it.
VERSION_1 = [
    "CREATE SCHEMA pendo_sync",
    """CREATE TABLE pendo_sync.ledger (sync_name VARCHAR(128) NOT NULL, record_id VARCHAR(512) NOT NULL,
       row_hash VARCHAR(32) NOT NULL, version INTEGER NOT NULL, confirmed_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE pendo_sync.rejects (sync_name VARCHAR(128) NOT NULL, record_id VARCHAR(512) NOT NULL,
       row_hash VARCHAR(32) NOT NULL, kind VARCHAR(16) NOT NULL, reason VARCHAR(1024) NOT NULL,
       run_id VARCHAR(64) NOT NULL, version INTEGER NOT NULL, rejected_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE pendo_sync.versions (sync_name VARCHAR(128) NOT NULL, version INTEGER NOT NULL,
       run_id VARCHAR(64) NOT NULL, mode VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL,
       cursor_value VARCHAR(256), cursor_type VARCHAR(16), rows_read BIGINT NOT NULL, sent BIGINT NOT NULL,
       updated BIGINT NOT NULL, missing BIGINT NOT NULL, rejected BIGINT NOT NULL, cleared BIGINT NOT NULL,
       deleted BIGINT NOT NULL, calls BIGINT NOT NULL, retries BIGINT NOT NULL, started_at TIMESTAMP NOT NULL,
       finished_at TIMESTAMP, note VARCHAR(1024) NOT NULL)""",
    """CREATE TABLE pendo_sync.locks (sync_name VARCHAR(128) NOT NULL, run_id VARCHAR(64) NOT NULL,
       holder VARCHAR(256) NOT NULL, acquired_at TIMESTAMP NOT NULL)""",
    "CREATE TABLE pendo_sync.pendo_ids (sync_name VARCHAR(128) NOT NULL, record_id VARCHAR(512) NOT NULL)",
    """INSERT INTO pendo_sync.versions VALUES ('accounts', 1, 'old-run', 'full', 'complete', NULL, NULL,
       3, 3, 3, 0, 0, 0, 0, 1, 0, TIMESTAMP '2026-11-01 00:00:00', TIMESTAMP '2026-11-01 00:01:00', '')""",
    # Two rows for one id: what duplicate source ids left behind before ids were checked.
    """INSERT INTO pendo_sync.ledger VALUES ('accounts', 'a', 'h1', 1, TIMESTAMP '2026-11-01 00:00:00'),
       ('accounts', 'b', 'h2', 1, TIMESTAMP '2026-11-01 00:00:00'),
       ('accounts', 'b', 'h3', 1, TIMESTAMP '2026-11-01 00:00:00')""",
]


def test_a_version_1_install_is_migrated_and_runs(world: World):
    if backend_of(world.engine) == "postgresql":
        VERSION_1.insert(2, "CREATE INDEX ledger_by_record ON pendo_sync.ledger (sync_name, record_id)")
    for statement in VERSION_1:
        world.sql(statement)
    store = StateStore(make_engine(world.url), "pendo_sync")
    store.ensure_schema()

    assert world.sql("SELECT component, version FROM pendo_sync.schema_info") == [
        ("pendo_sync", migrations.LATEST)
    ]
    (old,) = store.versions.all("accounts")
    assert (old.status, old.counts.sent, old.counts.invalid, old.counts.errors) == ("complete", 3, 0, 0)
    assert store.ledger.rows("accounts") == {"a": "h1"}  # b was held twice: forgotten, so it is sent again
    if backend_of(world.engine) == "postgresql":
        indexes = {
            r[0] for r in world.sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'pendo_sync'")
        }
        assert indexes == {"ledger_one_row_per_id", "rejects_by_record"}
        try:
            world.sql("INSERT INTO pendo_sync.ledger VALUES ('accounts', 'a', 'h9', 1, now())")
            raise AssertionError("a second ledger row for one id was accepted")
        except sa.exc.IntegrityError:
            pass
    outcome = world.run("accounts")
    assert outcome.version == 2 and outcome.status == "complete"
    (_, new) = store.versions.all("accounts")
    assert new.counts.confirmed == outcome.counts.confirmed > 0


def test_a_new_install_starts_at_the_latest_version_and_migrates_once(world: World, monkeypatch):
    store = StateStore(world.engine, "pendo_sync")
    store.ensure_schema()
    assert world.sql("SELECT version FROM pendo_sync.schema_info") == [(migrations.LATEST,)]
    applied = []
    monkeypatch.setattr(migrations, "MIGRATIONS", tuple(
        migrations.Migration(m.version, m.what, lambda conn, tables, m=m: applied.append(m.version)) for m in migrations.MIGRATIONS
    ))  # fmt: skip
    StateStore(world.engine, "pendo_sync").ensure_schema()
    assert applied == []


def test_fingerprints_kept_before_the_database_computed_them_are_forgotten(world: World):
    logged = dataclasses.replace(world.spec("accounts"), change_log_retention_days=30)
    world.run(logged)
    ((account,),) = world.sql("SELECT min(record_id) FROM pendo_sync.ledger")
    # What version 4 kept: a crc32 of each coerced value's repr, made in Python.
    world.sql("UPDATE pendo_sync.ledger SET field_hashes = :f", f=",".join(["0badf00d"] * len(logged.fields)))
    world.sql("UPDATE pendo_sync.schema_info SET version = 4")
    StateStore(make_engine(world.url), "pendo_sync").ensure_schema()

    assert world.sql("SELECT count(*) FROM pendo_sync.ledger WHERE field_hashes IS NOT NULL") == [(0,)]
    world.sql("UPDATE accounts SET plan = 'changed' WHERE account_id = :a", a=account)
    second = world.run(logged)
    assert world.sql(
        "SELECT changed_fields FROM pendo_sync.change_log WHERE record_id = :a AND version = :v",
        a=account,
        v=second.version,
    ) == [("*",)]  # not known: not every field named


def test_versions_before_the_mapping_column_keep_their_runs_and_take_the_mapping_for_unchanged(world: World):
    first = world.run("accounts")
    world.sql("ALTER TABLE pendo_sync.versions DROP COLUMN mapping")  # what version 5 had
    world.sql("ALTER TABLE pendo_sync.versions DROP COLUMN refresh_since")
    world.sql("UPDATE pendo_sync.schema_info SET version = 5")
    store = StateStore(make_engine(world.url), "pendo_sync")
    store.ensure_schema()
    assert world.sql("SELECT version FROM pendo_sync.schema_info") == [(migrations.LATEST,)]
    assert world.sql("SELECT version, mapping FROM pendo_sync.versions") == [(first.version, None)]
    assert store.versions.last_mapping("accounts") is None  # unknown: no whole-table run forced
    second = world.run("accounts", mode="incremental")
    assert second.slice.startswith("replication key in [") and second.status in ("complete", "with_rejects")
    assert store.versions.last_mapping("accounts") is not None


def test_versions_before_the_refresh_column_owe_no_refresh(world: World):
    first = world.run("accounts", full_refresh=True)
    world.sql("ALTER TABLE pendo_sync.versions DROP COLUMN refresh_since")  # what version 6 had
    world.sql("UPDATE pendo_sync.versions SET status = 'partial'")  # even a refresh the budget stopped
    world.sql("UPDATE pendo_sync.schema_info SET version = 6")
    store = StateStore(make_engine(world.url), "pendo_sync")
    store.ensure_schema()
    assert world.sql("SELECT version FROM pendo_sync.schema_info") == [(migrations.LATEST,)]
    assert world.sql("SELECT version, refresh_since FROM pendo_sync.versions") == [(first.version, None)]
    assert store.versions.owed_refresh("accounts") is None  # unknown: the next run diffs as before
    second = world.run("accounts")
    assert "refresh" not in second.slice and second.counts["sent"] == 0


def test_a_change_log_kept_a_row_a_record_moves_behind_the_view(world: World):
    """Version 7 kept the change log as a table, a row a record: its rows move into entries and ids and
    read the same through the view; the next runs add to it."""
    logged = dataclasses.replace(world.spec("accounts"), change_log_retention_days=30)
    world.run(logged)
    world.sql("DROP VIEW pendo_sync.change_log")
    world.sql("DELETE FROM pendo_sync.change_log_entries")
    world.sql(
        "CREATE TABLE pendo_sync.change_log (sync_name VARCHAR(128) NOT NULL, run_id VARCHAR(64) NOT NULL, "
        "version INTEGER NOT NULL, record_id VARCHAR(512) NOT NULL, operation VARCHAR(16) NOT NULL, "
        "outcome VARCHAR(16) NOT NULL, reason VARCHAR(1024), changed_fields VARCHAR(2048), "
        "logged_at TIMESTAMP NOT NULL)"
    )
    kept = [
        ("accounts", "old", 1, "a-1", "upsert", "confirmed", None, "*", "2026-11-01 00:00:00"),
        ("accounts", "old", 1, "a-2", "upsert", "confirmed", None, "plan", "2026-11-01 00:00:00"),
        ("accounts", "old", 1, "a-3", "upsert", "missing", "account id not found in Pendo", None, "2026-11-01 00:00:01"),
        ("accounts", "old", 2, "a-1", "clear", "confirmed", None, "*", "2026-11-02 00:00:00"),
    ]  # fmt: skip
    for row in kept:
        world.sql(
            "INSERT INTO pendo_sync.change_log VALUES (:s, :r, :v, :i, :o, :u, :why, :c, CAST(:t AS TIMESTAMP))",
            **dict(zip(("s", "r", "v", "i", "o", "u", "why", "c", "t"), row, strict=True)),
        )
    world.sql("UPDATE pendo_sync.schema_info SET version = 7")
    StateStore(make_engine(world.url), "pendo_sync").ensure_schema()

    tables = world.sql(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'pendo_sync' "
        "AND table_name LIKE 'change_log%' ORDER BY table_name"
    )
    assert tables == [
        ("change_log", "VIEW"),
        ("change_log_entries", "BASE TABLE"),
    ]
    moved = world.sql(
        "SELECT sync_name, run_id, version, record_id, operation, outcome, reason, changed_fields, "
        "CAST(logged_at AS VARCHAR) FROM pendo_sync.change_log ORDER BY version, record_id"
    )
    assert [tuple(r[:8]) + (str(r[8])[:19],) for r in moved] == kept
    world.sql(
        "UPDATE accounts SET plan = 'changed' WHERE account_id = (SELECT min(account_id) FROM accounts)"
    )
    after = world.run(logged)
    assert world.sql("SELECT count(*) FROM pendo_sync.change_log WHERE version = :v", v=after.version) == [
        (1,)
    ]
