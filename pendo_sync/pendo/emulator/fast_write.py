"""A bulk write decoded and checked in one pass where every row of it fits: msgspec decodes the body into
types built from the fields of the kind and group, so a value of the wrong type fails the decoding itself.
Any body that does not decode so (a value that does not fit, an unmapped field, malformed JSON, or what this
pass does not judge: ISO text of a time, an untyped field) goes through contract.py's checks, which answer
it exactly: this pass only takes writes those checks would take whole, and gives what they would give.

A write whose every row carries every field of the group (what a sync sends, where the group has the
fields it maps) keeps each row's values as their JSON text (PendoState.apply_whole); other writes come as
parsed values. It is what lets the emulator serve several times what the sync sends: parsing with orjson
and checking row by row cost 4 us a record, and the dozen objects a record kept made every later write
slower (the allocator's and the collector's work grew with the records held).
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from pendo_sync.pendo.emulator.contract import CheckedWrite

# orjson reads integers past 64 bits as floats, which the checks then refuse: such bodies go to them.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Clear = Literal[""] | None  # both forms clear a field (clear_with: null or empty_string)
_SCALARS: dict[str, Any] = {
    "string": str | None,
    "integer": _Int | _Clear,
    "float": _Int | float | _Clear,
    "boolean": bool | _Clear,
    "time": _Int | _Clear,  # ISO 8601 text goes to the checks (fromisoformat's rules are theirs)
}
_ELEMENTS: dict[str, Any] = {
    "string": str | None,
    "integer": _Int | None,
    "float": _Int | float | None,
    "boolean": bool | None,
    "time": _Int | None,
}


def _value_type(pendo_type: str, element_type: str) -> Any:
    if pendo_type == "list":
        element = _ELEMENTS.get(element_type)
        return None if element is None else list[element] | _Clear  # type: ignore[valid-type]
    return _SCALARS.get(pendo_type)


_NOT_MATCHED = re.compile(r'["\\\x00-\x1f]')


class WriteDecoder:
    """Decodes the writes of one kind and group while its fields stay as they were when it was built."""

    def __init__(self, id_key: str, fields: dict[str, dict[str, Any]]) -> None:
        self.shape = _shape(fields)
        types = {name: _value_type(f["Type"], f["ElementType"]) for name, f in fields.items()}
        self.usable = bool(types) and all(t is not None for t in types.values())
        # msgspec matches no key holding a quote, a backslash or a control character: the checks judge those
        self.usable = self.usable and not any(_NOT_MATCHED.search(name) for name in types)
        if not self.usable:  # an untyped field (or a list of one): the checks judge its values
            return
        # Attributes f0, f1, ... named as the fields on the wire: a Pendo field name need not be a Python one.
        rename = {f"f{i}": name for i, name in enumerate(types)}
        attributes = list(zip(rename, types.values(), strict=True))
        whole = msgspec.defstruct("Whole", attributes, forbid_unknown_fields=True, rename=rename)
        some = msgspec.defstruct(
            "Some",
            [(attribute, t | msgspec.UnsetType, msgspec.UNSET) for attribute, t in attributes],
            forbid_unknown_fields=True,
            rename=rename,
        )
        self._whole = _rows_of(id_key, whole)
        self._some = _rows_of(id_key, some)
        self._raw = _rows_of(id_key, msgspec.Raw)
        self._id = attrgetter(id_key)
        self._strings = {name for name, f in fields.items() if f["Type"] == "string"}

    def decode(self, body: bytes) -> CheckedWrite | None:
        """The write, every row of it valid; None where the checks must judge it."""
        if not self.usable:
            return None
        try:
            self._whole.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._partial(body)
        rows = self._raw.decode(body)
        return CheckedWrite(ids=list(map(self._id, rows)), objects=[bytes(row.values) for row in rows])

    def _partial(self, body: bytes) -> CheckedWrite | None:
        """Rows without some fields of the group: parsed values, as the checks would give them."""
        try:
            rows = self._some.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        checked = CheckedWrite(ids=list(map(self._id, rows)))
        strings = self._strings
        for record_id, row in zip(checked.ids, rows, strict=True):
            values = msgspec.to_builtins(row.values)
            clears = any(v is None or (v == "" and n not in strings) for n, v in values.items())
            checked.valid.append((record_id, values, clears))
        return checked


def _rows_of(id_key: str, values: Any) -> msgspec.json.Decoder[Any]:
    """A decoder of a write's rows: {id_key: text, "values": values}."""
    record = msgspec.defstruct("Record", [(id_key, str), ("values", values)])
    return msgspec.json.Decoder(list[record])  # type: ignore[valid-type]


def _shape(fields: dict[str, dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    return tuple((name, f["Type"], f["ElementType"]) for name, f in fields.items())


class WriteDecoders:
    """A decoder per kind and group, rebuilt when their fields change."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[str, str], WriteDecoder] = {}

    def decode(
        self, kind: str, group: str, id_key: str, fields: dict[str, dict[str, Any]], body: bytes
    ) -> CheckedWrite | None:
        live = {name: f for name, f in fields.items() if not f["isDeleted"]}
        decoder = self._decoders.get((kind, group))
        if decoder is None or decoder.shape != _shape(live):
            decoder = self._decoders[(kind, group)] = WriteDecoder(id_key, live)
        return decoder.decode(body)
