"""Every statement pendo_sync runs must run on Redshift: captured from real runs, compiled with its dialect.

A `before_execute` listener on the engines records each Core construct and text() statement pendo_sync code
executes (full, incremental, backfill and changed-source runs, existing_ids_only, a query sync, a sync whose
names need quoting, the ledger in a database of its own, state reads, revert, lock, discovery, the sensor
helper). Each is compiled with sqlalchemy-redshift's dialect and checked: it compiles; it uses nothing
Redshift lacks (ON CONFLICT, RETURNING, row locks, jsonb, string_agg, generate_series, ...); it casts no
boolean column to text (Redshift refuses that); its names are quoted as Redshift's preparer quotes them;
and no value is formatted into it (no string or number literal, no id, no date).

Which statements stand for Redshift. `backend_of(engine)` picks the branches: the state store's (LOCK
TABLE, executemany or DuckDB's unnest insert, PostgreSQL's indexes and ANALYZE, ...) and the catalog's.
- On PostgreSQL the state store is told it is on Redshift (`backend_of` patched in the state package only),
  so the run takes Redshift's own branches, executed for real on PostgreSQL and compiled with Redshift's
  dialect.
- The catalog cannot be: Redshift's `svv_columns`/`svv_tables` do not exist elsewhere. A captured
  information_schema columns statement is checked as `discovery_statements("redshift", ...)` for the same
  filters; the primary-key statement is the same text on every backend.
- On DuckDB the store takes DuckDB's branches; those that Redshift never takes (`insert_columns`: DuckDB's
  bulk insert) are skipped, and every other construct is the one Redshift runs, so it is checked too.
On PostgreSQL the SQL handed to the driver (`before_cursor_execute`) is checked as well: it is what the
PostgreSQL family of dialects, Redshift's included, really sends (executemany batching, implicit RETURNING).
The per-connection SET statements of engines.py bypass SQLAlchemy's events and are checked on their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.sql import visitors
from sqlalchemy_redshift.dialect import RedshiftDialect_psycopg2

import pendo_sync
from pendo_sync.config import FieldMapping, SyncSpec
from pendo_sync.engine.run import RunOptions, SyncOutcome, run_sync
from pendo_sync.engine.verify import verify
from pendo_sync.pendo.emulator import Fault
from pendo_sync.state import bulk, change_log, ledger, migrations, tables
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.catalog import SYSTEM_SCHEMAS, discover, discovery_statements
from pendo_sync.warehouse.engines import WarehouseUrlError, backend_of, connection_settings, make_engine
from pendo_sync.warehouse.slices import Slice, count_rows, days_with_rows_after, max_replication_key
from pendo_sync_tests.world import World

REDSHIFT = RedshiftDialect_psycopg2()
PACKAGE = Path(pendo_sync.__file__).resolve().parent
NOT_PRODUCTION = PACKAGE / "demo"  # seeds a local DuckDB for the demo; never runs against Redshift

# (pattern, why Redshift cannot run it), searched case-insensitively in every statement.
FORBIDDEN = [
    (r"\bON\s+CONFLICT\b", "ON CONFLICT: not in Redshift; use MERGE, or delete-and-insert via staging"),
    (r"\bRETURNING\b", "RETURNING: Redshift does not support it"),
    (r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE)\b|\bSKIP\s+LOCKED|\bNOWAIT\b", "no row locks in Redshift"),
    (r"\bjsonb?\b", "json/jsonb: Redshift has SUPER (JSON_PARSE), not PostgreSQL's json types"),
    (r"\bstring_agg\s*\(", "string_agg: Redshift spells it LISTAGG"),
    (r"\bgenerate_series\s*\(", "generate_series: leader-node only on Redshift, fails against user tables"),
    (r"\bnow\s*\(\s*\)", "now(): leader-node only on Redshift; bind the time or use GETDATE()"),
    (r"\bDISTINCT\s+ON\b", "DISTINCT ON: not in Redshift; use ROW_NUMBER()"),
    (r"\bLATERAL\b", "LATERAL: not in Redshift"),
    (r"\bFILTER\s*\(\s*WHERE\b", "aggregate FILTER: not in Redshift; put a CASE inside the aggregate"),
    (r"\bARRAY\s*\[|=\s*ANY\s*\(", "arrays: Redshift has no ARRAY type; use IN (...)"),
    (r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\b", "CREATE INDEX: Redshift has no indexes (sort/dist keys instead)"),
    (r"\b(?:BIG)?SERIAL\b", "SERIAL: not in Redshift; use IDENTITY"),
    (r"\bTRUNCATE\b", "TRUNCATE commits the open transaction on Redshift; use DELETE"),
]  # fmt: skip
# Only in compiled constructs, whose types come from SQLAlchemy: there a bare VARCHAR/TEXT is a column type.
BARE_TEXT_TYPE = re.compile(r"\b(?:VARCHAR|CHARACTER VARYING|TEXT)\b(?!\s*\()", re.I)
# Fixed words the catalog text spells out; any other string literal is a value formatted into the SQL.
CATALOG_WORDS = {"BASE TABLE", "VIEW", "EXTERNAL TABLE", "PRIMARY KEY"}
STRING_LITERAL = re.compile(r"'((?:[^']|'')*)'")
ID_OR_DATE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d{4}-\d\d-\d\d\b", re.I
)
TYPE_ARGS = re.compile(r"\b(?:VARCHAR|CHAR|CHARACTER VARYING|NUMERIC|DECIMAL)\s*\([\d,\s]*\)", re.I)
NUMBER_LITERAL = re.compile(r"(?<![\w.%])\d+(?:\.\d+)?\b")

# A source whose names only survive quoted: mixed case, a space, and a word Redshift reserves.
QUOTED_SCHEMA, QUOTED_TABLE = "Crm", "Account List"
QUOTED_SOURCE = f"""CREATE TABLE "{QUOTED_SCHEMA}"."{QUOTED_TABLE}" AS
SELECT account_id AS "Account Id", plan AS "Plan", seats AS "user", is_paying AS "Is Paying",
       updated_at AS "Updated At"
