"""Pendo's contract, as the emulator keeps it (../shared/PENDO_API.md): fields by kind and group with their
types, records by id, and what a bulk write answers. No I/O here: the server (server.py) parses requests
and answers them, limits.py decides what is admitted.

What it enforces: fields must exist in the kind and group (400 naming the field); values must match the
field's type (a row-level error; `null` and `""` clear, a time is epoch milliseconds or ISO 8601 text);
ids must exist unless `create=true` (`missing`).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pendo_sync.errors import UsageError
from pendo_sync.pendo.emulator.stats import CallStats
from pendo_sync.pendo.types import PENDO_TYPES

KINDS = ("visitor", "account")
GROUPS = ("custom", "agent")
ID_KEYS = {"visitor": "visitorId", "account": "accountId"}

# Exact classes a JSON value of each type decodes to (json.loads gives bool, int, float, str, list).
_FITS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "float": (int, float),
    "time": (int,),
}
# Classes a list element fits as-is, by element type (null elements are kept as they are).
_ELEMENT_FITS: dict[str, tuple[type, ...]] = {t: (*fits, type(None)) for t, fits in _FITS.items()}
_WANTED = {
    "time": "a date-time (epoch milliseconds, or ISO 8601 text)",
    "integer": "an integer",
    "float": "a number",
}


def type_error(pendo_type: str, element_type: str, value: Any) -> str | None:
    """Why a value does not fit a field type, or None when it fits (null and "" always fit: they clear)."""
    if value is None or value == "" or pendo_type == "":
        return None
    fits = _FITS.get(pendo_type)
    if fits is not None:
        # Class, not isinstance: a JSON true is a bool, which must not pass as an integer.
        if value.__class__ in fits or (pendo_type == "time" and _iso_time(value)):
            return None
        return f"value {json.dumps(value)} is not {_WANTED.get(pendo_type, f'a {pendo_type}')}"
    if pendo_type == "list":
        if not isinstance(value, list):
            return f"{json.dumps(value)} is not a list"
        for item in value:
            problem = type_error(element_type or "", "", item)
            if problem:
                return f"list element {problem}"
    return None


def _elements_fit(element_type: str, value: list[Any]) -> bool:
    fits = _ELEMENT_FITS.get(element_type)
    return fits is None or all(item.__class__ in fits for item in value)


@dataclass
class CheckedWrite:
    """A write that passed the checks of the whole call: each row's id (in order), the rows whose values
    fit (id, values, whether any value clears its field) and the row-level errors of the others."""

    ids: list[str]
    valid: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    # Instead of `valid`: each row's values object as JSON text, where every row carries every field of
    # the group (fast_write.py); applied by apply_whole.
    objects: list[bytes] | None = None


def _iso_time(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 10:
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def field_attributes(name: str, pendo_type: str, element_type: str = "") -> dict[str, Any]:
    """A field as Pendo's schema call describes it."""
    return {
        "Type": pendo_type,
        "DisplayName": name.replace("_", " ").title(),
        "ElementType": element_type or "",
        "ElementFormat": "",
        "Dirty": False,
        "isHidden": False,
        "isDeleted": False,
        "isCalculated": False,
        "isPerApp": False,
    }


