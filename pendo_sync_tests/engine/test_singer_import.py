"""A Singer state file imported, then an incremental run: from the CLI and from Dagster, on PostgreSQL and
DuckDB, with a `timestamp` and with a `timestamptz` replication key. The run sends exactly the rows past
the bookmark."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from pendo_sync.cli import main
from pendo_sync.dagster.build import build_definitions
from pendo_sync.warehouse.engines import backend_of
from pendo_sync_tests.world import World

BOOKMARK = "2026-10-29T00:00:00.000Z"


def singer_state(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    bookmark = {"replication_key": "updated_at", "replication_key_value": BOOKMARK, "version": 1516304171710}
    path.write_text(
        json.dumps({"currently_syncing": None, "bookmarks": {"analytics.public.visitors": bookmark}})
    )
    return path


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
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)
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
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)
    assert main(["state", "import-singer", "visitors", str(singer_state(tmp_path))]) == 0
    assert set(keyless).isdisjoint(world.store.ledger.rows("visitors"))
    world.emulator.reset_stats()
    assert main(["run", "visitors", "--accept-rejects", "--json"]) == 0, capsys.readouterr().err
    assert set(keyless) <= set(world.emulator.received_ids)
