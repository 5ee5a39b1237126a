"""Turning change-set rows into Pendo records: coercion per mapped column, JSON encoding, batching by size."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pendo_sync.config import SyncSpec
from pendo_sync.engine.changeset import ROW_HASH, ROW_ID, ROW_PREV, ROW_VALUES, ChangedRow
from pendo_sync.engine.delivery import Batch, Record
from pendo_sync.outcome import Reject
from pendo_sync.pendo.types import CoercionError, Wire, cleared_values, coercer_for, passes_as_is, show_value

# The ledger's record_id column (state/tables.py).
MAX_ID_LENGTH = 512


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Coercion has already refused NaN and infinities (orjson would write them as
    null, which clears a field) and left only JSON's own types; what orjson still cannot encode (an
    integer past 64 bits, text that is not valid Unicode) rejects the row."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise CoercionError(f"cannot be sent as JSON: {exc}") from None


MAX_PLANS = 4096  # plans kept by an encoder: memory bounded whatever the table (invariant 3)


class RecordEncoder:
    """Coerces one row's values to its fields' Pendo types and encodes the record Pendo expects.

    The hot path: rows alike in the classes of their values share a plan, the positions whose values
    need coercing (a value whose class is already its Pendo type's, pendo/types.py `passes_as_is`, goes
    as it is), so a row whose values are all in form costs a lookup, a dict and the JSON encoding."""

    def __init__(self, spec: SyncSpec, fingerprints: bool = False) -> None:
        self.spec = spec
        self.fingerprints = fingerprints  # rows carry the fields' fingerprints last (the change log)
        self._end = ROW_VALUES + len(spec.fields)
        self.id_key = spec.id_key
        self.wire = Wire(spec.time_format, spec.clear_with)
        self._columns = [m.column for m in spec.fields]
        self._names = [m.field for m in spec.fields]
        self._coercers = [coercer_for(m.type, m.element_type, self.wire) for m in spec.fields]
        self._as_is = [passes_as_is(m.type, self.wire) for m in spec.fields]
        self._plans: dict[tuple[type, ...], tuple[int, ...]] = {}

    def _plan(self, classes: tuple[type, ...]) -> tuple[int, ...]:
        plan = tuple(i for i, cls in enumerate(classes) if cls not in self._as_is[i])
        if len(self._plans) >= MAX_PLANS:  # each pattern of NULLs is a class tuple: 2^columns of them
            self._plans.clear()
        self._plans[classes] = plan
        return plan

    def values(self, values: tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
        """The row's values as Pendo takes them, in spec.fields order; CoercionError names the column."""
        classes = tuple(map(type, values))
        plan = self._plans.get(classes)
        if plan is None:
            plan = self._plan(classes)
        if not plan:
            return values
        coerced = list(values)
        for i in plan:
            try:
                coerced[i] = self._coercers[i](coerced[i])
            except CoercionError as exc:
                raise CoercionError(
                    f"column {self._columns[i]!r} -> field {self._names[i]!r}: {exc}"
                ) from None
        return coerced

    def encode(
        self,
        record_id: str | None,
        row_hash: str,
        values: tuple[Any, ...],
        new: bool = False,
        fields: str = "",
    ) -> Record:
        """The record for a row, or CoercionError naming the column, the field and the value."""
        if not record_id or len(record_id) > MAX_ID_LENGTH:
            raise CoercionError(self._bad_id(record_id))
        payload = dict(zip(self._names, self.values(values), strict=True))
        try:
            encoded = _dumps({self.id_key: record_id, "values": payload})
        except CoercionError as exc:
            raise CoercionError(self._unencodable(payload, exc)) from None
        return Record(record_id, row_hash, encoded, new=new, fields=fields)

    def _unencodable(self, payload: dict[str, Any], exc: CoercionError) -> str:
        """The reason a record cannot be JSON, naming the first column whose value is why."""
        for column, (name, value) in zip(self._columns, payload.items(), strict=True):
            try:
                _dumps(value)
            except CoercionError as inner:
                return f"column {column!r} -> field {name!r}: {show_value(value)} {inner}"
        return str(exc)

    def into_batches(self, rows: Iterable[ChangedRow], batcher: Batcher) -> tuple[list[Batch], list[Reject]]:
        """Encode a chunk of changed rows into the batcher, record by record (a record's JSON goes into
        its batch's body at once: held until the chunk's end, a hundred thousand small JSON buffers cost
        more to allocate than to encode); the batches filled, and the rows rejected as invalid."""
        full: list[Batch] = []
        invalid: list[Reject] = []
        encode, add, end, fingerprints = self.encode, batcher.add, self._end, self.fingerprints
        for row in rows:
            try:
                fields = row[end] if fingerprints else ""
                record = encode(
                    row[ROW_ID], row[ROW_HASH], row[ROW_VALUES:end], row[ROW_PREV] is None, fields
                )
            except CoercionError as exc:
                invalid.append(Reject(row[ROW_ID] or "(empty id)", row[ROW_HASH], "invalid", str(exc)))
                continue
            batch = add(record)
            if batch is not None:
                full.append(batch)
        return full, invalid

    def _bad_id(self, record_id: str | None) -> str:
        if not record_id:
            return f"id column {self.spec.id_column!r} is empty"
        return (
            f"id column {self.spec.id_column!r} holds {len(record_id):,} characters; Pendo ids (and the "
            f"ledger) take at most {MAX_ID_LENGTH}"
        )

    def coerce(self, field: str, value: Any) -> Any:
        """One field's value as a record carries it (pendo-sync verify compares it with Pendo's)."""
        i = self._names.index(field)
        return value if value.__class__ in self._as_is[i] else self._coercers[i](value)

    def clear(self, record_id: str) -> Record:
        """The record that clears every mapped field of a deleted id (on_delete: clear)."""
        values = cleared_values(self._names, self.wire)
        return Record(record_id, "", _dumps({self.id_key: record_id, "values": values}), op="clear")


class Batcher:
    """Groups records into batches bounded by a record count (which may change between batches) and bytes,
    writing each record's JSON into the batch's body as it comes (the record keeps only its id and hash)."""

    def __init__(self, max_records: Callable[[], int], max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._start()

    def _start(self) -> None:
        self._records: list[Record] = []
        self._limit = self._max_records()  # read once a batch: the sizer moves between batches
        self._body = bytearray(b"[")
        self._bounds = array("q", [1])  # where each record starts; the last: the body's length once closed

    def add(self, record: Record) -> Batch | None:
        """Add a record; return a full batch when this record would overflow the current one."""
        encoded, record.encoded = record.encoded, b""
        end = self._bounds[-1] + len(encoded) + 1
        full = None
        if self._records and (end > self._max_bytes or len(self._records) >= self._limit):
            full = self.flush()
            end = self._bounds[-1] + len(encoded) + 1
        if self._records:
            self._body += b","
        self._body += encoded
        self._records.append(record)
        self._bounds.append(end)
        return full

    def add_all(self, records: Iterable[Record]) -> list[Batch]:
        """Add records; return the batches they filled."""
        return [batch for batch in map(self.add, records) if batch is not None]

    def flush(self) -> Batch | None:
        if not self._records:
            return None
        self._body += b"]"
        batch = Batch(self._records, bytes(self._body), self._bounds)
        self._start()
        return batch