class PendoState(CallStats):
    """Fields and records, and the rules of the write call; thread-safe (the server's loop writes, tests
    and the admin endpoints read)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fields: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            k: {g: {} for g in GROUPS} for k in KINDS
        }
        # kind -> id -> group -> values: a dict, or the JSON text of a whole write (apply_whole)
        self.store: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self._sorted: dict[str, list[str] | None] = dict.fromkeys(KINDS)  # ids in order, for paging
        self.reset_stats()

    # -- set-up -----------------------------------------------------------------------------------
    def add_field(self, kind: str, group: str, name: str, pendo_type: str, element_type: str = "") -> None:
        with self.lock:
            self.fields[kind][group][name] = field_attributes(name, pendo_type, element_type)

    def remove_field(self, kind: str, group: str, name: str) -> None:
        with self.lock:
            self.fields[kind][group].pop(name, None)

    def add_ids(self, kind: str, ids: list[str] | tuple[str, ...]) -> None:
        with self.lock:
            records = self.store[kind]
            for record_id in ids:
                records.setdefault(str(record_id), {"custom": {}, "agent": {}})
            self._sorted[kind] = None

    def remove_ids(self, kind: str, ids: list[str] | tuple[str, ...]) -> None:
        """Forget records, as a deletion in Pendo would (verify's tests of records Pendo lost)."""
        with self.lock:
            for record_id in ids:
                self.store[kind].pop(str(record_id), None)
            self._sorted[kind] = None

    def alter(self, kind: str, record_id: str, values: dict[str, Any], group: str = "custom") -> None:
        """Change stored values as Pendo's UI or another integration would (drift, for verify's tests)."""
        with self.lock:
            target = self._editable(kind, self.store[kind][record_id], group)
            for name, value in values.items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = value

    def seed(self, seed: dict[str, Any]) -> None:
        """{"fields": {kind: {group: {name: type or {"Type", "ElementType"}}}}, "ids": {kind: [id, ...]}}."""
        for kind, groups in seed.get("fields", {}).items():
            for group, fields in groups.items():
                for name, spec in fields.items():
                    if isinstance(spec, dict):
                        self.add_field(kind, group, name, spec.get("Type", ""), spec.get("ElementType", ""))
                    else:
                        self.add_field(kind, group, name, str(spec))
        for kind, ids in seed.get("ids", {}).items():
            self.add_ids(kind, ids)

    def seed_from_file(self, path: str | Path) -> None:
        """A seed file (see seed); UsageError names what is wrong with it."""
        place = f"--seed {path}"
        try:
            seed = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"{place}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{place}: cannot be read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{place}: not JSON ({exc})") from None
        if not isinstance(seed, dict) or not all(
            isinstance(seed.get(k, {}), dict) for k in ("fields", "ids")
        ):
            raise UsageError(f"{place}: must be a JSON object with 'fields' and 'ids'")
        for kind, groups in seed.get("fields", {}).items():
            for group, fields in (groups or {}).items():
                for name, spec in (fields or {}).items():
                    pendo_type = spec.get("Type", "") if isinstance(spec, dict) else str(spec)
                    if pendo_type not in PENDO_TYPES:
                        raise UsageError(
                            f"{place}: {kind} {group} field {name!r} has type {pendo_type!r}; use one of "
                            f"{', '.join(PENDO_TYPES)}"
                        )
        self.seed(seed)

    # -- inspection -------------------------------------------------------------------------------
    def records(self, kind: str, group: str = "custom") -> dict[str, dict[str, Any]]:
        """id -> that group's field values, for every record of a kind."""
        with self.lock:
            return {
                rid: self._shown(kind, g, groups[g])
                for rid, groups in self.store[kind].items()
                for g in [group]
            }

    def values_of(self, kind: str, record_id: str, group: str = "custom") -> dict[str, Any] | None:
        with self.lock:
            record = self.store[kind].get(record_id)
            return self._shown(kind, group, record[group]) if record is not None else None

    def snapshot(self) -> dict[str, Any]:
        """Every record and its values, as JSON-able data (fields are seeded from the config each time)."""
        with self.lock:
            shown = {
                kind: {
                    rid: {g: self._shown(kind, g, v) for g, v in groups.items()}
                    for rid, groups in records.items()
                }
                for kind, records in self.store.items()
            }
            return {"records": json.loads(json.dumps(shown))}

    def restore(self, snapshot: dict[str, Any]) -> None:
        with self.lock:
            for kind in KINDS:
                for rid, groups in snapshot.get("records", {}).get(kind, {}).items():
                    self.store[kind][rid] = {g: dict(groups.get(g, {})) for g in GROUPS}
                self._sorted[kind] = None

    # -- the write call ---------------------------------------------------------------------------
    def check_write(self, kind: str, group: str, items: Any) -> Answer | CheckedWrite:
        """One pass over a write: the 400 a malformed or unmapped body gets (nothing of it is applied), or
        the rows whose values fit and the row-level errors of the rest. Runs outside the lock, so other
        calls proceed meanwhile. Rows alike in field names and value classes share one plan (which values
        need a closer look: lists, text in a non-string field, nulls), so a row costs a lookup."""
        id_key = ID_KEYS[kind]
        malformed = Answer(
            400, {"error": f"body must be a JSON array of {{{id_key!r}: string, 'values': object}}"}
        )
        if items.__class__ is not list:
            return malformed
        fields = {name: f for name, f in self.fields[kind][group].items() if not f["isDeleted"]}
        plans: dict[tuple[tuple[str, ...], tuple[type, ...]], tuple[str, ...]] = {}
        checked = CheckedWrite(ids=[])
        for item in items:
            if item.__class__ is not dict:
                return malformed
            rid, values = item.get(id_key), item.get("values")
            if rid.__class__ is not str or values.__class__ is not dict:
                return malformed
            checked.ids.append(rid)
            shape = (tuple(values), tuple(map(type, values.values())))
            look = plans.get(shape)
            if look is None:
                unmapped = [name for name in shape[0] if name not in fields]
                if unmapped:
                    return Answer(400, {"error": f"field {unmapped[0]!r} is not mapped for {kind} {group}"})
                look = plans[shape] = tuple(
                    name
                    for name, cls in zip(*shape, strict=True)
                    if cls not in _FITS.get(fields[name]["Type"], ()) or cls is list
                )
            problem: tuple[str, str] | None = None
            clears = False
            for name in look:
                value, pendo_type = values[name], fields[name]["Type"]
                element_type = fields[name]["ElementType"]
                if value.__class__ is list and pendo_type == "list" and _elements_fit(element_type, value):
                    continue
                if value is None or (value == "" and pendo_type != "string"):
                    clears = True  # both forms clear (clear_with: null or empty_string)
                elif problem is None:
                    error = type_error(pendo_type, element_type, value)
                    problem = None if error is None else (name, error)
            if problem is not None:
                checked.errors.append({"id": rid, "field": problem[0], "error": problem[1]})
            else:
                checked.valid.append((rid, values, clears))
        return checked

    def apply_write(self, kind: str, group: str, checked: CheckedWrite, create: bool) -> dict[str, Any]:
        """Apply a checked write; the 200 answer: updated, missing ids, row-level type errors."""
        errors = checked.errors
        missing: list[str] = []
        updated = 0
        with self.lock:
            strings = {n for n, f in self.fields[kind][group].items() if f["Type"] == "string"}
            self.received_ids.extend(checked.ids)
            for rid, values, clears in checked.valid:
                record = self._record(kind, rid, create)
                if record is None:
                    missing.append(rid)
                    continue
                target = self._editable(kind, record, group)
                target.update(values)
                if clears:
                    for name, value in values.items():
                        if value is None or (value == "" and name not in strings):
                            del target[name]
                updated += 1
        return self._answered(updated, missing, errors)

    def apply_whole(
        self, kind: str, group: str, ids: list[str], objects: list[bytes], create: bool
    ) -> dict[str, Any]:
        """Apply a write whose every row carries every field of the group, each row's values object kept
        as its JSON text (read back through _shown): a write costs a lookup and a store per row, and leaves
        one object per record where parsed values left a dozen for the collector and the allocator."""
        missing: list[str] = []
        with self.lock:
            self.received_ids.extend(ids)
            for rid, values in zip(ids, objects, strict=True):
                record = self._record(kind, rid, create)
                if record is None:
                    missing.append(rid)
                    continue
                record[group] = values
        return self._answered(len(ids) - len(missing), missing, [])

    def _record(self, kind: str, rid: str, create: bool) -> dict[str, Any] | None:
        """The stored record of an id (under the lock); made if `create`, else None when Pendo has none."""
        record = self.store[kind].get(rid)
        if record is None and create:
            record = self.store[kind][rid] = {"custom": {}, "agent": {}}
            self._sorted[kind] = None
        return record

    def _answered(self, updated: int, missing: list[str], errors: list[dict[str, str]]) -> dict[str, Any]:
        with self.lock:
            self._stats["records_updated"] += updated
            self._stats["missing"] += len(missing)
            self._stats["errors"] += len(errors)
            self._statuses[200] += 1
        failed = len(missing) + len(errors)
        return {
            "total": updated + failed,
            "updated": updated,
            "failed": failed,
            "missing": missing,
            "errors": errors,
        }

    # -- stored values: parsed (a dict, clears applied) or a whole write's JSON text (clears hidden) --------
    def _shown(self, kind: str, group: str, stored: dict[str, Any] | bytes) -> dict[str, Any]:
        """A copy of the values as Pendo shows them."""
        if stored.__class__ is not bytes:
            return dict(stored)  # type: ignore[arg-type]
        strings = {n for n, f in self.fields[kind][group].items() if f["Type"] == "string"}
        return {n: v for n, v in orjson.loads(stored).items() if v is not None and (v != "" or n in strings)}

    def _editable(self, kind: str, record: dict[str, Any], group: str) -> dict[str, Any]:
        """The record's values of the group as a dict that a write may change."""
        if record[group].__class__ is bytes:
            record[group] = self._shown(kind, group, record[group])
        return record[group]  # type: ignore[no-any-return]

    # -- reads ------------------------------------------------------------------------------------
    def schema(self, kind: str) -> Answer:
        if kind not in KINDS:
            return Answer(404, {"error": f"unknown kind {kind!r}"})
        with self.lock:
            groups = {g: {n: dict(a) for n, a in fs.items()} for g, fs in self.fields[kind].items()}
        return Answer(200, {"auto": {}, **groups})

    def record(self, kind: str, record_id: str) -> Answer:
        with self.lock:
            record = self.store[kind].get(record_id)
            if record is None:
                return Answer(404, {"error": f"{kind} {record_id!r} not found"})
            metadata = {"auto": {"id": record_id}, **{g: self._shown(kind, g, v) for g, v in record.items()}}
        return Answer(200, {ID_KEYS[kind]: record_id, "metadata": metadata})

    def ids_after(self, kind: str, after: str | None) -> tuple[list[str], int]:
        """The ids of a kind in order, and where those past `after` start (aggregation paging)."""
        with self.lock:
            ordered = self._sorted[kind]
            if ordered is None:
                ordered = self._sorted[kind] = sorted(self.store[kind])
        return ordered, 0 if after is None else bisect_right(ordered, after)

    def row(self, kind: str, record_id: str) -> dict[str, Any] | None:
        """One record as the aggregation pipeline sees it: its id and its metadata."""
        with self.lock:
            record = self.store[kind].get(record_id)
            if record is None:
                return None
            metadata = {g: self._shown(kind, g, v) for g, v in record.items()}
            return {ID_KEYS[kind]: record_id, "metadata": metadata}
