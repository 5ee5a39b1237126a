"""A Singer state file imported, then an incremental run: from the CLI and from Dagster, on PostgreSQL and
DuckDB, with a `timestamp` and with a `timestamptz` replication key. The run sends exactly the rows past
the bookmark."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from pendo_sync.cli import main
from pendo_sync.dagster.build import build_definitions
from pendo_sync.engine.singer_import import import_singer_state
from pendo_sync.state.versions import StateError
from pendo_sync.warehouse.engines import backend_of
from pendo_sync_tests.world import World

BOOKMARK = "2026-10-29T00:00:00.000Z"
ABSENT = object()


def singer_state(tmp_path: Path, **bookmark: object) -> Path:
    """A Singer state file with the bookmark of the visitors' stream: by default at BOOKMARK; a keyword set
    to ABSENT leaves that key out."""
    path = tmp_path / "state.json"
    bookmark = {
        "replication_key": "updated_at",
        "replication_key_value": BOOKMARK,
        "version": 1516304171710,
    } | bookmark
    bookmark = {k: v for k, v in bookmark.items() if v is not ABSENT}
    path.write_text(
        json.dumps({"currently_syncing": None, "bookmarks": {"analytics.public.visitors": bookmark}})
    )
    return path


def point_at(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)


def with_key_type(world: World, key_type: str) -> None:
    if key_type == "timestamptz":
        if backend_of(world.engine) == "duckdb":
            world.sql("ALTER TABLE visitors ALTER updated_at TYPE TIMESTAMPTZ")
        else:
            world.sql(
                "ALTER TABLE visitors ALTER COLUMN updated_at TYPE timestamptz USING updated_at AT TIME ZONE 'UTC'"
            )


@pytest.mark.parametrize("key_type", ["timestamp", "timestamptz"])
@pytest.mark.parametrize("entry", ["cli", "dagster"])
def test_an_incremental_run_after_a_singer_import_sends_the_rows_past_the_bookmark(
    world: World, key_type: str, entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    with_key_type(world, key_type)
    expected = int(
        world.sql(
            "SELECT count(*) FROM visitors WHERE updated_at > :bookmark AND (nps IS NULL OR nps <> 'n/a')",
            bookmark=BOOKMARK.replace("T", " ").replace(".000Z", "+00:00")
            if key_type == "timestamptz"
            else BOOKMARK.replace("T", " ").replace(".000Z", ""),
        )[0][0]
    )
    assert expected > 0
    point_at(world, monkeypatch)
    assert main(["state", "import-singer", "visitors", str(singer_state(tmp_path))]) == 0
    assert capsys.readouterr().out.startswith("Imported: state version 1;")
    world.emulator.reset_stats()

    if entry == "cli":
        code = main(["run", "visitors", "--accept-rejects", "--json"])
        assert code == 0, capsys.readouterr().err
        sent = json.loads(capsys.readouterr().out.splitlines()[-1])["counts"]["sent"]
    else:
        defs = build_definitions(world.config)
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("sync_visitors").execute_in_process(instance=instance)
        assert result.success
        (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
        sent = mat.metadata["sent"].value

    # Rows up to the bookmark were marked as in Pendo, so even the run's look-back window resends nothing
    # from before it: exactly the rows past the bookmark go, whatever the key's type.
    assert sent == expected
    assert len(world.emulator.received_ids) == expected


def test_rows_without_a_key_are_not_taken_for_sent_by_a_singer_import(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Singer's incremental taps select past the bookmark: a row whose key is NULL was never sent, so the
    import must not mark it confirmed (incremental slices hold such rows since they were read)."""
    keyless = [
        r[0]
        for r in world.sql(
            "SELECT visitor_id FROM visitors WHERE nps IS NULL OR nps <> 'n/a' ORDER BY visitor_id"
        )
    ][:3]
    for visitor in keyless:
        world.sql("UPDATE visitors SET updated_at = NULL WHERE visitor_id = :v", v=visitor)
    point_at(world, monkeypatch)
    assert main(["state", "import-singer", "visitors", str(singer_state(tmp_path))]) == 0
    assert set(keyless).isdisjoint(world.store.ledger.rows("visitors"))
    world.emulator.reset_stats()
    assert main(["run", "visitors", "--accept-rejects", "--json"]) == 0, capsys.readouterr().err
    assert set(keyless) <= set(world.emulator.received_ids)


