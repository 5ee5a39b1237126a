"""A batch of records, column by column (ids, hashes, whether the ledger lacked each id, fingerprints for the
change log) with the JSON array Pendo gets, built once: how records are grouped into batches bounded by
count and bytes (Batcher), how a batch halves on 408 without encoding anything again, and what became of
each of its records (BatchResult)."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

from pendo_sync.outcome import Reject


class Batch:
    """The records of one call, column by column (ids, hashes, whether the ledger lacked each id, their
    fingerprints for the change log), and the JSON array Pendo gets, built once. `bounds` says where each
    record starts in the body (the last: the body's length), so a batch halves on 408 without encoding
    anything again. `op` is what every record asks of Pendo: upsert, or clear (deleted ids)."""

    __slots__ = ("ids", "hashes", "new", "fields", "body", "bounds", "op")

    def __init__(
        self,
        ids: list[str],
        hashes: list[str],
        new: list[bool],
        fields: list[str],
        body: bytes,
        bounds: array[int],
        op: str = "upsert",
    ) -> None:
        self.ids, self.hashes, self.new, self.fields = ids, hashes, new, fields
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
            self.ids[:mid], self.hashes[:mid], self.new[:mid], self.fields[:mid],
            b"[" + self.body[1 : cut - 1] + b"]", self.bounds[: mid + 1], self.op,
        )  # fmt: skip
        shifted = array("q", (b - cut + 1 for b in self.bounds[mid:]))
        second = Batch(
            self.ids[mid:], self.hashes[mid:], self.new[mid:], self.fields[mid:],
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
    fields: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    sent: int = 0
    updated: int = 0

    def confirm(self, batch: Batch, i: int | None = None) -> None:
        """Record i of the batch confirmed, or every record of it with i None."""
        if batch.op == "clear":
            self.cleared += batch.ids if i is None else [batch.ids[i]]
        elif i is None:
            self.ids += batch.ids
            self.hashes += batch.hashes
            self.new += batch.new
            self.fields += batch.fields
        else:
            self.ids.append(batch.ids[i])
            self.hashes.append(batch.hashes[i])
            self.new.append(batch.new[i])
            self.fields.append(batch.fields[i])

    def reject(self, batch: Batch, i: int, kind: str, reason: str) -> None:
        if batch.op == "clear" and kind == "missing":
            # A deleted id Pendo does not have needs no clearing: done, it leaves the ledger all the same.
            self.confirm(batch, i)
        else:
            self.rejects.append(Reject(batch.ids[i], batch.hashes[i], kind, reason, batch.op))


class Batcher:
    """Groups records into batches bounded by a record count (which may change between batches) and by
    bytes, column by column: ids, hashes, whether the ledger lacked each id, fingerprints, and the JSON
    texts, joined into the body once when the batch is full. A batch holds records of one operation."""

    def __init__(self, max_records: Callable[[], int], max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._start("upsert")

    def _start(self, op: str) -> None:
        self._op = op
        self._ids: list[str] = []
        self._hashes: list[str] = []
        self._new: list[bool] = []
        self._fields: list[str] = []
        self._texts: list[str] = []
        self._limit = self._max_records()  # read once a batch: the sizer moves between batches
        self._bounds = array("q", [1])  # where each record starts; the last: the body's length once closed

    def add(
        self, record_id: str, row_hash: str, new: bool, fields: str, text: str, op: str = "upsert"
    ) -> Batch | None:
        """Add a record; return a full batch when this record would overflow the current one (or is of
        another operation)."""
        size = len(text) if text.isascii() else len(text.encode())
        end = self._bounds[-1] + size + 1
        full = None
        if self._ids and (end > self._max_bytes or len(self._ids) >= self._limit or op != self._op):
            full = self.flush()
        if op != self._op:
            self._start(op)
        if full is not None:
            end = self._bounds[-1] + size + 1
        self._ids.append(record_id)
        self._hashes.append(row_hash)
        self._new.append(new)
        self._fields.append(fields)
        self._texts.append(text)
        self._bounds.append(end)
        return full

    def flush(self) -> Batch | None:
        if not self._ids:
            return None
        body = ("[" + ",".join(self._texts) + "]").encode()
        batch = Batch(self._ids, self._hashes, self._new, self._fields, body, self._bounds, self._op)
        self._start(self._op)
        return batch
