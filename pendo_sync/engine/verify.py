"""Pendo read back: what Pendo holds for a sync's mapped fields, compared with the source values of the rows
the ledger says Pendo confirmed. A difference is a value edited in Pendo's UI, another integration writing
the same field, or a write Pendo acknowledged that did not land; `repair` makes the next run resend
exactly those ids (a `drift` reject, retried by every later run until it lands).

A sample reads each record (`GET /api/v1/{kind}/{id}`); `--all` pages through Pendo's records with the
aggregation API, selecting the mapped fields, and then takes the confirmed ids it did not meet (kept in a
temporary table of the state database, not in memory) as records Pendo lacks. Rows whose source changed since Pendo confirmed them are not
compared: the next run sends them anyway.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from pendo_sync.config import SyncSpec
from pendo_sync.engine.preflight import describe_source
from pendo_sync.engine.records import RecordEncoder
from pendo_sync.outcome import Reject
from pendo_sync.pendo.client import PendoClient
from pendo_sync.pendo.types import CoercionError
from pendo_sync.state.ledger import SeenIds
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.diff import ChangeSetSQL
from pendo_sync.warehouse.slices import Slice, fetch_tuples

EXAMPLES = 20
PAGE = 1000
RECORD = "(record)"  # a Difference's field when Pendo has no record of the id


@dataclass(frozen=True)
class Difference:
    record_id: str
    field: str
    expected: Any  # what the source says, as pendo_sync sends it
    found: Any  # what Pendo holds (None: nothing)

    def line(self) -> str:
        if self.field == RECORD:
            return f"{self.record_id}: no record in Pendo"
        return f"{self.record_id}: {self.field} is {self.found!r} in Pendo, {self.expected!r} in the source"


@dataclass
class Verification:
    """What a verify found."""

    sync: str
    checked: int = 0  # confirmed ids compared with Pendo
    changed_since: int = 0  # confirmed ids whose source row changed since: the next run sends them
    differing: int = 0  # ids where Pendo holds another value, or no record at all
    examples: list[Difference] = field(default_factory=list)
    repaired: int = 0  # ids the next run will resend (with repair)

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def summary(self) -> str:
        head = (
            f"sync {self.sync!r}: {self.checked:,} confirmed ids compared with Pendo, {self.differing:,} differ"
            + (
                f" ({self.changed_since:,} changed in the source since, not compared)"
                if self.changed_since
                else ""
            )
        )
        return "\n".join([head, *(f"  {d.line()}" for d in self.examples)])


async def verify(
    spec: SyncSpec,
    warehouse: Engine,
    state: StateStore,
    client: PendoClient,
    sample: int | None = 200,
    repair: bool = False,
) -> Verification:
    """Compare a sample of `sample` confirmed ids (all of them with None) with what Pendo holds."""
    state.ensure_schema()
    # Read first: a server that is not Pendo fails here, before any id is taken for missing from Pendo.
    await client.field_schema(spec.kind)
    comparer = _Comparer(spec, warehouse, state)
    result = Verification(spec.name)

    def take(pendo_values: dict[str, dict[str, Any] | None], seen: SeenIds | None = None) -> None:
        differences = comparer.compare(pendo_values, result, seen)
        if repair and differences:
            _repair(spec, state, differences)
            result.repaired += len(differences)

    if sample is not None:
        async for found in _sampled(spec, state, client, sample):
            take(found)
        return result
    # Every record Pendo has, then the confirmed ids it lacks (deleted in Pendo, or never landed).
    with state.ledger.seen_ids() as seen:
        async for found in _paged(spec, client):
            take(found, seen)
        for lacking in seen.unseen(spec.name, PAGE):
            take(dict.fromkeys(lacking))
    return result


class _Comparer:
    """Source rows by id, coerced as a run would send them, compared field by field with Pendo's values."""

    def __init__(self, spec: SyncSpec, warehouse: Engine, state: StateStore) -> None:
        self.spec, self.warehouse, self.state = spec, warehouse, state
        self.sql = ChangeSetSQL(spec, Slice("full"), describe_source(warehouse, spec).columns)
        self.encoder = RecordEncoder(spec)

    def compare(
        self, pendo_values: dict[str, dict[str, Any] | None], result: Verification, seen: SeenIds | None
    ) -> dict[str, Difference]:
        """id -> first difference, for the confirmed ids among `pendo_values` (id -> field values or None);
        those ids are added to `seen`, when given."""
        ids = list(pendo_values)
        confirmed = self.state.ledger.hashes(self.spec.name, ids)
        if seen is not None and confirmed:
            seen.add(list(confirmed))
        if not confirmed:
            return {}
        with self.warehouse.connect() as conn:
            # As a run reads them (the driver's values: a JSON column's text, not SQLAlchemy's dict of it).
            rows = fetch_tuples(conn, self.sql.rows(self.sql.source_rows(ids=list(confirmed)), None))
        differences: dict[str, Difference] = {}
        for row in rows:
            record_id, row_hash, values = row[0], row[1], tuple(row[4 : 4 + len(self.spec.fields)])
            if confirmed.get(record_id) != row_hash:
                result.changed_since += 1
                continue
            result.checked += 1
            difference = self._difference(record_id, values, pendo_values.get(record_id))
            if difference is not None:
                differences[record_id] = difference
                result.differing += 1
                if len(result.examples) < EXAMPLES:
                    result.examples.append(difference)
        return differences

    def _difference(
        self, record_id: str, values: tuple[Any, ...], found: dict[str, Any] | None
    ) -> Difference | None:
        if found is None:
            return Difference(record_id, RECORD, "a record", None)
        clear = self.encoder.wire.clear_value
        for mapping, value in zip(self.spec.fields, values, strict=True):
            try:
                expected = self.encoder.coerce(mapping.field, value)
            except CoercionError:
                continue  # an invalid value was never sent: its reject says so
            actual = found.get(mapping.field)
            if not _same(expected, actual, clear):
                return Difference(record_id, mapping.field, expected, actual)
        return None


