"""Moving over from the old Singer pipeline: its bookmark becomes the starting cursor, and the rows up to
the bookmark enter the ledger as already confirmed, so the first run does not resend what Pendo has."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.engine.changeset import ChangeSet
from pendo_sync.engine.preflight import source_columns
from pendo_sync.state.store import StateError, StateStore
from pendo_sync.warehouse.slices import Slice


def read_bookmark(path: str | Path, spec: SyncSpec, stream: str | None = None) -> Any:
    """The bookmark value for the sync's stream in a Singer state file, parsed to a timestamp where it is one."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read Singer state file {path}: {exc}") from exc
    bookmarks: dict[str, Any] = (document.get("value") or document).get("bookmarks") or {}
    table = (spec.table or "").rpartition(".")[2]
    if stream is None:
        candidates = [
            k for k in bookmarks if table and (k == table or k.endswith(("." + table, "-" + table)))
        ]
        if len(candidates) != 1:
            raise StateError(
                f"sync {spec.name!r}: cannot tell which bookmark in {path} is this sync's "
                f"(found {sorted(bookmarks) or 'none'}); pass --stream NAME"
            )
        stream = candidates[0]
    bookmark = bookmarks.get(stream)
    if not isinstance(bookmark, dict) or "replication_key_value" not in bookmark:
        raise StateError(f"{path}: bookmarks.{stream}.replication_key_value is missing")
    key = bookmark.get("replication_key")
    if key and spec.replication_key and key != spec.replication_key:
        raise StateError(
            f"sync {spec.name!r}: the Singer bookmark is on {key!r} but the sync's replication_key is "
            f"{spec.replication_key!r}; make them the same column"
        )
    value = bookmark["replication_key_value"]
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
        except ValueError:
            return value
    return value


def import_singer_state(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    path: str | Path,
    stream: str | None = None,
    chunk_rows: int = 10_000,
) -> tuple[int, int]:
    """Write a state version at the bookmark and ledger rows for every source row up to it."""
    if not spec.replication_key:
        raise StateError(f"sync {spec.name!r} has no replication_key; a Singer bookmark cannot apply to it")
    bookmark = read_bookmark(path, spec, stream)
    state.ensure_schema()
    version = state.import_version(spec.name, bookmark, f"imported from Singer state {Path(path).name}")
    up_to_bookmark = ChangeSet(
        spec,
        warehouse,
        state,
        Slice("incremental", None, bookmark),
        full_refresh=True,
        column_types=source_columns(warehouse, spec) or {},  # hash as runs do, or the ledger would not match
    )
    rows = 0
    for chunk in up_to_bookmark.changed_rows(chunk_rows):
        state.record_batch(spec.name, version, "import", confirmed=[(r[0], r[1]) for r in chunk if r[0]])
        rows += len(chunk)
    return version, rows
