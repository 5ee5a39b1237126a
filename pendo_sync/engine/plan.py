"""Which rows a run looks at: the one description of it (`SourceSlice`), planned from the run's mode, the
sync's cursor and the warehouse. Dagster's IO manager plans it for the Pendo asset (a partition's days, or
past the cursor) and hands it to the engine; the CLI's runs plan it the same way, inside the engine.

| mode          | the slice                                                                   | cursor after |
|---------------|-----------------------------------------------------------------------------|--------------|
| `full`        | every row (bounded above by the newest key, so the cursor is well defined)  | newest key   |
| `incremental` | rows past the cursor less `lookback_seconds` (every row on a first run)     | newest key   |
| `backfill`    | rows with the key in [start, end): a partition or a date range              | unchanged    |

Outstanding rejects are read whatever the slice (engine/changeset.py). A full refresh (every row sent
again, whatever the ledger says) is owed until a run goes through: the next full or incremental run after
one the budget stopped, that failed or was killed reads every row and sends those the refresh has not sent
since it began (`refresh_since`), instead of starting over or sending nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.engine.preflight import PreflightError, Source, describe_source, warehouse_problems
from pendo_sync.errors import UsageError
from pendo_sync.state.cursor import KIND_WORDS, align_cursor, cursor_fits, key_kind
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.hashes import mapping_digest
from pendo_sync.warehouse.slices import (
    Slice,
    future_keys,
    key_ceiling,
    lookback_lower,
    max_replication_key,
    past_ceiling,
)

if TYPE_CHECKING:
    from pendo_sync.engine.runner import Progress

MODES = ("full", "incremental", "backfill")


@dataclass
class RunOptions:
    """How one run reads and what it may do."""

    mode: str = "full"
    window: tuple[Any, Any] | None = None  # backfill: [start, end) of the replication key
    full_refresh: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    dry_run: bool = False
    progress: Callable[[Progress], None] | None = None
    progress_every_seconds: float | None = None  # the delivery settings' cadence where None


@dataclass(frozen=True)
class SourceSlice:
    """The rows of a sync's source a run looks at: the source relation (its table or query) within
    `window`'s bounds of the replication key, and the cursors around it. The change set reads it in chunks,
    never whole."""

    sync: str
    mode: str
    window: Slice
    previous: Any  # the cursor it was planned from
    target: Any  # the cursor a run that goes through moves to
    source: Source  # the source's columns, as the warehouse described them
    full_refresh: bool = False  # a refresh begins: the ledger is not looked at
    refresh_since: int | None = None  # a refresh is continued: what the ledger holds from this version on
    note: str = ""  # what the operator should know of the slice (keys far in the future)

    def describe(self) -> str:
        if self.window.mode != "full" or not (self.full_refresh or self.refresh_since is not None):
            return self.window.describe()  # an incremental refresh says so in its why_whole
        return f"{self.window.describe()} ({_refresh_words(self.refresh_since)})"


def _refresh_words(since: int | None) -> str:
    return "a full refresh" if since is None else f"continuing the full refresh begun in version {since}"


def plan(spec: SyncSpec, warehouse: Engine, state: StateStore, options: RunOptions) -> SourceSlice:
    """The slice of a run: the source described (a missing table or column is a PreflightError), the cursor
    read from the state store and aligned with the key's type, the bounds read from the warehouse."""
    source = describe_source(warehouse, spec)
    problems = warehouse_problems(spec, source)
    if problems:
        raise PreflightError(problems, source)
    state.ensure_schema()
    previous = state.versions.current_cursor(spec.name)
    owed = state.versions.owed_refresh(spec.name) if options.mode != "backfill" else None
    if owed is not None:  # every row, as the refresh it continues reads them
        options = dataclasses.replace(options, full_refresh=True)
    key_type = (source.columns or {}).get(spec.replication_key or "")
    last = state.versions.last_mapping(spec.name)
    frozen = previous if past_ceiling(previous) else None  # set by a release that let a placeholder in
    if frozen is not None and options.mode == "incremental":
        window, target = plan_window(spec, warehouse, None, options, key_type)
        window = dataclasses.replace(
            window, why_whole=f"every row: the cursor {frozen} was more than a day past now"
        )
    elif last is not None and last[1] != mapping_digest(spec) and options.mode == "incremental":
        # Every row sends something else now, whatever its key: read them all, as a first run does.
        window, target = plan_window(spec, warehouse, None, options, key_type)
        window = dataclasses.replace(
            window, why_whole=f"every row: the mapping changed since version {last[0]}"
        )
    else:
        window, target = plan_window(spec, warehouse, previous, options, key_type)
        latest = state.versions.get(spec.name)
        if window.mode == "incremental" and options.full_refresh:
            window = dataclasses.replace(window, why_whole=f"every row: {_refresh_words(owed)}")
        elif previous is None and latest is not None and latest.mode == "revert" and window.lower is None:
            window = dataclasses.replace(window, why_whole=f"every row: {latest.note.split(';')[0]}")
    note = ""
    if target is not None and past_ceiling(target) and window.mode != "backfill":
        target, note = _before_the_future(spec, warehouse, window, target, None if frozen else previous)
        # No upper bound: a key past what Python holds ('infinity', the year 10000) lies past any bound.
        window = dataclasses.replace(window, upper=None)
    return SourceSlice(
        spec.name,
        options.mode,
        window,
        previous,
        target,
        source,
        options.full_refresh and owed is None,
        owed,
        note,
    )


