"""The record encoder's plans (one per pattern of value classes) stay bounded whatever the table."""

from __future__ import annotations

import itertools

from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.engine.records import MAX_PLANS, RecordEncoder

COLUMNS = [f"c{i}" for i in range(13)]  # 2^13 patterns of NULLs: more than the plans an encoder keeps
SPEC = SyncSpec(
    name="wide",
    kind="visitor",
    group="custom",
    id_column="visitor_id",
    table="wide",
    fields=tuple(FieldMapping(c, c, "integer") for c in COLUMNS),
)


def test_plans_of_every_null_pattern_stay_bounded_and_coerce_alike():
    encoder = RecordEncoder(SPEC)
    for pattern in itertools.product((None, "7"), repeat=len(COLUMNS)):
        assert list(encoder.values(pattern)) == [None if v is None else 7 for v in pattern]
    assert len(encoder._plans) <= MAX_PLANS


def test_a_value_json_cannot_carry_is_rejected_naming_its_column():
    """The reason said only 'cannot be sent as JSON: Integer exceeds 64-bit range'."""
    import pytest

    from pendo_sync.pendo.types import CoercionError

    untyped = SyncSpec(
        name="u", kind="visitor", group="custom", id_column="id", table="t",
        fields=(FieldMapping("plain", "plain", "string"), FieldMapping("big", "big", "")),
    )  # fmt: skip
    with pytest.raises(CoercionError) as raised:
        RecordEncoder(untyped).encode("v1", ("ok", 2**70))
    assert str(raised.value) == (
        "column 'big' -> field 'big': 1180591620717411303424 cannot be sent as JSON: Integer exceeds 64-bit range"
    )
