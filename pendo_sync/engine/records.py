"""Turning change-set rows into Pendo records: coercion per mapped column, JSON encoding, batching by size."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from pendo_sync.config import SyncSpec
from pendo_sync.engine.delivery import Batch, Record
from pendo_sync.pendo.types import CoercionError, Wire, cleared_values, coercer_for

# The ledger's record_id column (state/tables.py).
MAX_ID_LENGTH = 512

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, refusing NaN and infinities. (orjson was tried: no faster here once coercion
    was, and the sync's peak RSS went from 170 to 600 MiB.)"""
    try:
        return _encode(value).encode()
    except ValueError as exc:
        raise CoercionError(f"cannot be sent as JSON: {exc}") from None


# A value whose class is exactly its field's Pendo type is already what coercion would return (a bool is
# not an int here): the hot path passes it through instead of calling the coercer.
_ALREADY_PENDO: dict[str, type] = {"string": str, "integer": int, "boolean": bool}


def fingerprints(values: Any) -> str:
    """A short fingerprint of each value, comma-joined: the change log compares them to name the fields
    that changed (crc32 of the value's repr: stable across processes, unlike hash())."""
    return ",".join(format(zlib.crc32(repr(v).encode()), "08x") for v in values)


class RecordEncoder:
    """Coerces one row's values to its fields' Pendo types and encodes the record Pendo expects."""

    def __init__(self, spec: SyncSpec, fingerprint: bool = False) -> None:
        self.spec = spec
        self.fingerprint = fingerprint
        self.id_key = spec.id_key
        self.wire = Wire(spec.time_format, spec.clear_with)
        self._fields = [
            (m.column, m.field, coercer_for(m.type, m.element_type, self.wire), _ALREADY_PENDO.get(m.type))
            for m in spec.fields
        ]

    def encode(
        self, record_id: str | None, row_hash: str, values: tuple[Any, ...], new: bool = False
    ) -> Record:
        """The record for a row, or CoercionError naming the column, the field and the value."""
        if record_id is None or record_id == "":
            raise CoercionError(f"id column {self.spec.id_column!r} is empty")
        if len(record_id) > MAX_ID_LENGTH:
            raise CoercionError(
                f"id column {self.spec.id_column!r} holds {len(record_id):,} characters; Pendo ids (and the "
                f"ledger) take at most {MAX_ID_LENGTH}"
            )
        payload: dict[str, Any] = {}
        coerce: Callable[[Any], Any]
        for (column, field, coerce, already), value in zip(self._fields, values, strict=True):
            if value.__class__ is already:
                payload[field] = value
                continue
            try:
                payload[field] = coerce(value)
            except CoercionError as exc:
                raise CoercionError(f"column {column!r} -> field {field!r}: {exc}") from None
        encoded = _dumps({self.id_key: record_id, "values": payload})
        if self.fingerprint:
            return Record(record_id, row_hash, encoded, new=new, fields=fingerprints(payload.values()))
        return Record(record_id, row_hash, encoded, new=new)

    def coerce(self, field: str, value: Any) -> Any:
        """One field's value as a record carries it (pendo-sync verify compares it with Pendo's)."""
        _, _, coerce, already = next(f for f in self._fields if f[1] == field)
        return value if value.__class__ is already else coerce(value)

    def clear(self, record_id: str) -> Record:
        """The record that clears every mapped field of a deleted id (on_delete: clear)."""
        values = cleared_values([m.field for m in self.spec.fields], self.wire)
        return Record(record_id, "", _dumps({self.id_key: record_id, "values": values}), op="clear")


class Batcher:
    """Groups records into batches bounded by a record count (which may change between batches) and bytes."""

    def __init__(self, max_records: Callable[[], int], max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._records: list[Record] = []
        self._bytes = 1

    def add(self, record: Record) -> Batch | None:
        """Add a record; return a full batch when this record would overflow the current one."""
        size = len(record.encoded) + 1
        full = None
        if self._records and (
            self._bytes + size > self._max_bytes or len(self._records) >= self._max_records()
        ):
            full = self.flush()
        self._records.append(record)
        self._bytes += size
        return full

    def flush(self) -> Batch | None:
        if not self._records:
            return None
        batch = Batch(self._records)
        self._records, self._bytes = [], 1
        return batch