@pytest.mark.parametrize("value", [None, ABSENT], ids=["null", "absent"])
def test_a_bookmark_without_a_value_marks_no_row_and_the_first_run_sends_every_row(
    world: World, value: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Singer writes a bookmark's value once it has synced a row past it: without one, the old pipeline
    synced nothing of the stream (or ran it full-table), so nothing is known to be in Pendo."""
    point_at(world, monkeypatch)
    assert (
        main(["state", "import-singer", "visitors", str(singer_state(tmp_path, replication_key_value=value))])
        == 0
    )
    assert capsys.readouterr().out == (
        "Nothing imported: the Singer bookmark holds no replication_key_value, so the old pipeline synced none "
        "of the rows; the first run of visitors sends every row.\n"
    )
    world.store.ensure_schema()
    assert world.store.ledger.rows("visitors") == {}
    assert world.store.versions.all("visitors") == []
    world.emulator.reset_stats()
    assert main(["run", "visitors", "--accept-rejects", "--json"]) == 0, capsys.readouterr().err
    sendable = world.sql("SELECT count(*) FROM visitors WHERE nps IS NULL OR nps <> 'n/a'")[0][0]
    assert len(world.emulator.received_ids) == sendable


def test_a_bookmark_past_the_newest_key_marks_every_row_and_the_first_run_moves_the_cursor_back(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Legitimate (the old pipeline synced everything), and past the ceiling a run's cursor may take."""
    point_at(world, monkeypatch)
    state_file = singer_state(tmp_path, replication_key_value="2099-01-01T00:00:00Z")
    assert main(["state", "import-singer", "visitors", str(state_file)]) == 0
    keyed = world.sql("SELECT count(*) FROM visitors WHERE updated_at IS NOT NULL")[0][0]
    assert capsys.readouterr().out == (
        f"Imported: state version 1; {keyed:,} rows up to the bookmark marked as already in Pendo.\n"
    )
    world.emulator.reset_stats()
    assert main(["run", "visitors", "--accept-rejects", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["counts"]["sent"] == 0
    newest = world.sql("SELECT max(updated_at) FROM visitors")[0][0]
    assert world.store.versions.current_cursor("visitors") == newest


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1700000000, "1700000000"),
        ("garbage", '"garbage"'),
        ({"a": 1}, '{"a": 1}'),
        ("2026-13-45", '"2026-13-45"'),
        ("99999-01-01", '"99999-01-01"'),
    ],
)
def test_a_bookmark_the_key_cannot_take_is_refused_in_one_line_and_writes_nothing(
    world: World, value: object, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """It reached the warehouse (a conversion error and the whole SQL, as an internal error) after the
    import's state version was written, and every later run failed on that cursor."""
    point_at(world, monkeypatch)
    assert (
        main(["state", "import-singer", "visitors", str(singer_state(tmp_path, replication_key_value=value))])
        == 2
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"pendo-sync: sync 'visitors': the Singer bookmark of stream 'analytics.public.visitors' holds {shown}, "
        "which is not a value of updated_at (an ISO 8601 time of the years 1 to 9999); set its "
        "replication_key_value to the newest updated_at the old pipeline synced (such as "
        '"2026-10-29T00:00:00Z"), or remove it to have the first run send every row\n'
    )
    world.store.ensure_schema()
    assert world.store.versions.all("visitors") == []
    assert world.store.ledger.rows("visitors") == {}
    assert main(["run", "visitors", "--accept-rejects", "--json"]) == 0, capsys.readouterr().err


def accounts_state(tmp_path: Path, key: str, value: object) -> Path:
    path = tmp_path / "state.json"
    bookmark = {"replication_key": key, "replication_key_value": value}
    path.write_text(json.dumps({"bookmarks": {"db.public.accounts": bookmark}}))
    return path


@pytest.mark.parametrize(
    ("key", "value", "what", "example"),
    [
        ("renewal_date", "garbage", "an ISO 8601 date", '"2026-10-29"'),
        ("renewal_date", 20261029, "an ISO 8601 date", '"2026-10-29"'),
        ("seats", "many", "a number", "1234"),
        ("seats", True, "a number", "1234"),
        ("arr", [1], "a number", "1234"),
        ("plan", 3, "text", '"abc"'),
    ],
)
def test_a_bookmark_is_checked_against_the_keys_type_whatever_the_type(
    world: World, key: str, value: object, what: str, example: str, tmp_path: Path
):
    with pytest.raises(StateError) as raised:
        import_singer_state(
            world.spec("accounts", replication_key=key),
            world.engine,
            world.store,
            accounts_state(tmp_path, key, value),
        )
    assert str(raised.value) == (
        f"sync 'accounts': the Singer bookmark of stream 'db.public.accounts' holds {json.dumps(value)}, which "
        f"is not a value of {key} ({what}); set its replication_key_value to the newest {key} the old pipeline "
        f"synced (such as {example}), or remove it to have the first run send every row"
    )
    world.store.ensure_schema()
    assert world.store.versions.all("accounts") == []


@pytest.mark.parametrize(
    ("key", "value", "cursor"),
    [
        ("renewal_date", "2026-10-29", dt.date(2026, 10, 29)),
        ("seats", "12", 12),
        ("seats", 12, 12),
        ("arr", 1234.5, 1234.5),
        ("arr", "1234.5", Decimal("1234.5")),  # a number cursor as text is kept exactly; it was refused
        ("plan", "pro", "pro"),
    ],
)
def test_a_bookmark_of_the_keys_type_is_imported(
    world: World, key: str, value: object, cursor: object, tmp_path: Path
):
    path = accounts_state(tmp_path, key, value)
    up_to = world.sql(f"SELECT count(*) FROM accounts WHERE {key} <= :cursor", cursor=cursor)[0][0]
    assert import_singer_state(
        world.spec("accounts", replication_key=key), world.engine, world.store, path
    ) == (
        1,
        up_to,
    )
    assert world.store.versions.current_cursor("accounts") == cursor


def test_a_source_without_its_table_or_key_is_refused_before_anything_is_written(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """The import reached the warehouse (an internal error and the whole SQL) after writing its version."""
    point_at(world, monkeypatch)
    world.sql("ALTER TABLE visitors DROP COLUMN updated_at")
    assert main(["state", "import-singer", "visitors", str(singer_state(tmp_path))]) == 1
    assert capsys.readouterr().err == (
        "pendo-sync: sync 'visitors': replication_key 'updated_at' is not in visitors; columns are: account_id, "
        "email, is_admin, last_login_at, nps, role, signed_up_at, visitor_id\n"
    )
    world.sql("DROP TABLE visitors")
    assert main(["state", "import-singer", "visitors", str(singer_state(tmp_path))]) == 1
    assert capsys.readouterr().err == (
        "pendo-sync: sync 'visitors': table 'visitors' does not exist in the warehouse; check 'table' "
        "(schema.table) or run pendo-sync discover to list tables\n"
    )
    world.store.ensure_schema()
    assert world.store.versions.all("visitors") == []
