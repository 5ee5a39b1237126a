"""The words of a run's result, shared by every layer: a rejected row, the run's figures, its status.

`RunCounts` owns every figure a run reports and what it means: the state store keeps one column per
stored figure, and Dagster metadata, the S3 report, `state list` and the CLI summary all read it from
here, so a new figure is one field here plus a migration (state/migrations.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

# Why a row was not applied. Every kind but `missing` is retried by every later run; `missing` (Pendo lacks
# the id) after the sync's missing_retry_seconds.
REJECT_KINDS = {
    "missing": "Pendo has no record with this id (it does not create records unless create_missing is on)",
    "invalid": "a mapped value does not fit its Pendo type; nothing was sent for the row",
    "error": "Pendo refused the row, or every attempt to deliver its batch failed",
    "duplicate": "more than one source row carries the id; none of them was sent",
    "drift": "pendo-sync verify found Pendo holding another value than the source's; the next run resends it",
}


# The longest id Pendo and the state tables' record_id take.
MAX_ID_LENGTH = 512
# An id longer than that is kept (rejected) as its first SHORT_ID_PREFIX characters, SHORT_ID_MARK and the
# md5 of the whole: the same in every run; warehouse/diff.py short_id_text says it in SQL.
SHORT_ID_PREFIX, SHORT_ID_MARK = 400, "..."
EMPTY_ID = "(empty id)"  # the id a row without one (NULL or empty) is rejected under


def reject_id(record_id: str | None) -> str:
    """The id an invalid row's reject is kept under: the id itself; "(empty id)" for none; the short form
    of an id too long to keep."""
    if not record_id:
        return EMPTY_ID
    if len(record_id) <= MAX_ID_LENGTH:
        return record_id
    digest = hashlib.md5(record_id.encode(errors="surrogatepass")).hexdigest()
    return f"{record_id[:SHORT_ID_PREFIX]}{SHORT_ID_MARK}{digest}"


def is_short_id(record_id: str) -> bool:
    """Whether a kept id may be the short form of a longer one."""
    return len(record_id) == SHORT_ID_PREFIX + len(SHORT_ID_MARK) + 32 and SHORT_ID_MARK in record_id


class Reject(NamedTuple):
    """One row that was not applied, from where it was found (coercion, delivery) to the rejects table."""

    record_id: str
    row_hash: str
    kind: str  # one of REJECT_KINDS
    reason: str
    op: str = "upsert"  # what was asked of Pendo: upsert, or clear (a deleted id)


def _figure(doc: str, stored: bool = True) -> Any:
    return field(default=0, metadata={"doc": doc, "stored": stored})


@dataclass
class RunCounts:
    """Every figure of one run. `stored` figures have a column in the versions table."""

    rows_read: int = _figure("source rows in the change set (new, changed, or retried rejects)")
    retried: int = _figure("rows read again because an earlier run rejected them")
    sent: int = _figure("records in calls Pendo answered (upserts and clears)")
    updated: int = _figure("records Pendo reported as updated")
    confirmed: int = _figure("records Pendo confirmed, now in the ledger")
    cleared: int = _figure("ids that left the source whose mapped fields were cleared (on_delete: clear)")
    deleted: int = _figure("ids that left the source and were forgotten (on_delete: ignore)")
    missing: int = _figure("ids Pendo does not have (rejects of kind missing; not a failure)")
    invalid: int = _figure("rows with a value that does not fit its Pendo type (rejects of kind invalid)")
    duplicate: int = _figure("ids carried by more than one source row (rejects of kind duplicate)")
    errors: int = _figure("rows Pendo refused or that could not be delivered (rejects of kind error)")
    not_in_pendo: int = _figure("rows held back because Pendo lacks the id (existing_ids_only)")
    calls: int = _figure("write calls made")
    retries: int = _figure("calls repeated after a 429, a 5xx, a timeout or a dropped connection")
    throttled: int = _figure("calls answered 429 (rate limited)")
    splits: int = _figure("batches split in half after a 408 (past Pendo's time limit)")
    lowest_concurrency: int = _figure("the lowest number of calls in flight allowed during the run")

    @property
    def rejected(self) -> int:
        """Rows not applied for a reason other than a missing id: the ones that make a run not complete."""
        return self.invalid + self.duplicate + self.errors

    @property
    def done(self) -> int:
        """What progress counts: every record sent, and every row settled without a call."""
        return self.sent + self.invalid + self.duplicate + self.not_in_pendo

    @property
    def reject_share(self) -> float:
        """Rows not applied (missing ids included) over rows looked at."""
        looked = self.rows_read + self.cleared
        return (self.rejected + self.missing) / looked if looked else 0.0

    def __getitem__(self, name: str) -> int:
        """A figure by name (`counts["sent"]`), derived ones included."""
        return int(getattr(self, name))

    def add_reject(self, kind: str) -> None:
        name = "errors" if kind == "error" else kind
        setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        """Every figure, the derived `rejected` included, in declaration order."""
        out = {f.name: int(getattr(self, f.name)) for f in fields(self)}
        out["rejected"] = self.rejected
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunCounts:
        return cls(**{f.name: int(values.get(f.name) or 0) for f in fields(cls)})

    @classmethod
    def stored_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.metadata["stored"])

    @classmethod
    def meaning(cls, name: str) -> str:
        if name == "rejected":
            return "rows not applied for a reason other than a missing id: invalid + duplicate + errors"
        return next(f.metadata["doc"] for f in fields(cls) if f.name == name)


# A run's status, as the versions table, Dagster metadata and `pendo-sync run` report it.
STATUSES = {
    "complete": "every row of the change set was applied (ids Pendo lacks are reported, not a failure)",
    "with_rejects": "the run went through, and some rows were rejected (invalid values, duplicate "
    "ids, or Pendo refused them); they are retried by every later run",
    "partial": "the runtime budget was reached: the ledger holds what was done, the next run resumes",
    "failed": "the run stopped on an error, or Pendo refused or failed every row it was sent",
    "running": "a run is under way (or was killed; the next run marks it abandoned)",
    "abandoned": "the run stopped without finishing (killed?); its confirmed batches are in the ledger",
}


def final_status(counts: RunCounts, stopped_early: bool) -> str:
    """The status of a run that came to its end without an exception."""
    if counts.errors and not counts.confirmed + counts.cleared:
        return "failed"  # Pendo refused or failed every row it was sent
    if stopped_early:
        return "partial"
    return "with_rejects" if counts.rejected else "complete"
