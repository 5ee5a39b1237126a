"""Ordered migrations of the state schema. `schema_info` holds the version an install is at; a new install
is created at the latest version, an older one is brought to it step by step, each step in the same
transaction as the version it stamps (and under a lock, so two processes never migrate at once).

Version 1 is the schema of the first releases (no `schema_info` yet: an install with a `versions` table and
no version row is at version 1). To change the schema: change tables.py, add a step here, and test it from
the version before (pendo_sync_tests/state/test_migrations.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pendo_sync.state.change_log import create_view
from pendo_sync.state.tables import VERSION_FIGURES, StateTables, lock_table, utcnow
from pendo_sync.warehouse.engines import backend_of

COMPONENT = "pendo_sync"


@dataclass(frozen=True)
class Migration:
    version: int  # the schema version this step brings an install to
    what: str
    apply: Callable[[Connection, StateTables], None]


def _add_figures(conn: Connection, tables: StateTables) -> None:
    """Every figure of RunCounts gets a column (invalid, duplicate, errors, confirmed, ... were lost)."""
    present = _columns(conn, tables, "versions")
    for name in VERSION_FIGURES:
        if name not in present:
            conn.execute(
                sa.text(
                    f"ALTER TABLE {tables.quoted(conn, tables.versions)} ADD COLUMN {name} BIGINT DEFAULT 0"
                )
            )


def _one_ledger_row_per_id(conn: Connection, tables: StateTables) -> None:
    """Forget every id the ledger holds more than once (duplicate source ids used to be confirmed twice):
    the next run resends it, or rejects it while the source still carries it twice. PostgreSQL then
    enforces one row per id with a unique index."""
    ledger = tables.ledger
    syncs = conn.execute(sa.select(ledger.c.sync_name).distinct()).scalars().all()
    for sync in syncs:
        twice = (
            sa.select(ledger.c.record_id)
            .where(ledger.c.sync_name == sync)
            .group_by(ledger.c.record_id)
            .having(sa.func.count() > 1)
        )
        conn.execute(sa.delete(ledger).where(ledger.c.sync_name == sync, ledger.c.record_id.in_(twice)))
    if backend_of(conn.engine) == "postgresql":
        conn.execute(
            sa.text(
                f"DROP INDEX IF EXISTS {conn.dialect.identifier_preparer.quote_schema(tables.schema)}.ledger_by_record"
            )
        )
        _create_indexes(conn, tables)


def _reject_history_and_change_log(conn: Connection, tables: StateTables) -> None:
    """Rejects say when they were first met and how many runs met them; the ledger keeps field fingerprints
    for the change log (its table is created with the others)."""
    added = {
        "rejects": ("first_rejected_at TIMESTAMP", "attempts INTEGER"),
        "ledger": ("field_hashes VARCHAR(1024)",),
    }
    for name, columns in added.items():
        present = _columns(conn, tables, name)
        for column in columns:
            if column.split()[0] not in present:
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {tables.quoted(conn, tables.metadata.tables[f'{tables.schema}.{name}'])} ADD COLUMN {column}"
                    )
                )


def _fingerprints_from_the_database(conn: Connection, tables: StateTables) -> None:
    """Field fingerprints are computed by the database now (warehouse/hashes.py), not in Python: the ones
    kept would match none of the new, so they are forgotten (the next change of each row is logged as
    every field changed, '*', which is what the log says where it does not know)."""
    ledger = tables.ledger
    conn.execute(sa.update(ledger).where(ledger.c.field_hashes.is_not(None)).values(field_hashes=None))


def _mapping_of_each_version(conn: Connection, tables: StateTables) -> None:
    """Each version says which mapping it sent with, so a run after a change of mapping reads every row
    (versions before have none: taken as the current mapping)."""
    if "mapping" not in _columns(conn, tables, "versions"):
        conn.execute(
            sa.text(f"ALTER TABLE {tables.quoted(conn, tables.versions)} ADD COLUMN mapping VARCHAR(32)")
        )


def _refresh_of_each_version(conn: Connection, tables: StateTables) -> None:
    """Each version says which full refresh it belongs to, so one the runtime budget stopped is continued
    by the next run instead of started over (versions before have none: no refresh owed)."""
    if "refresh_since" not in _columns(conn, tables, "versions"):
        conn.execute(
            sa.text(f"ALTER TABLE {tables.quoted(conn, tables.versions)} ADD COLUMN refresh_since INTEGER")
        )


def _change_log_in_entries(conn: Connection, tables: StateTables) -> None:
    """The change log kept as entries (one for each group of a batch's rows alike, their ids joined) and
    shown as before by the view `change_log`; each row kept moves as an entry of its own."""
    if _table_type(conn, tables, "change_log") == "BASE TABLE":
        names = (
            "sync_name",
            "run_id",
            "version",
            "operation",
            "outcome",
            "reason",
            "changed_fields",
            "logged_at",
        )
        old = sa.table("change_log", *[sa.column(c) for c in (*names, "record_id")], schema=tables.schema)
        entries = tables.change_log_entries
        conn.execute(
            sa.insert(entries).from_select(
                [*names, "joined", "record_ids"],
                sa.select(*[old.c[c] for c in names], sa.false(), old.c.record_id),
            )
        )
        conn.execute(sa.text(f"DROP TABLE {tables.quoted_name(conn, 'change_log')}"))
    create_view(conn, tables)


MIGRATIONS = (
    Migration(2, "a column for every run figure", _add_figures),
    Migration(3, "one ledger row per (sync, id)", _one_ledger_row_per_id),
    Migration(4, "reject history, field fingerprints and the change log", _reject_history_and_change_log),
    Migration(5, "field fingerprints computed by the database", _fingerprints_from_the_database),
    Migration(6, "the mapping of each version", _mapping_of_each_version),
    Migration(7, "the full refresh of each version", _refresh_of_each_version),
    Migration(8, "the change log as entries and their ids, behind a view", _change_log_in_entries),
)
LATEST = MIGRATIONS[-1].version


def migrate(conn: Connection, tables: StateTables) -> int:
    """Bring the schema to LATEST; returns the version it was at (0: a new install)."""
    lock_table(conn, tables, tables.schema_info)
    info = tables.schema_info
    stamped = conn.execute(sa.select(info.c.version).where(info.c.component == COMPONENT)).scalar()
    if stamped is None:
        stamped = 1 if "sync_name" in _columns(conn, tables, "versions") else 0
    if stamped >= LATEST:
        return int(stamped)
    for table in tables.metadata.sorted_tables:  # a new install: every table in its latest shape
        conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
    if stamped == 0:
        _create_indexes(conn, tables)
        create_view(conn, tables)
    else:
        for step in MIGRATIONS:
            if step.version > stamped:
                step.apply(conn, tables)
    conn.execute(sa.delete(info).where(info.c.component == COMPONENT))
    conn.execute(sa.insert(info).values(component=COMPONENT, version=LATEST, migrated_at=utcnow()))
    return int(stamped)


def _create_indexes(conn: Connection, tables: StateTables) -> None:
    # PostgreSQL only: without them every batch's delete scans the ledger (quadratic over a full sync), and
    # a cursor's fast-start plan joins the ledger by nested loop. Redshift has no indexes (its sort keys
    # serve), and a DuckDB ART index makes these deletes slower, not faster.
    if backend_of(conn.engine) == "postgresql":
        for index in tables.indexes:
            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))


def _table_type(conn: Connection, tables: StateTables, table: str) -> str | None:
    """'BASE TABLE', 'VIEW', or None where the schema has no such table."""
    found = conn.execute(
        sa.text(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = :schema AND table_name = :table"
        ),
        {"schema": tables.schema, "table": table},
    ).scalar()
    return None if found is None else str(found)


def _columns(conn: Connection, tables: StateTables, table: str) -> set[str]:
    rows = conn.execute(
        sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :schema AND table_name = :table"
        ),
        {"schema": tables.schema, "table": table},
    )
    return {str(r[0]) for r in rows}
