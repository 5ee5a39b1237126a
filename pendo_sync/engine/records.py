"""Turning change-set rows into Pendo records (the JSON text of each), added to batches as they come.

Where the database wrote a row's values object (warehouse/record_sql.py), its record is that text with the
id in front; values it did not write are coerced here, by the one coercion module (pendo/types.py), and
encoded with orjson. A row whose values do not fit is rejected as invalid, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

from pendo_sync.config import SyncSpec
from pendo_sync.engine.batches import Batch, Batcher
from pendo_sync.engine.changeset import ROW_HASH, ROW_ID, ROW_JSON, ROW_PREV, ROW_VALUES, ChangedRow
from pendo_sync.outcome import MAX_ID_LENGTH, Reject, reject_id
from pendo_sync.pendo.types import CoercionError, Wire, cleared_values, coercer_for, passes_as_is, show_value

# What a JSON string cannot hold as it is.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Coercion has already refused NaN and infinities (orjson would write them as
    null, which clears a field) and left only JSON's own types; what orjson still cannot encode (an
    integer past 64 bits, text that is not valid Unicode) rejects the row."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise CoercionError(f"cannot be sent as JSON: {exc}") from None


def _plain_ids(ids: Sequence[Any]) -> bool:
    """Every id is text of 1 to MAX_ID_LENGTH characters that JSON holds as it is (checked for a chunk at
    once: a record is then the id between quotes, with nothing to escape or refuse)."""
    try:
        joined = "".join(ids)
    except TypeError:  # a NULL id
        return False
    return (
        bool(ids)
        and min(map(len, ids)) > 0
        and max(map(len, ids)) <= MAX_ID_LENGTH
        and not (_NEEDS_ESCAPE.search(joined))
    )


MAX_PLANS = 4096  # plans kept by an encoder: memory bounded whatever the table (invariant 3)


class RecordEncoder:
    """A row's record as the JSON text Pendo gets, or CoercionError naming the column, field and value.

    The hot path: a row whose values object the database wrote costs a format. Other rows are coerced
    value by value; rows alike in the classes of their values share a plan, the positions whose values
    need coercing (a value whose class is already its Pendo type's, pendo/types.py `passes_as_is`, goes as
    it is)."""

    def __init__(
        self, spec: SyncSpec, fingerprints: bool = False, written: Sequence[bool] | None = None
    ) -> None:
        self.spec = spec
        self.fingerprints = fingerprints  # rows carry the fields' fingerprints last (the change log)
        self._end = ROW_VALUES + len(spec.fields)
        self.wire = Wire(spec.time_format, spec.clear_with)
        self._key = orjson.dumps(spec.id_key).decode()
        self._columns = [m.column for m in spec.fields]
        self._names = [m.field for m in spec.fields]
        self._coercers = [coercer_for(m.type, m.element_type, self.wire) for m in spec.fields]
        self._as_is = [passes_as_is(m.type, self.wire) for m in spec.fields]
        self._plans: dict[tuple[type, ...], tuple[int, ...]] = {}
        written = tuple(written) if written is not None else (False,) * len(spec.fields)
        # The fields the database does not write: coerced here in every row.
        self._unwritten = [i for i, done in enumerate(written) if not done]

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
            coerced[i] = self._coerce(i, coerced[i])
        return coerced

    def _coerce(self, i: int, value: Any) -> Any:
        try:
            return self._coercers[i](value)
        except CoercionError as exc:
            raise CoercionError(f"column {self._columns[i]!r} -> field {self._names[i]!r}: {exc}") from None

    def encode(self, record_id: str | None, values: tuple[Any, ...]) -> bytes:
        """The record of a row's values as they are (every one coerced here), as JSON."""
        return self._text(self._id_json(record_id), None, values).encode()

    def _id_json(self, record_id: str | None) -> str:
        if not record_id or len(record_id) > MAX_ID_LENGTH:
            raise CoercionError(self._bad_id(record_id))
        return _dumps(record_id).decode()

    def _text(self, id_json: str, written: str | None, raw: Sequence[Any]) -> str:
        """A record from the values object the database wrote (None: it wrote none for the row) and the
        row's other values, as they are."""
        if written is None:
            payload = dict(zip(self._names, self.values(tuple(raw)), strict=True))
        else:
            payload = {self._names[i]: self._coerce(i, raw[i]) for i in self._unwritten}
        try:
            coerced = _dumps(payload).decode()
        except CoercionError as exc:
            raise CoercionError(self._unencodable(payload, exc)) from None
        if written is not None:  # {"a": 1} and {"b": 2}: {"a": 1,"b": 2}
            coerced = written[:-1] + "," + coerced[1:] if payload else written
        return f'{{{self._key}:{id_json},"values":{coerced}}}'

    def _unencodable(self, payload: dict[str, Any], exc: CoercionError) -> str:
        """The reason a record cannot be JSON, naming the first column whose value is why."""
        for name, value in payload.items():
            try:
                _dumps(value)
            except CoercionError as inner:
                column = self._columns[self._names.index(name)]
                return f"column {column!r} -> field {name!r}: {show_value(value)} {inner}"
        return str(exc)

    def into_batches(self, rows: Sequence[ChangedRow], batcher: Batcher) -> tuple[list[Batch], list[Reject]]:
        """Encode a chunk of changed rows into the batcher; the batches filled, and the rows rejected as
        invalid. Rows whose values object the database wrote are formatted by one comprehension; the
        others are coerced row by row."""
        key, end = self._key, self._end
        plain = _plain_ids([row[ROW_ID] for row in rows])
        if plain and not self._unwritten:
            ready = [row for row in rows if row[ROW_JSON] is not None]
            texts = [f'{{{key}:"{row[ROW_ID]}","values":{row[ROW_JSON]}}}' for row in ready]
            rest: Sequence[ChangedRow] = (
                [row for row in rows if row[ROW_JSON] is None] if len(ready) < len(rows) else ()
            )
        else:
            ready, texts, rest = [], [], rows
        invalid: list[Reject] = []
        for row in rest:
            record_id = row[ROW_ID]
            try:
                id_json = f'"{record_id}"' if plain else self._id_json(record_id)
                texts.append(self._text(id_json, row[ROW_JSON], row[ROW_VALUES:end]))
            except CoercionError as exc:
                invalid.append(Reject(reject_id(record_id), row[ROW_HASH], "invalid", str(exc)))
                continue
            ready.append(row)
        fingerprints = list(map(itemgetter(end), ready)) if self.fingerprints else [""] * len(ready)
        full = batcher.add(
            list(map(itemgetter(ROW_ID), ready)),
            list(map(itemgetter(ROW_HASH), ready)),
            [row[ROW_PREV] is None for row in ready],
            fingerprints,
            texts,
        )
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

    def clears(self, record_ids: Sequence[str], batcher: Batcher) -> list[Batch]:
        """The records that clear every mapped field of deleted ids (on_delete: clear); the batches filled."""
        values = _dumps(cleared_values(self._names, self.wire)).decode()
        texts = [
            f'{{{self._key}:{_dumps(record_id).decode()},"values":{values}}}' for record_id in record_ids
        ]
        n = len(texts)
        return batcher.add(list(record_ids), [""] * n, [False] * n, [""] * n, texts, op="clear")
