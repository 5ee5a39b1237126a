"""Planning a run's slice, alone (plan_window), and reading a Singer bookmark (read_bookmark)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from pendo_sync.config import load_config
from pendo_sync.engine import plan as plan_module
from pendo_sync.engine.plan import RunOptions, plan_window
from pendo_sync.engine.singer_import import read_bookmark
from pendo_sync.errors import UsageError
from pendo_sync.state.versions import StateError
from pendo_sync.warehouse.slices import Slice
from pendo_sync_tests.world import World

SPEC = load_config().sync("accounts")  # replication_key updated_at, lookback_seconds 3600
NEWEST = dt.datetime(2026, 10, 30, 12, 0)


@pytest.fixture(autouse=True)
def newest_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse's newest key: NEWEST for the whole table, and for a window past its lower bound."""

    def newest(_engine: object, _spec: object, window: Slice, _kind: object = None) -> dt.datetime | None:
        return NEWEST if window.lower is None or window.lower < NEWEST else None

    monkeypatch.setattr(plan_module, "max_replication_key", newest)


def test_a_full_run_reads_every_row_and_moves_the_cursor_to_the_newest_key() -> None:
    window, target = plan_window(SPEC, None, dt.datetime(2026, 10, 1), RunOptions(mode="full"))  # type: ignore[arg-type]
    assert (window, target) == (Slice("full"), NEWEST)


def test_an_incremental_run_reads_past_the_cursor_less_the_lookback() -> None:
    cursor = dt.datetime(2026, 10, 20)
    window, target = plan_window(SPEC, None, cursor, RunOptions(mode="incremental"))  # type: ignore[arg-type]
    assert window == Slice("incremental", cursor - dt.timedelta(hours=1), NEWEST, lower_included=True)
    assert target == NEWEST


def test_a_first_incremental_run_reads_everything_up_to_the_newest_key() -> None:
    window, target = plan_window(SPEC, None, None, RunOptions(mode="incremental"))  # type: ignore[arg-type]
    assert (window, target) == (Slice("incremental", None, NEWEST), NEWEST)


def test_an_incremental_run_past_the_newest_key_keeps_the_cursor() -> None:
    cursor = dt.datetime(2026, 11, 5)
    _, target = plan_window(SPEC, None, cursor, RunOptions(mode="incremental"))  # type: ignore[arg-type]
    assert target == cursor


def test_a_backfill_reads_its_window_and_never_moves_the_cursor() -> None:
    cursor = dt.datetime(2026, 10, 20)
    options = RunOptions(mode="backfill", window=("2026-10-01", "2026-10-03"))
    window, target = plan_window(SPEC, None, cursor, options, "timestamp without time zone")  # type: ignore[arg-type]
    assert window == Slice("backfill", dt.datetime(2026, 10, 1), dt.datetime(2026, 10, 3))
    assert target == cursor


def test_an_imported_naive_cursor_is_aligned_with_a_timestamptz_key() -> None:
    aware_newest = NEWEST.replace(tzinfo=dt.UTC)
    plan_module.max_replication_key = lambda *_: aware_newest  # type: ignore[assignment]
    window, target = plan_window(
        SPEC, None, dt.datetime(2026, 10, 20), RunOptions(mode="incremental"), "timestamp with time zone"
    )  # type: ignore[arg-type]
    assert window.lower == dt.datetime(2026, 10, 19, 23, tzinfo=dt.UTC) and target == aware_newest


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RunOptions(mode="sideways"), "mode 'sideways' is not one of full, incremental, backfill"),
        (
            RunOptions(mode="backfill"),
            "sync 'accounts': a backfill needs a window (start, end) of updated_at",
        ),
    ],
)
def test_a_mode_that_cannot_be_planned_says_why(options: RunOptions, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        plan_window(SPEC, None, None, options)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_incremental_without_a_replication_key_says_to_run_full() -> None:
    keyless = dataclasses.replace(SPEC, replication_key=None)
    with pytest.raises(
        UsageError, match="incremental runs need replication_key in the config; run mode full"
    ):
        plan_window(keyless, None, None, RunOptions(mode="incremental"))  # type: ignore[arg-type]


def bookmarks(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document))
    return path


def test_read_bookmark_finds_the_stream_of_the_sync_table(tmp_path: Path) -> None:
    value = {"replication_key": "updated_at", "replication_key_value": "2026-10-29T00:00:00Z"}
    path = bookmarks(tmp_path, {"bookmarks": {"db.public.accounts": value, "db.public.visitors": {}}})
    assert read_bookmark(path, SPEC) == ("db.public.accounts", "2026-10-29T00:00:00Z")
    wrapped = bookmarks(tmp_path, {"type": "STATE", "value": {"bookmarks": {"accounts": value}}})
    assert read_bookmark(wrapped, SPEC) == ("accounts", "2026-10-29T00:00:00Z")
    # A full-table stream's bookmark, or one whose tap synced nothing yet: no value.
    assert read_bookmark(bookmarks(tmp_path, {"bookmarks": {"accounts": {"version": 1}}}), SPEC) == (
        "accounts",
        None,
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"bookmarks": {}}, "cannot tell which bookmark in .* is this sync's \\(found none\\); pass --stream NAME"),
        ({"bookmarks": {"db.public.accounts": 1}}, "bookmarks.db.public.accounts is not a bookmark"),
        ({"bookmarks": {"accounts": {"replication_key": "created_at", "replication_key_value": 1}}},
         "the Singer bookmark is on 'created_at' but the sync's replication_key is 'updated_at'"),
    ],
)  # fmt: skip
def test_read_bookmark_says_what_is_wrong_with_a_state_file(
    tmp_path: Path, document: object, message: str
) -> None:
    with pytest.raises(StateError, match=message):
        read_bookmark(bookmarks(tmp_path, document), SPEC)


def test_read_bookmark_of_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read Singer state file"):
        read_bookmark(path, SPEC)


def test_a_backfill_window_that_is_empty_or_not_of_the_keys_type_is_refused(world: World) -> None:
    """It ran anyway (an empty window made a state version) or reached the warehouse ('foo' as a
    timestamp: invalid input syntax)."""
    spec = world.spec("accounts")
    with pytest.raises(UsageError) as raised:
        world.run(spec, mode="backfill", window=("2026-11-05", "2026-11-01"))
    assert str(raised.value) == (
        "sync 'accounts': the window [2026-11-05 00:00:00, 2026-11-01 00:00:00) is empty; give the start "
        "before the end"
    )
    with pytest.raises(UsageError) as raised:
        world.run(spec, mode="backfill", window=("foo", "2026-11-01"))
    assert str(raised.value) == (
        "sync 'accounts': the window's start 'foo' is not a timestamp of updated_at; give ISO 8601 dates or "
        "times (2026-11-01, 2026-11-01T06:00)"
    )
    assert world.store.versions.all("accounts") == []


def test_read_bookmark_of_a_stream_the_file_lacks_lists_those_it_has(tmp_path: Path) -> None:
    path = bookmarks(tmp_path, {"bookmarks": {"db.public.accounts": {"replication_key_value": 1}}})
    with pytest.raises(StateError) as raised:
        read_bookmark(path, SPEC, "db.public.acounts")
    assert str(raised.value) == (
        f"sync 'accounts': {path} has no bookmark for stream 'db.public.acounts' (found ['db.public.accounts']); "
        "pass --stream with one of them"
    )
