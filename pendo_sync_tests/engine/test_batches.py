"""The Batcher cuts records given a chunk at a time into batches within the record count (which the sizer
may change between batches) and the bytes of the body (non-ASCII text counted in bytes), one operation a
batch, each record once and in order, with `bounds` that halve a batch exactly."""

from __future__ import annotations

import json
import random

from pendo_sync.engine.batches import Batch, Batcher


def records(rng: random.Random, n: int, start: int) -> list[str]:
    texts = []
    for i in range(start, start + n):
        value = rng.choice(["x" * rng.randint(0, 120), "é€😀" * rng.randint(0, 30), "plain"])
        texts.append(json.dumps({"visitorId": f"v{i}", "values": {"s": value}}, ensure_ascii=False))
    return texts


def test_batches_hold_every_record_once_in_order_within_both_limits():
    rng = random.Random(5)
    limits = iter(rng.randint(1, 40) for _ in range(10_000))
    counts: list[int] = []

    def max_records() -> int:
        counts.append(next(limits))
        return counts[-1]

    batcher = Batcher(max_records, max_bytes=2_000)
    batches: list[Batch] = []
    sent: list[str] = []
    start = 0
    for chunk in range(30):
        n = rng.randint(0, 90)
        texts = records(rng, n, start)
        ids = [f"v{i}" for i in range(start, start + n)]
        op = "clear" if chunk in (10, 11, 20) else "upsert"
        batches += batcher.add(ids, ids, [True] * n, [""] * n, texts, op=op)
        sent += texts
        start += n
    last = batcher.flush()
    batches += [last] if last else []

    received = [item for b in batches for item in json.loads(b.body)]
    assert received == [json.loads(t) for t in sent]  # every record once, in order
    assert [i for b in batches for i in b.ids] == [f"v{i}" for i in range(start)]
    for batch, limit in zip(batches, counts, strict=False):
        assert len(batch) <= limit
        assert batch.size_bytes <= 2_000 or len(batch) == 1  # a record too large alone goes alone
        assert batch.bounds[-1] == len(batch.body)
        assert len({batch.op}) == 1
        if len(batch) > 1:
            first, second = batch.halves()
            assert json.loads(first.body) + json.loads(second.body) == json.loads(batch.body)
    assert {b.op for b in batches} == {"upsert", "clear"}
