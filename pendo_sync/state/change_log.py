"""The change log (syncs with `change_log: {retention_days: N}`): what each run did with each row, kept in the
state schema and read through the view `change_log`, a row per row a run handled (README: The change log).

A batch's rows fall in a few groups that share everything but their ids: the new ids confirmed, the ids
confirmed with each set of changed fields, the ids cleared, each reject. Each group is one row of
`change_log_entries` holding its ids joined by the unit separator, and the view splits them: a row per
record cost the log twice what the record's ledger row costs (on DuckDB, per byte and per row), an
entry per group costs a tenth of it. Redshift, which cannot split text into rows in a plain view, keeps
one id an entry. An id that holds the separator is an entry of its own.

Which fields changed comes from the fingerprints the ledger keeps (warehouse/hashes.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.state.bulk import insert_columns
from pendo_sync.state.tables import StateTables
from pendo_sync.warehouse.engines import backend_of

if TYPE_CHECKING:
    from pendo_sync.state.ledger import BatchOutcome

# The entries' changed_fields column (state/tables.py).
CHANGED_FIELDS_LENGTH = 2048
SEPARATOR = "\x1f"  # ASCII's unit separator, between the ids of an entry
VIEW = "change_log"
# The view's columns: the entries' own, the ids split, the rest.
_SHOWN = ("sync_name", "run_id", "version")
_AFTER = ("operation", "outcome", "reason", "changed_fields", "logged_at")


def changed_fields(fields: Sequence[str], before: str, after: str) -> str:
    """The fields whose fingerprints differ, comma-joined; '*' (every field) where the old ones are unknown
    or the names would not fit the column (cut short, a query for one of them would miss it)."""
    old, new = before.split(","), after.split(",")
    if not before or len(old) != len(new):
        return "*"
    changed = ",".join(name for name, a, b in zip(fields, old, new, strict=True) if a != b)
    return changed if len(changed) <= CHANGED_FIELDS_LENGTH else "*"


def create_view(conn: Connection, tables: StateTables) -> None:
    """The view `change_log`, a row per id of each entry, as this database can split them."""
    e = tables.change_log_entries
    before = ", ".join(f"e.{c}" for c in _SHOWN)
    after = ", ".join(f"e.{c}" for c in _AFTER)
    backend = backend_of(conn.engine)
    if backend == "duckdb":
        ids = "unnest(CASE WHEN e.joined THEN string_split(e.record_ids, chr(31)) ELSE [e.record_ids] END)"
    elif backend == "postgresql":
        ids = "unnest(CASE WHEN e.joined THEN string_to_array(e.record_ids, chr(31)) ELSE ARRAY[e.record_ids] END)"
    else:  # Redshift: one id an entry (EntryWriter.joins)
        ids = "e.record_ids"
    conn.execute(
        sa.text(
            f"CREATE OR REPLACE VIEW {tables.quoted_name(conn, VIEW)} AS SELECT {before}, {ids} AS record_id, "
            f"{after} FROM {tables.quoted(conn, e)} AS e"
        )
    )


def _entries(ids: list[str], joins: bool) -> list[tuple[bool, str]]:
    """(joined, record_ids) of each entry holding these ids."""
    if not joins:
        return [(False, i) for i in ids]
    plain = [i for i in ids if SEPARATOR not in i]
    out = [(False, i) for i in ids if SEPARATOR in i]
    if len(plain) == 1:
        out.append((False, plain[0]))
    elif plain:
        out.append((True, SEPARATOR.join(plain)))
    return out


class ChangeLog:
    """Writes a batch's entries and prunes old ones, for one state schema."""

    def __init__(self, engine: Engine, tables: StateTables) -> None:
        self.engine = engine
        self.tables = tables

    def write_entries(
        self,
        conn: Connection,
        sync_name: str,
        version: int,
        run_id: str,
        batch: BatchOutcome,
        previous: dict[str, str],
        now: dt.datetime,
    ) -> None:
        """The batch's entries (in the caller's transaction); `previous` holds the fingerprints the ledger
        kept of the ids it replaced."""
        groups: dict[tuple[str, str, str | None, str | None], list[str]] = {}
        if batch.ids:
            if previous:
                for record_id, after in zip(batch.ids, batch.field_hashes, strict=True):
                    before = previous.get(record_id)
                    changed = "*" if before is None else changed_fields(batch.fields, before, after)
                    groups.setdefault(("upsert", "confirmed", None, changed), []).append(record_id)
            else:  # every id new to the ledger (all of a first sync's): one group, every field new
                groups[("upsert", "confirmed", None, "*")] = list(batch.ids)
        if batch.cleared:
            groups[("clear", "confirmed", None, "*")] = list(batch.cleared)
        for reject in batch.rejects:
            groups.setdefault((reject.op, reject.kind, reject.reason[:1024], None), []).append(
                reject.record_id
            )
        keys, joined, record_ids = [], [], []
        # Where a view cannot split an entry's ids into rows, an entry holds one id.
        joins = backend_of(conn.engine) in ("duckdb", "postgresql")
        for key, ids in groups.items():
            for several, text in _entries(ids, joins):
                keys.append(key)
                joined.append(several)
                record_ids.append(text)
        if not keys:
            return
        entries = self.tables.change_log_entries
        insert_columns(
            conn,
            entries,
            self.tables.quoted(conn, entries),
            {
                "operation": [op for op, _, _, _ in keys],
                "outcome": [outcome for _, outcome, _, _ in keys],
                "reason": [reason for _, _, reason, _ in keys],
                "changed_fields": [changed for _, _, _, changed in keys],
                "joined": joined,
                "record_ids": record_ids,
            },
            {"sync_name": sync_name, "run_id": run_id, "version": version, "logged_at": now},
        )

    def prune(self, sync_name: str, older_than: dt.datetime) -> int:
        """Forget the sync's entries logged before `older_than`; returns how many."""
        entries = self.tables.change_log_entries
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.delete(entries).where(entries.c.sync_name == sync_name, entries.c.logged_at < older_than)
            )
        return int(done.rowcount or 0)
