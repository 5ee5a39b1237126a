"""Moving over from the old Singer pipeline: its bookmark becomes the starting cursor, and the rows up to
the bookmark enter the ledger as already confirmed, so the first run does not resend what Pendo has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.engine.changeset import ROW_HASH, ROW_ID, ChangeSet
from pendo_sync.engine.preflight import PreflightError, describe_source, warehouse_problems
from pendo_sync.state.cursor import align_cursor, cursor_fits, key_kind
from pendo_sync.state.store import StateStore
from pendo_sync.state.versions import StateError
from pendo_sync.warehouse.slices import Slice

# What a key of each kind (key_kind) takes from a bookmark, in words, and an example; which values it takes
# is state/cursor.py's cursor_fits.
_FORMS: dict[str | None, tuple[str, str]] = {
    "timestamp": ("an ISO 8601 time of the years 1 to 9999", '"2026-10-29T00:00:00Z"'),
    "timestamptz": ("an ISO 8601 time of the years 1 to 9999", '"2026-10-29T00:00:00Z"'),
    "date": ("an ISO 8601 date", '"2026-10-29"'),
    "integer": ("a number", "1234"),
    "number": ("a number", "1234"),
    "string": ("text", '"abc"'),
    None: ("text or a number", '"2026-10-29T00:00:00Z"'),
}


def read_bookmark(path: str | Path, spec: SyncSpec, stream: str | None = None) -> tuple[str, Any]:
    """The sync's stream in a Singer state file and its bookmark value, as the file has it (text or number);
    None where the bookmark has none (Singer synced nothing of the stream, or ran it full-table)."""
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
    if stream not in bookmarks:
        raise StateError(
            f"sync {spec.name!r}: {path} has no bookmark for stream {stream!r} (found {sorted(bookmarks)}); "
            "pass --stream with one of them"
        )
    bookmark = bookmarks[stream]
    if not isinstance(bookmark, dict):
        raise StateError(
            f"{path}: bookmarks.{stream} is not a bookmark (an object with replication_key_value)"
        )
    key = bookmark.get("replication_key")
    if key and spec.replication_key and key != spec.replication_key:
        raise StateError(
            f"sync {spec.name!r}: the Singer bookmark is on {key!r} but the sync's replication_key is "
            f"{spec.replication_key!r}; make them the same column"
        )
    return stream, bookmark.get("replication_key_value")


def bookmark_cursor(spec: SyncSpec, stream: str, value: Any, kind: str | None) -> Any:
    """The bookmark as a cursor of the key's kind (key_kind); one the key cannot take is refused."""
    what, example = _FORMS[kind]
    try:
        cursor = None if isinstance(value, bool) else align_cursor(value, kind)  # JSON's true is no number
    except ValueError:  # text that is no date or number
        cursor = None
    # A JSON object or array is no key's value, whatever the kind (an unknown kind fits anything else).
    if cursor is not None and not isinstance(cursor, dict | list) and cursor_fits(cursor, kind):
        return cursor
    raise StateError(
        f"sync {spec.name!r}: the Singer bookmark of stream {stream!r} holds {json.dumps(value)}, which is not a "
        f"value of {spec.replication_key} ({what}); set its replication_key_value to the newest "
        f"{spec.replication_key} the old pipeline synced (such as {example}), or remove it to have the first "
        "run send every row"
    )


def import_singer_state(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    path: str | Path,
    stream: str | None = None,
    chunk_rows: int = 10_000,
) -> tuple[int | None, int]:
    """Write a state version at the bookmark (a cursor of the key's type) and ledger rows for every source
    row up to it: (the version, the rows); (None, 0), writing nothing, where the bookmark has no value."""
    if not spec.replication_key:
        raise StateError(f"sync {spec.name!r} has no replication_key; a Singer bookmark cannot apply to it")
    source = describe_source(warehouse, spec)
    problems = warehouse_problems(spec, source)  # a missing table or column, as a run says it
    if problems:
        raise PreflightError(problems, source)
    key_type = (source.columns or {}).get(spec.replication_key)
    stream, value = read_bookmark(path, spec, stream)
    if value is None:
        return None, 0
    bookmark = bookmark_cursor(spec, stream, value, key_kind(key_type))
    state.ensure_schema()
    version = state.versions.record(
        spec.name, "import", "import", bookmark, f"imported from Singer state {Path(path).name}"
    )
    # Hashed as runs hash them (with the column types), or the ledger would not match the next run's rows.
    up_to_bookmark = ChangeSet(
        spec,
        warehouse,
        state,
        Slice("incremental", None, bookmark, null_keys=False),
        True,
        source.columns,
        source.unique_ids,
    )
    rows = 0
    for chunk in up_to_bookmark.changed_rows(chunk_rows):
        state.record_batch(
            spec.name, version, "import", confirmed=[(r[ROW_ID], r[ROW_HASH]) for r in chunk if r[ROW_ID]]
        )
        rows += len(chunk)
    return version, rows