FROM accounts"""


@dataclass
class Executed:
    """One statement pendo_sync executed: on which backend, with which rows, from which pendo_sync frames."""

    statement: Any  # a ClauseElement; the SQL string for what the driver was handed
    backend: str
    rows: list[dict[str, Any]]
    frames: list[traceback.FrameSummary]  # innermost first

    @property
    def origin(self) -> str:
        return " <- ".join(
            f"{Path(f.filename).relative_to(PACKAGE.parent)}:{f.lineno} {f.name}" for f in self.frames[:4]
        )


@dataclass
class StatementLog:
    """What pendo_sync code executes on the engines it is attached to (the test's own SQL is left out)."""

    statements: list[Executed] = field(default_factory=list)
    driver_sql: list[Executed] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_execute", self._before_execute)
        event.listen(engine, "before_cursor_execute", self._before_cursor_execute)

    def _before_execute(self, conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
        if frames := _pendo_sync_frames():
            rows = list(multiparams) if multiparams else ([dict(params)] if params else [])
            self.statements.append(Executed(clause, backend_of(conn.engine), rows, frames))

    def _before_cursor_execute(
        self, conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool
    ) -> None:
        if frames := _pendo_sync_frames():
            self.driver_sql.append(Executed(sql, backend_of(conn.engine), [], frames))


def as_redshift(engine: Engine) -> str:
    backend = backend_of(engine)
    return "redshift" if backend == "postgresql" else backend


def _pendo_sync_frames() -> list[traceback.FrameSummary]:
    stack = reversed(traceback.extract_stack())
    frames = [f for f in stack if Path(f.filename).resolve().is_relative_to(PACKAGE)]
    if not frames or Path(frames[0].filename).resolve().is_relative_to(NOT_PRODUCTION):
        return []
    return frames


# -- what Redshift would run, and what keeps it from running it --------------------------------------
# Where DuckDB reads a change set by rowid range (engine/changeset.py: no transaction open across the
# run's ledger writes): a scratch copy of the diff, its pages, the source table's rowid bound and pages.
DUCKDB_RANGED_READS = {"spooled_rows", "rowid_pages", "rowid_end"}


def redshift_equivalent(executed: Executed) -> Any | None:
    """The statement a Redshift engine runs in place of this one, or None for a DuckDB-only branch."""
    stmt = executed.statement
    if executed.backend == "duckdb" and executed.frames[0].name == "insert_columns":
        return None  # DuckDB's unnest insert; on Redshift `insert_columns` is the multi-row INSERT
    if executed.backend == "duckdb" and executed.frames[0].name in DUCKDB_RANGED_READS:
        # DuckDB reads a change set a rowid range at a time; Redshift streams the same SELECT instead.
        return stmt.selectable if isinstance(stmt, sa.schema.CreateTableAs) else None
    if isinstance(stmt, sa.TextClause) and "information_schema.columns" in stmt.text:
        filters = stmt.compile().params  # the expanding lists the statement was built with
        columns, _ = discovery_statements("redshift", filters.get("schemas"), filters.get("tables"))
        return columns
    return stmt


def compile_for_redshift(stmt: Any, rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    kwargs: dict[str, Any] = {"dialect": REDSHIFT}
    if not isinstance(stmt, sa.schema.ExecutableDDLElement):
        kwargs["compile_kwargs"] = {"render_postcompile": True}  # IN lists as one bound value per item
        if isinstance(stmt, sa.sql.dml.ValuesBase) and rows:
            kwargs["column_keys"] = list(rows[0])
    compiled = stmt.compile(**kwargs)
    return str(compiled), dict(getattr(compiled, "params", None) or {})


def sql_problems(sql: str, is_construct: bool, boolean_columns: Iterable[str] = ()) -> list[str]:
    """What keeps Redshift from running this SQL, or shows a value formatted into it."""
    problems = [why for pattern, why in FORBIDDEN if re.search(pattern, sql, re.I)]
    for column in boolean_columns:
        if re.search(rf'CAST\((?:[\w"]+\.)?"?{re.escape(column)}"?\s+AS\s+(?:VARCHAR|CHAR|TEXT)', sql, re.I):
            problems.append(
                f"CAST of boolean column {column!r} to VARCHAR: Redshift refuses it (42846 cannot cast type "
                "boolean to character varying); hash it as CASE WHEN col THEN 't' WHEN NOT col THEN 'f' END"
            )
    literals = set(STRING_LITERAL.findall(sql)) - (set() if is_construct else CATALOG_WORDS)
    if literals:
        problems.append(f"string literals {sorted(literals)} in the SQL: values must be bound parameters")
    if ID_OR_DATE.search(sql):
        problems.append("an id or a date is formatted into the SQL: values must be bound parameters")
    if is_construct:
        if BARE_TEXT_TYPE.search(sql):
            problems.append("VARCHAR without a length is VARCHAR(256) on Redshift and truncates")
        if numbers := NUMBER_LITERAL.findall(TYPE_ARGS.sub("", sql)):
            problems.append(f"numbers {numbers} formatted into the SQL: values must be bound parameters")
    return problems


def unquoted_names(stmt: Any, sql: str) -> list[str]:
    """Tables and columns of a construct whose Redshift-quoted spelling is missing from its SQL."""
    prep = REDSHIFT.identifier_preparer
    expected: set[str] = set()
    if isinstance(stmt, sa.schema.CreateTable):
        expected |= {prep.format_table(stmt.element), *(prep.quote(c.name) for c in stmt.element.columns)}
    elif not isinstance(stmt, sa.schema.ExecutableDDLElement):
        for element in visitors.iterate(stmt):
            if isinstance(element, sa.TableClause):
                expected.add(prep.format_table(element))
            elif isinstance(element, sa.ColumnClause) and not element.is_literal:
                expected.add(prep.quote(element.name))
    return sorted(name for name in expected if name not in sql)


def asks_for_returning(stmt: Any) -> bool:
    if not isinstance(stmt, sa.sql.dml.UpdateBase):
        return False
    return bool(stmt.returning_column_descriptions or getattr(stmt, "_return_defaults", False))


def report(problem: str, executed: Executed, sql: str) -> str:
    return f"{problem}\n    from: {executed.origin}\n    Redshift SQL: {' '.join(sql.split())}"


# -- the runs ---------------------------------------------------------------------------------------------
def run_like_dagster(
    world: World, spec: SyncSpec, store: StateStore | None = None, **options: Any
) -> SyncOutcome:
    """As defs/assets.execute_sync runs a sync (the CLI runs it the same way)."""
    return run_sync(
        spec, world.engine, store or world.store, world.client, world.delivery, RunOptions(**options)
    )


def separate_state_url(world: World, tmp_path: Path) -> str:
    """The ledger in a database other than the warehouse (a read-only warehouse), on the same backend."""
    if backend_of(world.engine) == "duckdb":
        return f"duckdb:///{tmp_path / 'state.duckdb'}"
    return f"{world.url}?application_name=pendo_sync_state"  # another URL, so another database to the engine


def exercise_pendo_sync(world: World, log: StatementLog, state_url: str) -> set[str]:
    """Drive every SQL-issuing path of pendo_sync; returns the ids and run ids its statements must bind."""
    accounts, visitors = world.spec("accounts"), world.spec("visitors")
    world.sql(f'CREATE SCHEMA "{QUOTED_SCHEMA}"')
    world.sql(QUOTED_SOURCE)
    quoted = dataclasses.replace(
        accounts,
        name="quoted_accounts",
        table=f"{QUOTED_SCHEMA}.{QUOTED_TABLE}",
        id_column="Account Id",
        replication_key="Updated At",
        fields=(
            FieldMapping("Plan", "plan", "string"),
            FieldMapping("user", "seats", "integer"),
            FieldMapping("Is Paying", "is_paying", "boolean"),
        ),
    )
    columns = "account_id, plan, seats, arr, health_score, is_paying, renewal_date, updated_at"
    by_query = dataclasses.replace(
        accounts, name="accounts_by_query", table=None, query=f"SELECT {columns} FROM accounts"
    )
    only_known = dataclasses.replace(
        visitors, name="known_visitors", existing_ids_only=True, existing_id_length=36
    )
    logged = dataclasses.replace(accounts, name="accounts_logged", change_log_retention_days=30)

    # Discovery (`pendo-sync discover`, the preflight) and `pendo-sync check` (a dry run).
    discover(world.engine)
    discover(world.engine, tables=["accounts", "visitors"])
    run_like_dagster(world, accounts, mode="incremental", dry_run=True)
    # `pendo-sync run` passes no column types (world.run); Dagster passes the preflight's.
    world.run("accounts", run_id="cli-full")
    run_like_dagster(world, visitors, mode="full")
    run_like_dagster(world, by_query, mode="full")
    run_like_dagster(world, quoted, mode="full")
    run_like_dagster(world, quoted, mode="incremental")
    run_like_dagster(world, only_known, mode="full")
    run_like_dagster(world, logged, mode="full")
    world.run("accounts", mode="incremental")
    world.run("accounts", mode="backfill", window=(dt.datetime(2026, 10, 5), dt.datetime(2026, 10, 12)))

    # Change the source: updates, deletes (accounts clears them, visitors forgets them), inserts.
    ids = [r[0] for r in world.sql("SELECT account_id FROM accounts ORDER BY account_id")]
    kept = [i for i in ids if world.emulator.values_of("account", i) is not None]
    changed, deleted = kept[:3], kept[3:5]
    world.sql("UPDATE accounts SET seats = 4242, plan = 'enterprise' WHERE account_id IN (:a, :b, :c)",
              a=changed[0], b=changed[1], c=changed[2])  # fmt: skip
    world.sql("DELETE FROM accounts WHERE account_id IN (:a, :b)", a=deleted[0], b=deleted[1])
    world.sql(
        "INSERT INTO accounts (account_id, plan, seats, is_paying, updated_at) VALUES "
        "('new-1', 'pro', 5, true, :t), ('new-2', 'free', 1, false, :t)",
        t=dt.datetime(2026, 11, 1),
    )
    world.emulator.add_ids("account", ["new-1", "new-2"])
    visitor_ids = [r[0] for r in world.sql("SELECT visitor_id FROM visitors ORDER BY visitor_id LIMIT 10")]
    gone = [i for i in visitor_ids if world.emulator.values_of("visitor", i) is not None][:2]
    world.sql("DELETE FROM visitors WHERE visitor_id IN (:a, :b)", a=gone[0], b=gone[1])
    assert world.run("accounts").counts["cleared"] == 2
    assert run_like_dagster(world, logged, mode="full").counts["cleared"] == 2  # the change log's fields
    assert run_like_dagster(world, visitors, mode="full").counts["deleted"] == 2
    refresh = world.run("visitors", full_refresh=True)
    world.store.versions.finish("visitors", refresh.version, "partial", None, refresh.counts)
    assert "continuing the full refresh" in world.run("visitors").slice  # the ledger's rows since it

    # Rejects retried by later runs, whatever their slice: every call of a run fails, then the next
    # incremental run and a backfill retry the rows by id; duplicate ids are rejected.
    world.emulator.inject_faults([Fault("status", status=500, count=world.delivery.max_attempts)])
    world.sql("UPDATE accounts SET seats = 77 WHERE account_id IN (:a, :b)", a=changed[0], b=changed[1])
    world.run("accounts", mode="full")
    world.emulator.clear_faults()
    world.run("accounts", mode="incremental")
    world.run("accounts", mode="backfill", window=(dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 2)))
    world.sql("CREATE TABLE accounts_twice AS SELECT * FROM accounts")
    world.sql("INSERT INTO accounts_twice SELECT * FROM accounts WHERE account_id = :a", a=changed[2])
    twice = dataclasses.replace(accounts, name="accounts_twice", table="accounts_twice")
    run_like_dagster(world, twice, mode="full")
    run_like_dagster(world, twice, mode="incremental")

    # State, as the CLI and Dagster read and change it.
    store = world.store
    store.versions.all("accounts")
    store.versions.get("accounts")
    store.versions.current_cursor("accounts")
    store.rejects.outstanding("accounts")
    store.rejects.outstanding("accounts", kind="missing", limit=5)
    store.rejects.count_by_kind("accounts")
    list(store.rejects.of_run("accounts", "cli-full"))
    store.ledger.rows("accounts")
    store.ledger.count("accounts")
    store.ledger.hashes("accounts", changed)
    store.rejects.flags_of("accounts", ids[:10], dt.datetime(2026, 1, 1))
    list(store.ledger.ids("accounts", 100))
    store.versions.revert_plan("accounts", 2)
    store.versions.revert("accounts", 2)
    world.run("accounts", mode="incremental")
    store.locks.acquire("accounts", "lock-check")
    store.locks.release("accounts", "lock-check")
    with store.lock("accounts", "lock-check"):
        pass
    store.locks.acquire("accounts", "lock-check")
    store.locks.release("accounts")
    store.versions.abandon_running("accounts")
    store.versions.record(
        "accounts", "import", "import", dt.datetime(2026, 10, 20), "imported from a Singer state"
    )

    # `pendo-sync verify`: a sample, and every record (with the ids Pendo lacks), repaired.
    world.emulator.remove_ids("account", [changed[2]])

    async def read_back(sample: int | None) -> None:
        async with world.client() as client:
            await verify(accounts, world.engine, store, client, sample, repair=True)

    asyncio.run(read_back(50))
    asyncio.run(read_back(None))

    # A read-only warehouse: the ledger elsewhere, so the change set and the delete check stream.
    separate = StateStore(make_engine(state_url), "pendo_sync_state")
    log.attach(separate.engine)
    run_like_dagster(world, accounts, separate, mode="full")
    run_like_dagster(world, only_known, separate, mode="full")
    world.emulator.inject_faults([Fault("status", status=500, count=world.delivery.max_attempts)])
    world.sql("UPDATE accounts SET seats = 78 WHERE account_id = :a", a=changed[1])
    run_like_dagster(world, accounts, separate, mode="full")
    world.emulator.clear_faults()
    run_like_dagster(world, accounts, separate, mode="incremental")
    world.sql("DELETE FROM accounts WHERE account_id = :a", a=changed[0])
    run_like_dagster(world, accounts, separate, mode="full")
    run_like_dagster(world, twice, separate, mode="full")
    separate.engine.dispose()

    # Asset metadata and the new-rows sensor.
    count_rows(world.engine, accounts)
    max_replication_key(
        world.engine, accounts, Slice("backfill", dt.datetime(2026, 10, 1), dt.datetime(2026, 10, 2))
    )
    days_with_rows_after(world.engine, accounts, None)
    days_with_rows_after(world.engine, accounts, dt.datetime(2026, 10, 20))
    # A replication key far in the future: the cursor stops before it (and the sensor's does).
    world.sql(
        "UPDATE accounts SET updated_at = :t WHERE account_id = :a", t=dt.datetime(9999, 1, 1), a=kept[6]
    )
    assert "later than a day from now" in world.run("accounts", mode="incremental").note
    days_with_rows_after(world.engine, accounts, dt.datetime(2026, 10, 20))
    return {*changed[:2], *deleted, "new-1", *gone, "cli-full", "lock-check"}


EXPECTED_CALLERS = {
    "ensure_schema", "migrate", "acquire", "release", "hold", "abandon_running", "begin", "finish", "record",
    "record_batch", "_next", "all", "get", "outstanding", "count_by_kind", "of_run", "rows", "count",
    "hashes", "flags_of", "retry_ids", "rejected_ids", "ids", "revert_plan", "revert", "clear_pendo_ids",
    "add_pendo_ids", "pendo_ids_among", "is_fresh", "discover", "describe_source", "max_replication_key",
    "count_changed", "changed_rows", "deleted_ids", "gone_rejects", "duplicates",
    "duplicated_ids", "stream_rows", "count_rows", "days_with_rows_after", "_field_hashes", "write_entries",
    "prune_change_log", "sample_ids", "seen_ids", "add", "unseen", "future_keys", "owed_refresh",
}  # fmt: skip


def test_every_statement_pendo_sync_runs_is_redshift_sql(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_of(world.engine)
    if backend == "postgresql":  # the state store takes Redshift's branches, on the PostgreSQL server
        for module in (tables, migrations, bulk, ledger, change_log):
            monkeypatch.setattr(module, "backend_of", as_redshift)
    log = StatementLog()
    log.attach(world.engine)
    bound_values = exercise_pendo_sync(world, log, separate_state_url(world, tmp_path))

    callers = {f.name for executed in (*log.statements, *log.driver_sql) for f in executed.frames}
    expected = EXPECTED_CALLERS | ({"lock_table", "insert_columns"} if backend == "postgresql" else set())
    assert not expected - callers, f"paths not exercised: {sorted(expected - callers)}"
    locks = [
        e for e in log.statements if isinstance(e.statement, sa.TextClause) and "LOCK" in e.statement.text
    ]
    assert bool(locks) == (backend == "postgresql")  # LOCK TABLE on the PostgreSQL family only

    catalog = discover(world.engine)
    boolean_columns = {
        c.name for t in catalog.tables for c in t.columns if c.data_type in ("boolean", "bool")
    }
    assert {"is_paying", "is_admin", "Is Paying"} <= boolean_columns
    prep = REDSHIFT.identifier_preparer
    store_tables = [
        t
        for store in (world.store, StateStore(world.engine, "pendo_sync_state"))
        for t in store.tables.metadata.sorted_tables
    ]
    lock_sql = {f"LOCK TABLE {prep.format_table(t)}" for t in store_tables}

    problems: dict[tuple[str, str], str] = {}  # one entry per (problem, distinct SQL)
    bound: set[Any] = set()
    compiled: list[str] = []
    for executed in log.statements:
        stmt = redshift_equivalent(executed)
        if stmt is None:
            continue
        try:
            sql, params = compile_for_redshift(stmt, executed.rows)
        except sa.exc.SQLAlchemyError as exc:
            problems[(type(exc).__name__, str(stmt))] = report(
                f"does not compile for Redshift: {exc}", executed, str(stmt)
            )
            continue
        compiled.append(sql)
        bound |= {*params.values(), *(v for row in executed.rows for v in row.values())} - {None}
        is_construct = not isinstance(stmt, sa.TextClause)
        found = sql_problems(sql, is_construct, boolean_columns)
        if is_construct:
            found += [f"{name} not quoted as Redshift needs" for name in unquoted_names(stmt, sql)]
            if asks_for_returning(stmt):  # the Redshift compiler drops RETURNING from a DELETE unsaid
                found.append("RETURNING (or return_defaults) requested: Redshift does not support it")
        elif "LOCK" in sql and sql.strip() not in lock_sql:
            found.append(f"LOCK not as Redshift's quoting spells it (one of {sorted(lock_sql)})")
        for problem in found:
            problems.setdefault((problem, sql), report(problem, executed, sql))
    if backend == "postgresql":  # what the PostgreSQL family really hands the driver
        for executed in log.driver_sql:
            for pattern, why in FORBIDDEN:
                if re.search(pattern, executed.statement, re.I):
                    problems.setdefault(
                        (why, executed.statement), report(f"sent: {why}", executed, executed.statement)
                    )

    # The checks saw real values (bound, not formatted) and names that need quoting (quoted).
    assert bound_values <= bound, f"never bound: {sorted(bound_values - bound)}"
    assert any(f'"{QUOTED_SCHEMA}"."{QUOTED_TABLE}"' in sql and 's."user"' in sql for sql in compiled)
    assert not problems, (
        f"{len(problems)} statements Redshift cannot run as pendo_sync sends them:\n\n"
        + "\n\n".join(problems.values())
    )


@pytest.mark.parametrize(
    ("schemas", "tables"),
    [
        (None, None),
        (["public", "Crm"], None),
        (None, ["accounts", "Account List"]),
        (["public"], ["accounts"]),
    ],
)
def test_redshift_discovery_reads_the_catalog_that_covers_late_binding_views(
    schemas: list[str] | None, tables: list[str] | None
) -> None:
    columns, keys = discovery_statements("redshift", schemas, tables)
    columns_sql, columns_params = compile_for_redshift(columns, [])
    keys_sql, keys_params = compile_for_redshift(keys, [])
    # information_schema.columns leaves late-binding views out; svv_columns lists their columns.
    assert (
        re.search(r"\bFROM svv_columns AS c\b", columns_sql)
        and "information_schema.columns" not in columns_sql
    )
    assert re.search(r"\bJOIN svv_tables AS t\b", columns_sql)
    for sql in (columns_sql, keys_sql):
        assert not sql_problems(sql, is_construct=False), sql
    expected = {*(SYSTEM_SCHEMAS if schemas is None else schemas), *(tables or [])}
    assert set(columns_params.values()) == set(keys_params.values()) == expected


def test_redshift_session_statements_are_plain_sets_of_validated_values() -> None:
    """engines.py runs these on each new connection through the DBAPI cursor, out of SQLAlchemy's sight."""
    host = "etl@analytics.abc123xyz.us-east-1.redshift.amazonaws.com:5439/dev"
    settings = connection_settings(make_url(f"redshift+psycopg2://{host}?query_group=pendo.sync-1"))
    assert [s.split(" TO ")[0] for s in settings.session_sql] == ["SET statement_timeout", "SET query_group"]
    for statement in settings.session_sql:
        assert not [p for p in sql_problems(statement, is_construct=False) if "literal" not in p], statement
    # The two values formatted into these SETs are checked first, so nothing else can get in.
    for bad in ("statement_timeout=1;DROP TABLE x", "query_group=x';DROP TABLE x;--"):
        with pytest.raises(WarehouseUrlError):
            connection_settings(make_url(f"redshift+psycopg2://{host}?{bad}"))