def _same(expected: Any, actual: Any, clear: Any) -> bool:
    if expected in (None, clear) and actual in (None, clear, ""):
        return True
    numbers = (
        isinstance(expected, float | int)
        and isinstance(actual, float | int)
        and not isinstance(expected, bool)
        and not isinstance(actual, bool)
    )
    if numbers and (isinstance(expected, float) or isinstance(actual, float)):
        # a float may come back rounded; integers and times (epoch milliseconds) must be the same
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-9)
    return bool(expected == actual)


async def _sampled(
    spec: SyncSpec, state: StateStore, client: PendoClient, sample: int
) -> AsyncIterator[dict[str, dict[str, Any] | None]]:
    """A random sample of confirmed ids, each read from Pendo (a few calls at once)."""
    ids = state.ledger.sample_ids(spec.name, sample)
    gate = asyncio.Semaphore(8)

    async def read(record_id: str) -> tuple[str, dict[str, Any] | None]:
        async with gate:
            record = await client.get_record(spec.kind, record_id)
        return record_id, None if record is None else dict(record.get("metadata", {}).get(spec.group) or {})

    for start in range(0, len(ids), PAGE):
        found = await asyncio.gather(*(read(i) for i in ids[start : start + PAGE]))
        yield dict(found)


async def _paged(spec: SyncSpec, client: PendoClient) -> AsyncIterator[dict[str, dict[str, Any] | None]]:
    """Every record of the kind, the mapped fields selected, a page at a time (aggregation API)."""
    fields = [m.field for m in spec.fields]
    async for page in client.field_values(spec.kind, spec.group, fields, PAGE):
        yield {record_id: values for record_id, values in page}


def _repair(spec: SyncSpec, state: StateStore, differences: dict[str, Difference]) -> None:
    """A drift reject for each id: every later run resends it, whatever its slice, until it lands."""
    latest = state.versions.get(spec.name)
    version = latest.version if latest else 0
    hashes = state.ledger.hashes(spec.name, list(differences))
    rejects: Sequence[Reject] = [
        Reject(record_id, hashes.get(record_id, ""), "drift", f"verify: {d.line()}")
        for record_id, d in differences.items()
    ]
    state.record_batch(spec.name, version, "verify", rejects=rejects)
