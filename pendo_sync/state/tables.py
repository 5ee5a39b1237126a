"""The state tables of one schema, and `ensure_schema`: create them on a new install, migrate an existing one.

| table         | one row per                                                        |
|---------------|--------------------------------------------------------------------|
| `ledger`      | sync, id: the hash of the values Pendo confirmed, and the version that confirmed it |
| `rejects`     | sync, id: why the row was not applied (kind, reason), by which run and version |
| `versions`    | sync, version: one run (or revert, or import): mode, status, cursor, figures, times |
| `locks`       | sync: the run writing it, its host:pid and heartbeat                |
| `pendo_ids`   | sync, id: the ids Pendo has (existing_ids_only syncs)                |
| `change_log`  | a view: sync, run, id, what the run did with the row (opt-in, pruned by retention), over `change_log_entries` (one row per group of a batch's rows alike) |
| `schema_info` | the schema: its version, so `ensure_schema` knows which migrations to apply |

Every statement is Redshift-safe: no ON CONFLICT, upserts are delete-then-insert in one transaction.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pendo_sync.outcome import RunCounts
from pendo_sync.warehouse.engines import backend_of

# The figures a version row keeps: every stored RunCounts figure, and `rejected` (their sum, kept as a
# column since the first schema so that queries of the versions table find it).
VERSION_FIGURES = (*RunCounts.stored_names(), "rejected")


class _Uncompressed(sa.types.UserDefinedType[str]):
    """DuckDB text stored as it is, for the change log's columns that no diff reads (the fingerprints, the
    log's ids): compressing random text at each checkpoint cost the log as much as writing it. The ledger's
    ids and hashes, which every diff scans, stay compressed: stored as they are they took twice the room,
    and neither a full sync nor a no-change run of a million rows was measurably faster (medians of
    interleaved runs within 3%). DuckDB alone knows the clause; other databases store the plain type."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "VARCHAR USING COMPRESSION uncompressed"


def stored_as_is(kind: sa.types.TypeEngine[str]) -> sa.types.TypeEngine[str]:
    return kind.with_variant(_Uncompressed(), "duckdb")


def utcnow() -> dt.datetime:
    """Now, as the state tables keep times: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class StateTables:
    """The sa.Table objects of the state schema (no I/O: `ensure_schema` creates and migrates them)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        md = sa.MetaData(schema=schema)
        self.ledger = sa.Table(
            "ledger",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
            sa.Column("row_hash", sa.String(32), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("confirmed_at", sa.DateTime, nullable=False),
            # A fingerprint of each mapped value, where the sync keeps a change log: which fields changed.
            sa.Column("field_hashes", stored_as_is(sa.String(1024))),
        )
        self.rejects = sa.Table(
            "rejects",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
            sa.Column("row_hash", sa.String(32), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(1024), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("rejected_at", sa.DateTime, nullable=False),  # the latest run that rejected it
            sa.Column("first_rejected_at", sa.DateTime),  # the first, of this run of rejections
            sa.Column("attempts", sa.Integer),  # runs that rejected it, the latest included
        )
        self.versions = sa.Table(
            "versions",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("mode", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("cursor_value", sa.String(256)),
            sa.Column("cursor_type", sa.String(16)),
            # Every row is written with every figure; a column a migration added is NULL in older rows.
            *[sa.Column(name, sa.BigInteger, nullable=False, default=0) for name in VERSION_FIGURES],
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("note", sa.String(1024), nullable=False, default=""),
            # md5 of the mapping the run sent with (warehouse/hashes.py mapping_digest); NULL before it.
            sa.Column("mapping", sa.String(32)),
            # A full refresh: the version it began in (this one, or the refresh it continues); the rows the
            # ledger holds from that version on are what the refresh has sent. NULL: not a refresh.
            sa.Column("refresh_since", sa.Integer),
        )
        self.locks = sa.Table(
            "locks",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("holder", sa.String(256), nullable=False, default=""),  # host:pid
            sa.Column("acquired_at", sa.DateTime, nullable=False),  # refreshed by every batch
        )
        # The ids Pendo has, fetched through the aggregation API for syncs with existing_ids_only: kept
        # here (not in memory) so the change set can join against it at any size.
        self.pendo_ids = sa.Table(
            "pendo_ids",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("record_id", sa.String(512), nullable=False),
        )
        # What each run did per row, for syncs that ask for it (change_log: {retention_days: N}): an entry
        # for each group of a batch's rows that share what happened to them, with the group's ids joined by
        # the unit separator (`joined`), or one id alone; the view `change_log` shows a row per id
        # (state/change_log.py). A row a record cost the log twice as much as the ledger row itself.
        self.change_log_entries = sa.Table(
            "change_log_entries",
            md,
            sa.Column("sync_name", sa.String(128), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("operation", sa.String(16), nullable=False),  # upsert | clear
            sa.Column("outcome", sa.String(16), nullable=False),  # confirmed, or the reject's kind
            sa.Column("reason", sa.String(1024)),
            sa.Column("changed_fields", sa.String(2048)),  # mapped fields whose value changed; * for a new id
            sa.Column("logged_at", sa.DateTime, nullable=False),
            sa.Column("joined", sa.Boolean, nullable=False),  # record_ids holds several ids, chr(31) between
            sa.Column(
                "record_ids",
                stored_as_is(sa.String(65535).with_variant(sa.Text(), "postgresql")),
                nullable=False,
            ),
        )
        self.schema_info = sa.Table(
            "schema_info",
            md,
            sa.Column("component", sa.String(32), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("migrated_at", sa.DateTime, nullable=False),
        )
        self.metadata = md
        # PostgreSQL only (see migrations.py): the ledger holds one row per (sync, id), and lookups by id
        # serve each batch's delete-and-insert and the change set's joins.
        self.indexes = (
            sa.Index("ledger_one_row_per_id", self.ledger.c.sync_name, self.ledger.c.record_id, unique=True),
            sa.Index("rejects_by_record", self.rejects.c.sync_name, self.rejects.c.record_id),
        )

    def quoted(self, engine: Engine | Connection, table: sa.Table) -> str:
        """schema.table, quoted as the engine's dialect quotes names (for the few statements in text)."""
        return self.quoted_name(engine, table.name)

    def quoted_name(self, engine: Engine | Connection, name: str) -> str:
        prep = engine.dialect.identifier_preparer
        return f"{prep.quote_schema(self.schema)}.{prep.quote(name)}"


def lock_table(conn: Connection, tables: StateTables, table: sa.Table) -> None:
    """Serialize writers of a state table for the rest of the transaction (PostgreSQL and Redshift; DuckDB
    has one writer process per file, and conflicting transactions abort)."""
    if backend_of(conn.engine) in ("postgresql", "redshift"):
        conn.execute(sa.text(f"LOCK TABLE {tables.quoted(conn, table)}"))


def ensure_schema(engine: Engine, tables: StateTables) -> None:
    """Create the schema and tables if missing, or bring an existing install up to the current schema
    version. Creating the schema needs CREATE on the database; where a DBA made it and granted it to the
    sync, owning it is enough."""
    from pendo_sync.state.migrations import migrate  # migrations build on these tables

    with engine.begin() as conn:
        exists = conn.execute(
            sa.text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :schema"),
            {"schema": tables.schema},
        ).scalar()
        if not exists:
            conn.execute(sa.schema.CreateSchema(tables.schema, if_not_exists=True))
        conn.execute(sa.schema.CreateTable(tables.schema_info, if_not_exists=True))
    with engine.begin() as conn:
        migrate(conn, tables)
