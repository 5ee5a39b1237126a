"""Reads of the outstanding rejects: which rows a run must try again, and what an operator asks for.

A reject stays until its row lands or leaves the source. Every later run retries it, whatever its mode:
kinds `invalid`, `error` and `duplicate` always, `missing` (Pendo lacks the id) once
missing_retry_seconds have passed since Pendo last said so (always, for a row existing_ids_only held back).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pendo_sync.state.bulk import chunks
from pendo_sync.state.tables import StateTables
from pendo_sync.warehouse.slices import stream_rows


class Rejects:
    """The rejects table of one state schema, read."""

    def __init__(self, engine: Engine, tables: StateTables) -> None:
        self.engine = engine
        self.table = tables.rejects

    # -- what a run retries -------------------------------------------------------------------------
    def retry_flags(self, sync_name: str, missing_since: dt.datetime) -> sa.Subquery:
        """One row per rejected id of the sync: `retry` is 1 where the run must read the row again, whatever
        its slice; `held_hash` is the hash Pendo recently reported missing (not worth a call again yet).
        A subquery for the change set to join on record_id (grouped: robust to older duplicate rows)."""
        r = self.table
        # A reject without a hash (a row existing_ids_only held back: engine/runner.py) is retried by every
        # run: looking at it again costs no call.
        recheck = sa.or_(r.c.kind != "missing", r.c.rejected_at <= missing_since, r.c.row_hash == "")
        retry = sa.case((recheck, 1), else_=0)
        held = sa.case((sa.and_(r.c.kind == "missing", r.c.rejected_at > missing_since), r.c.row_hash))
        return (
            sa.select(r.c.record_id, sa.func.max(retry).label("retry"), sa.func.max(held).label("held_hash"))
            .where(r.c.sync_name == sync_name)
            .group_by(r.c.record_id)
            .subquery("rj")
        )

    def retry_ids(self, sync_name: str, missing_since: dt.datetime, chunk_rows: int) -> Iterator[list[str]]:
        """The ids a run retries, in chunks (a separate state database: the source is looked up by id)."""
        flags = self.retry_flags(sync_name, missing_since)
        stmt = sa.select(flags.c.record_id).where(flags.c.retry == 1)
        for part in stream_rows(self.engine, stmt, chunk_rows):
            yield [r[0] for r in part]

    def rejected_ids(
        self, sync_name: str, chunk_rows: int, only: str | None = None, other_than: str | None = None
    ) -> Iterator[list[str]]:
        """Every rejected id of the sync (of kind `only`, of kinds `other_than`), in chunks, each read by a
        query of its own, in id order: no read stays open while the caller works on a chunk (the run's
        writer commits meanwhile, and DuckDB keeps the undo of every commit made while a read is open)."""
        r = self.table
        stmt = sa.select(r.c.record_id).where(r.c.sync_name == sync_name).distinct()
        if only:
            stmt = stmt.where(r.c.kind == only)
        if other_than:
            stmt = stmt.where(r.c.kind != other_than)
        after: str | None = None
        while True:
            page = stmt if after is None else stmt.where(r.c.record_id > after)
            with self.engine.connect() as conn:
                ids = list(conn.execute(page.order_by(r.c.record_id).limit(chunk_rows)).scalars())
            if not ids:
                return
            yield ids
            after = ids[-1]

    def flags_of(
        self, sync_name: str, record_ids: Sequence[str], missing_since: dt.datetime
    ) -> dict[str, tuple[bool, str | None]]:
        """id -> (retry, held hash) for those of the ids that have a reject (see retry_flags)."""
        flags = self.retry_flags(sync_name, missing_since)
        out: dict[str, tuple[bool, str | None]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(record_ids), 1000):
                rows = conn.execute(sa.select(flags).where(flags.c.record_id.in_(chunk)))
                out.update({r.record_id: (bool(r.retry), r.held_hash) for r in rows})
        return out

    # -- what an operator reads ---------------------------------------------------------------------
    def outstanding(
        self, sync_name: str, kind: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        r = self.table
        stmt = sa.select(r).where(r.c.sync_name == sync_name).order_by(r.c.record_id)
        if kind:
            stmt = stmt.where(r.c.kind == kind)
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def count_by_kind(self, sync_name: str) -> Counter[str]:
        r = self.table
        stmt = sa.select(r.c.kind, sa.func.count()).where(r.c.sync_name == sync_name).group_by(r.c.kind)
        with self.engine.connect() as conn:
            return Counter({kind: int(n) for kind, n in conn.execute(stmt)})

    def reasons(self, sync_name: str, run_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The outstanding rejects grouped by kind and reason, the most common first, with two example ids
        (of one run's rejects, with `run_id`)."""
        r = self.table
        stmt = (
            sa.select(
                r.c.kind,
                r.c.reason,
                sa.func.count().label("count"),
                sa.func.min(r.c.record_id).label("first_id"),
                sa.func.max(r.c.record_id).label("last_id"),
            )
            .where(r.c.sync_name == sync_name, *([r.c.run_id == run_id] if run_id else []))
            .group_by(r.c.kind, r.c.reason)
            .order_by(sa.func.count().desc(), r.c.kind, r.c.reason)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "kind": row.kind,
                    "reason": row.reason,
                    "count": int(row[2]),
                    "examples": sorted({row.first_id, row.last_id}),
                }
                for row in conn.execute(stmt)
            ]

    def of_run(self, sync_name: str, run_id: str, chunk_rows: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """The rejects a run recorded that are still outstanding, chunk by chunk (a run may reject a table)."""
        r = self.table
        stmt = sa.select(r).where(r.c.sync_name == sync_name, r.c.run_id == run_id).order_by(r.c.record_id)
        for part in stream_rows(self.engine, stmt, chunk_rows):
            yield [dict(row._mapping) for row in part]