def _before_the_future(
    spec: SyncSpec, warehouse: Engine, window: Slice, target: Any, previous: Any
) -> tuple[Any, str]:
    """The cursor a run may move to when the newest key is more than a day past now (a placeholder such as
    9999-12-31): the newest key before that, so later rows are not skipped; the far rows stay in every
    incremental slice (diffed with the ledger: sent when they change). And the note that says so."""
    ceiling = key_ceiling(target)
    far = future_keys(warehouse, spec, dataclasses.replace(window, upper=None), ceiling)
    before = far.newest_before
    previous = align_cursor(previous, None, like=before)  # kept before the key's type changed, perhaps
    if previous is not None and (before is None or previous > before):
        before = previous
    rows = "1 row" if far.rows == 1 else f"{far.rows:,} rows"
    has = "has" if far.rows == 1 else "have"
    source = spec.table or "the query"
    note = (
        f"{rows} of {source} {has} {spec.replication_key} later than a day from now (the latest "
        f"{far.latest}): the cursor stops at the newest key before it, and such rows are read by every "
        f"incremental run; correct {spec.replication_key} in the source"
    )
    return before, note


def _window_bound(spec: SyncSpec, kind: str | None, name: str, value: Any) -> Any:
    """One bound of a backfill window, as the key's type has it; a bound that cannot be one is refused."""
    try:
        bound = align_cursor(value, kind)
    except ValueError:
        bound = None
    if bound is None or (kind in ("timestamp", "timestamptz", "date") and isinstance(bound, str)):
        raise UsageError(
            f"sync {spec.name!r}: the window's {name} {value!r} is not a {kind or 'value'} of "
            f"{spec.replication_key}; give ISO 8601 dates or times (2026-11-01, 2026-11-01T06:00)"
        )
    return bound


def plan_window(
    spec: SyncSpec, warehouse: Engine, previous: Any, options: RunOptions, key_type: str | None = None
) -> tuple[Slice, Any]:
    """The window of the replication key to read and the cursor a run may move to if it goes through
    (`previous` otherwise). Cursors are aligned with the key's database type (`key_type`), so an imported
    or older cursor compares with the warehouse's values."""
    if options.mode not in MODES:
        raise UsageError(f"mode {options.mode!r} is not one of {', '.join(MODES)}")
    kind = key_kind(key_type)
    if options.mode == "backfill":
        if not options.window:
            raise UsageError(
                f"sync {spec.name!r}: a backfill needs a window (start, end) of {spec.replication_key}"
            )
        start, end = (
            _window_bound(spec, kind, name, v)
            for name, v in zip(("start", "end"), options.window, strict=True)
        )
        try:
            backwards = not start < end
        except TypeError:  # bounds of a type the key's kind leaves as they are: the database compares them
            backwards = False
        if backwards:
            raise UsageError(
                f"sync {spec.name!r}: the window [{start}, {end}) is empty; give the start before the end"
            )
        return Slice("backfill", start, end), previous
    if options.mode == "incremental" and not spec.replication_key:
        raise UsageError(
            f"sync {spec.name!r}: incremental runs need replication_key in the config; run mode full"
        )
    if not spec.replication_key:  # a cursor kept from when the sync had a key means nothing now
        previous = None
    if kind is None and previous is not None:  # a query source whose key type the driver did not say
        previous = align_cursor(previous, None, like=max_replication_key(warehouse, spec, Slice("full")))
    previous = align_cursor(previous, kind)
    if previous is not None and not cursor_fits(previous, kind):  # the key's type changed since
        if options.mode == "incremental" and not options.full_refresh:
            words = KIND_WORDS.get(kind or "", "a value of its type")
            raise UsageError(
                f"sync {spec.name!r}: the cursor {previous} kept by the last run is not {words}, "
                f"as replication key {spec.replication_key!r} now is (its type changed); run the sync once "
                "with --mode full to read every row and start the cursor again"
            )
        previous = None  # a full run starts it again
    if options.mode == "incremental" and previous is not None and not options.full_refresh:
        lower = lookback_lower(previous, spec.lookback_seconds)
        upper = max_replication_key(warehouse, spec, Slice("incremental", lower, lower_included=True), kind)
        window = Slice("incremental", lower, upper, lower_included=True)
        return window, max(upper, previous) if upper is not None else previous
    # A full run, or the first incremental run: every row, bounded above so the cursor is well defined.
    newest = max_replication_key(warehouse, spec, Slice("full"), kind) if spec.replication_key else None
    target = newest if newest is not None else previous
    if spec.replication_key and options.mode == "incremental":
        return Slice("incremental", None, newest), target
    return Slice("full"), target
