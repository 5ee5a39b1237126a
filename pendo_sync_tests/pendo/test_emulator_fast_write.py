"""The emulator's one-pass decoding of a bulk write (fast_write.py) answers exactly as its row-by-row checks
(contract.py) do, whatever the fields' names: two emulators, one of them with the fast pass switched off, get the same thousand bodies
(rows that fit, values of every wrong kind, unmapped fields, malformed JSON, integers past 64 bits, ISO
text of times) and must answer alike and hold the same records."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from pendo_sync.pendo.emulator import Emulator

FIELDS = {  # Pendo's field names are not Python's: a hyphen, a keyword, a space, a colon, a percent sign
    "my-plan": ("string", ""),
    "class": ("integer", ""),
    "naïve name": ("float", ""),
    "co:loné": ("boolean", ""),
    "per%cent": ("time", ""),
    "ls": ("list", "string"),
    "li": ("list", "integer"),
    "lf": ("list", "float"),
    "lb": ("list", "boolean"),
    "lt": ("list", "time"),
}
ODD: list[Any] = [
    None, "", "text", "2026-11-01T10:00:00Z", "2026-11-01", "not a time", 0, 7, -1, 2**63 - 1, 2**63,
    2**64, -(2**63), -(2**63) - 1, 10**30, 1.5, -0.0, 1e308, True, False, [], ["a", None], [1, 2], [1.5],
    [True], [None], ["2026-11-01T10:00:00Z"], [[1]], {"a": 1}, "é€😀", "\u2028",
]  # fmt: skip


def emulator(fast: bool) -> Emulator:
    pendo = Emulator()
    for name, (kind, element) in FIELDS.items():
        pendo.add_field("visitor", "custom", name, kind, element)
    pendo.add_ids("visitor", [f"v{i}" for i in range(8)])
    if not fast:
        pendo._decoders.decode = lambda *_: None  # type: ignore[method-assign]
    return pendo


def body(rng: random.Random) -> bytes:
    """A write of rows that fit, more than half with one thing odd in it: a value of another kind (one of ODD, in one
    field of one row), an unmapped field, a row without values or an id that is not text; now and then
    text that is not JSON at all. Half the writes carry every field in every row (kept as JSON text)."""
    roll = rng.random()
    if roll < 0.02:
        return b'[{"visitorId": "v1", "values": {"my-plan": "x"}'  # cut short
    if roll < 0.04:
        return b'{"visitorId": "v1"}'  # not an array
    rows: list[dict[str, Any]] = []
    whole = rng.random() < 0.5  # every row with every field, as a sync of all of them sends
    for _ in range(rng.randint(1, 4)):
        names = sorted(FIELDS) if whole else rng.sample(sorted(FIELDS), rng.randint(1, len(FIELDS)))
        values = {name: fitting(rng, *FIELDS[name]) for name in names}
        rows.append({"visitorId": rng.choice([f"v{i}" for i in range(10)]), "values": values})
    row = rng.choice(rows)
    odd = rng.random()
    if odd < 0.5:
        row["values"][rng.choice(sorted(row["values"]))] = rng.choice(ODD)
    elif odd < 0.55:
        row["values"]["unmapped"] = 1
    elif odd < 0.58:
        row["visitorId"] = 12
    elif odd < 0.6:
        del row["values"]
    return json.dumps(rows, ensure_ascii=rng.random() < 0.5).encode()


ELEMENTS = {
    "string": ["a", "é", None],
    "integer": [0, 5, None],
    "float": [0.5, 3, None],
    "boolean": [True, False, None],
    "time": [1_700_000_000_000, None],
}


def fitting(rng: random.Random, kind: str, element: str) -> Any:
    if kind == "list":
        return [rng.choice(ELEMENTS[element]) for _ in range(rng.randint(0, 3))]
    return rng.choice(
        {
            "string": ["a", "", "é", None],
            "integer": [0, 5, -7, None, ""],
            "float": [0.5, 3, -2.25, None, ""],
            "boolean": [True, False, None, ""],
            "time": [1_700_000_000_000, "2026-11-01T10:00:00+00:00", None, ""],
        }[kind]
    )


async def answer(pendo: Emulator, payload: bytes) -> tuple[int, Any]:
    got = await pendo.handle(
        "POST", "/api/v1/metadata/visitor/custom/value", {"x-pendo-integration-key": "emulator-key"}, payload
    )
    return got.status, got.body


@pytest.mark.parametrize("seed", range(4))
def test_the_one_pass_answers_as_the_checks_do(seed: int):
    rng = random.Random(seed)
    fast, checked = emulator(True), emulator(False)
    taken: list[bool] = []
    decode = fast._decoders.decode

    def counted(*args: Any) -> Any:
        result = decode(*args)
        taken.append(result is not None)
        return result

    fast._decoders.decode = counted  # type: ignore[method-assign]
    for _ in range(400):
        payload = body(rng)
        got, want = asyncio.run(answer(fast, payload)), asyncio.run(answer(checked, payload))
        assert got == want, payload
        assert fast.records("visitor") == checked.records("visitor"), payload
    assert fast.snapshot() == checked.snapshot()
    for record_id in ("v1", "v9"):
        assert fast.record("visitor", record_id) == checked.record("visitor", record_id)
    # The fast pass took many writes whole, and left many to the checks: both sides were tried.
    assert sum(taken) > 40 and taken.count(False) > 40


def test_a_field_changed_in_pendo_rebuilds_the_decoder():
    pendo = emulator(True)
    payload = b'[{"visitorId": "v1", "values": {"my-plan": "x", "extra": 1}}]'
    assert asyncio.run(answer(pendo, payload))[0] == 400  # unmapped
    pendo.add_field("visitor", "custom", "extra", "integer")
    assert asyncio.run(answer(pendo, payload)) == (
        200,
        {"total": 1, "updated": 1, "failed": 0, "missing": [], "errors": []},
    )
    assert pendo.values_of("visitor", "v1") == {"my-plan": "x", "extra": 1}


def test_a_field_name_holding_a_quote_is_answered_by_the_checks():
    """msgspec matches no key holding a quote (it refuses to build such a decoder): that group's writes go
    to the checks, and are answered as Pendo would, not with a 500."""
    pendo = Emulator()
    pendo.add_field("visitor", "custom", 'na"me', "string")
    pendo.add_ids("visitor", ["v1"])
    payload = json.dumps([{"visitorId": "v1", "values": {'na"me': "x"}}]).encode()
    assert asyncio.run(answer(pendo, payload)) == (
        200,
        {"total": 1, "updated": 1, "failed": 0, "missing": [], "errors": []},
    )
    assert pendo.values_of("visitor", "v1") == {'na"me': "x"}
