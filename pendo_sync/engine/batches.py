"""A batch of records, column by column (ids, hashes, whether the ledger lacked each id, fingerprints for the
change log) with the JSON array Pendo gets, built once: how records are grouped into batches bounded by
count and bytes (Batcher), how a batch halves on 408 without encoding anything again, and what became of
each of its records (BatchResult)."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from pendo_sync.outcome import Reject


class Batch:
    """The records of one call, column by column (ids, hashes, whether the ledger lacked each id, their
    fingerprints for the change log), and the JSON array Pendo gets, built once. `bounds` says where each
    record starts in the body (the last: the body's length), so a batch halves on 408 without encoding
    anything again. `op` is what every record asks of Pendo: upsert, or clear (deleted ids)."""

    __slots__ = ("ids", "hashes", "new", "fingerprints", "body", "bounds", "op")

    def __init__(
        self,
        ids: list[str],
        hashes: list[str],
        new: list[bool],
        fingerprints: list[str],
        body: bytes,
        bounds: array[int],
        op: str = "upsert",
    ) -> None:
        self.ids, self.hashes, self.new, self.fingerprints = ids, hashes, new, fingerprints
        self.body, self.bounds, self.op = body, bounds, op

    @classmethod
    def of(cls, ids: list[str], encoded: list[bytes], op: str = "upsert") -> Batch:
        """A batch of records given as their JSON (tests, the benchmark's ideal client)."""
        body = b"[" + b",".join(encoded) + b"]"
        bounds = array("q", accumulate([len(e) + 1 for e in encoded], initial=1))
        n = len(ids)
        return cls(ids, [""] * n, [False] * n, [""] * n, body, bounds, op)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size_bytes(self) -> int:
        return len(self.body)

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self.ids) // 2
        cut = self.bounds[mid]  # record mid starts here; the comma before it is at cut - 1
        first = Batch(
            self.ids[:mid], self.hashes[:mid], self.new[:mid], self.fingerprints[:mid],
            b"[" + self.body[1 : cut - 1] + b"]", self.bounds[: mid + 1], self.op,
        )  # fmt: skip
        shifted = array("q", (b - cut + 1 for b in self.bounds[mid:]))
        second = Batch(
            self.ids[mid:], self.hashes[mid:], self.new[mid:], self.fingerprints[mid:],
            b"[" + self.body[cut:-1] + b"]", shifted, self.op,
        )  # fmt: skip
        return first, second


@dataclass
class BatchResult:
    """What became of every record of a batch: upserts Pendo confirmed (column by column), ids whose fields
    it cleared, and rejects with their reason."""

    ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    new: list[bool] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    sent: int = 0
    updated: int = 0
    # The runtime budget stopped it: records neither confirmed nor rejected are not claimed.
    out_of_time: bool = False

    def confirm(self, batch: Batch, i: int | None = None) -> None:
        """Record i of the batch confirmed, or every record of it with i None."""
        if batch.op == "clear":
            self.cleared += batch.ids if i is None else [batch.ids[i]]
        elif i is None:
            self.ids += batch.ids
            self.hashes += batch.hashes
            self.new += batch.new
            self.fingerprints += batch.fingerprints
        else:
            self.ids.append(batch.ids[i])
            self.hashes.append(batch.hashes[i])
            self.new.append(batch.new[i])
            self.fingerprints.append(batch.fingerprints[i])

    def reject(self, batch: Batch, i: int, kind: str, reason: str) -> None:
        if batch.op == "clear" and kind == "missing":
            # A deleted id Pendo does not have needs no clearing: done, it leaves the ledger all the same.
            self.confirm(batch, i)
        else:
            self.rejects.append(Reject(batch.ids[i], batch.hashes[i], kind, reason, batch.op))


class Batcher:
    """Groups records into batches bounded by a record count (which may change between batches) and by
    bytes, column by column: ids, hashes, whether the ledger lacked each id, fingerprints, and the JSON
    texts, joined into the body once when the batch is full. Records come a chunk at a time and are cut
    into batches by slices (a call a record cost a tenth of a sync's Python). A batch holds records of one
    operation."""

    def __init__(self, max_records: Callable[[], int], max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._start("upsert")

    def _start(self, op: str) -> None:
        self._op = op
        self._ids: list[str] = []
        self._hashes: list[str] = []
        self._new: list[bool] = []
        self._fingerprints: list[str] = []
        self._texts: list[str] = []
        self._limit = self._max_records()  # read once a batch: the sizer moves between batches
        self._bounds = array("q", [1])  # where each record starts; the last: the body's length once closed

    def add(
        self,
        ids: Sequence[str],
        hashes: Sequence[str],
        new: Sequence[bool],
        fingerprints: Sequence[str],
        texts: Sequence[str],
        op: str = "upsert",
    ) -> list[Batch]:
        """Add records, given column by column; return the batches they filled (a record of another
        operation than the current batch's closes it)."""
        full: list[Batch] = []
        if op != self._op:
            if self._ids:
                full.append(self._close())
            self._op = op
        ascii_only = all(map(str.isascii, texts))
        sizes = list(map(len, texts)) if ascii_only else [len(t.encode()) for t in texts]
        start, n = 0, len(texts)
        while start < n:
            room = self._limit - len(self._ids)
            # Where each record would end in the body (its JSON and the comma or bracket after it).
            ends = list(
                accumulate((size + 1 for size in sizes[start : start + room]), initial=self._bounds[-1])
            )
            take = bisect_right(ends, self._max_bytes, lo=1) - 1  # records that fit in the bytes
            if take == 0 and not self._ids:
                take = 1  # a record larger alone than the limit goes in a batch of its own
            stop = start + take
            self._ids += ids[start:stop]
            self._hashes += hashes[start:stop]
            self._new += new[start:stop]
            self._fingerprints += fingerprints[start:stop]
            self._texts += texts[start:stop]
            self._bounds.extend(ends[1 : take + 1])
            start = stop
            if start < n:  # the batch is full: by count, or by bytes
                full.append(self._close())
        if len(self._ids) >= self._limit:
            full.append(self._close())
        return full

    def _close(self) -> Batch:
        body = ("[" + ",".join(self._texts) + "]").encode()
        batch = Batch(self._ids, self._hashes, self._new, self._fingerprints, body, self._bounds, self._op)
        self._start(self._op)
        return batch

    def flush(self) -> Batch | None:
        return self._close() if self._ids else None
