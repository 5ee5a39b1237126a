"""Catalog discovery on real DuckDB and PostgreSQL warehouses, and the Redshift SQL compiled with its dialect."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy_redshift.dialect import RedshiftDialect_psycopg2

from pendo_sync.warehouse.catalog import (
    SYSTEM_SCHEMAS,
    Catalog,
    Column,
    Table,
    describe_table,
    discover,
    discovery_statements,
    json_schema_type,
    to_singer_catalog,
)
from pendo_sync.warehouse.engines import backend_of, make_engine

DDL = [
    "CREATE SCHEMA crm",
    "CREATE SCHEMA pendo_sync",
    """CREATE TABLE accounts (
        account_id INTEGER PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        is_paying BOOLEAN,
        mrr NUMERIC(12, 2),
        score DOUBLE PRECISION,
        signed_up DATE,
        updated_at TIMESTAMP NOT NULL,
        seen_at TIMESTAMP WITH TIME ZONE
    )""",
    """CREATE TABLE crm.contacts (
        tenant VARCHAR(20) NOT NULL,
        contact_id BIGINT NOT NULL,
        email VARCHAR,
        updated_at TIMESTAMP,
        PRIMARY KEY (contact_id, tenant)
    )""",
    "CREATE TABLE crm.accounts (crm_id INTEGER)",
    "CREATE VIEW paying_accounts AS SELECT account_id, name, updated_at FROM accounts WHERE is_paying",
    "CREATE TABLE pendo_sync.ledger (record_id VARCHAR PRIMARY KEY)",
]

# What each backend reports for the DDL above, in column order.
ACCOUNTS_TYPES = {
    "postgresql": ["integer", "character varying", "boolean", "numeric", "double precision", "date",
                   "timestamp without time zone", "timestamp with time zone"],
    "duckdb": ["integer", "varchar", "boolean", "decimal(12,2)", "double", "date", "timestamp",
               "timestamp with time zone"],
}  # fmt: skip
CONTACTS_TYPES = {
    "postgresql": ["character varying", "bigint", "character varying", "timestamp without time zone"],
    "duckdb": ["varchar", "bigint", "varchar", "timestamp"],
}
DEFAULT_SCHEMA = {"postgresql": "public", "duckdb": "main"}


def run(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


@pytest.fixture
def engine(warehouse_url: str) -> Engine:
    engine = make_engine(warehouse_url)
    run(engine, *DDL)
    return engine


def test_discover_reports_columns_keys_views_and_schemas(engine: Engine) -> None:
    backend, default = backend_of(engine), DEFAULT_SCHEMA[backend_of(engine)]
    catalog = discover(engine)
    # ordered by (schema, table); the state schema is left out
    assert [t.qualified for t in catalog.tables] == sorted(
        ["crm.accounts", "crm.contacts", f"{default}.accounts", f"{default}.paying_accounts"]
    )
    accounts = catalog.find(f"{default}.accounts")
    names = ["account_id", "name", "is_paying", "mrr", "score", "signed_up", "updated_at", "seen_at"]
    nullable = [False, False, True, True, True, True, False, True]
    assert accounts == Table(
        default,
        "accounts",
        tuple(
            Column(n, t, null, i)
            for i, (n, t, null) in enumerate(zip(names, ACCOUNTS_TYPES[backend], nullable, strict=True), 1)
        ),
        key_columns=("account_id",),
        is_view=False,
    )
    assert accounts.replication_key_candidates == ("signed_up", "updated_at", "seen_at")
    assert accounts.column("mrr") == Column("mrr", ACCOUNTS_TYPES[backend][3], True, 4)
    assert accounts.column("missing") is None

    contacts = catalog.find("crm.contacts")
    assert contacts is not None
    assert [(c.name, c.data_type, c.nullable) for c in contacts.columns] == list(
        zip(["tenant", "contact_id", "email", "updated_at"], CONTACTS_TYPES[backend], [False, False, True, True],
            strict=True)
    )  # fmt: skip
    assert contacts.key_columns == ("contact_id", "tenant")  # key order, not column order
    assert (contacts.is_view, contacts.replication_key_candidates) == (False, ("updated_at",))

    view = catalog.find("paying_accounts")
    assert view is not None
    assert (view.schema, view.is_view, view.key_columns) == (default, True, ())
    assert [(c.name, c.position) for c in view.columns] == [("account_id", 1), ("name", 2), ("updated_at", 3)]
    assert view.replication_key_candidates == ("updated_at",)


def test_find_by_qualified_and_bare_name(engine: Engine) -> None:
    catalog = discover(engine)
    default = DEFAULT_SCHEMA[backend_of(engine)]
    bare = catalog.find("accounts")  # in two schemas: the default one wins
    assert bare is not None and bare.qualified == f"{default}.accounts"
    crm = catalog.find("crm.accounts")
    assert crm is not None and [c.name for c in crm.columns] == ["crm_id"]
    contacts = catalog.find("contacts")  # only in crm
    assert contacts is not None and contacts.schema == "crm"
    assert catalog.find("public.contacts") is None
    assert catalog.find("nope") is None and catalog.find("crm.nope") is None
    assert Catalog(()).find("accounts") is None


def test_discover_filters_schemas_and_tables(engine: Engine) -> None:
    assert [t.qualified for t in discover(engine, schemas=["crm"]).tables] == ["crm.accounts", "crm.contacts"]
    default = DEFAULT_SCHEMA[backend_of(engine)]
    by_name = discover(engine, tables=["accounts", "paying_accounts"])
    assert [t.qualified for t in by_name.tables] == sorted(
        ["crm.accounts", f"{default}.accounts", f"{default}.paying_accounts"]
    )
    # the state schema only when asked for by name
    state = discover(engine, schemas=["pendo_sync"])
    assert [(t.qualified, t.key_columns) for t in state.tables] == [("pendo_sync.ledger", ("record_id",))]
    assert discover(engine, schemas=[]).tables == () and discover(engine, tables=[]).tables == ()
    assert discover(engine, schemas=["no_such_schema"]).tables == ()


def test_describe_table(engine: Engine) -> None:
    default = DEFAULT_SCHEMA[backend_of(engine)]
    assert describe_table(engine, "accounts") == discover(engine).find(f"{default}.accounts")
    contacts = describe_table(engine, "crm.contacts")
    assert contacts is not None and contacts.key_columns == ("contact_id", "tenant")
    view = describe_table(engine, "paying_accounts")
    assert view is not None and view.is_view
    ledger = describe_table(engine, "pendo_sync.ledger")
    assert ledger is not None and [c.name for c in ledger.columns] == ["record_id"]
    assert describe_table(engine, "ledger") is None  # bare names do not look in the state schema
    assert describe_table(engine, "missing") is None
    assert describe_table(engine, "crm.missing") is None
    assert describe_table(engine, "no_such_schema.accounts") is None


def test_fingerprint_changes_with_the_shape_only(engine: Engine) -> None:
    def fingerprint() -> str:
        table = describe_table(engine, "crm.contacts")
        assert table is not None
        return table.fingerprint()

    first = fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    run(
        engine,
        "INSERT INTO crm.contacts VALUES ('t1', 1, 'a@example.com', TIMESTAMP '2026-01-02 03:04:05')",
        "CREATE TABLE crm.other (x INTEGER)",
        "CREATE VIEW crm.contacts_view AS SELECT * FROM crm.contacts",
    )
    assert fingerprint() == first  # rows, other tables and views do not count

    run(engine, "ALTER TABLE crm.contacts ADD COLUMN plan VARCHAR")
    added = fingerprint()
    assert added != first

    run(engine, "CREATE TABLE crm.scored (n INTEGER, seen TIMESTAMP)")
    before = describe_table(engine, "crm.scored")
    run(engine, "ALTER TABLE crm.scored ALTER COLUMN n TYPE BIGINT")
    after = describe_table(engine, "crm.scored")
    assert before is not None and after is not None
    assert after.column("n") == Column("n", "bigint", True, 1)
    assert after.fingerprint() != before.fingerprint()
    assert fingerprint() == added

    # the fingerprint is the shape: the same columns elsewhere give the same value
    same = Table(
        "x", "y", (Column("n", "bigint", True, 1), Column("seen", after.columns[1].data_type, True, 2))
    )
    assert same.fingerprint() == after.fingerprint()


def test_singer_catalog_of_one_table(engine: Engine) -> None:
    backend = backend_of(engine)
    varchar, bigint, _, timestamp = CONTACTS_TYPES[backend]
    contacts = describe_table(engine, "crm.contacts")
    assert contacts is not None
    assert to_singer_catalog(Catalog((contacts,)), "analytics") == {
        "streams": [
            {
                "tap_stream_id": "analytics-crm-contacts",
                "stream": "contacts",
                "table_name": "contacts",
                "schema": {
                    "type": "object",
                    "properties": {
                        "tenant": {"type": "string"},
                        "contact_id": {"type": "integer"},
                        "email": {"type": ["null", "string"]},
                        "updated_at": {"type": ["null", "string"], "format": "date-time"},
                    },
                },
                "metadata": [
                    {
                        "breadcrumb": [],
                        "metadata": {
                            "schema-name": "crm",
                            "database-name": "analytics",
                            "is-view": False,
                            "table-key-properties": ["contact_id", "tenant"],
                            "valid-replication-keys": ["updated_at"],
                            "selected": False,
                        },
                    },
                    {
                        "breadcrumb": ["properties", "tenant"],
                        "metadata": {
                            "sql-datatype": varchar,
                            "inclusion": "automatic",
                            "selected-by-default": True,
                        },
                    },
                    {
                        "breadcrumb": ["properties", "contact_id"],
                        "metadata": {
                            "sql-datatype": bigint,
                            "inclusion": "automatic",
                            "selected-by-default": True,
                        },
                    },
                    {
                        "breadcrumb": ["properties", "email"],
                        "metadata": {
                            "sql-datatype": varchar,
                            "inclusion": "available",
                            "selected-by-default": True,
                        },
                    },
                    {
                        "breadcrumb": ["properties", "updated_at"],
                        "metadata": {
                            "sql-datatype": timestamp,
                            "inclusion": "available",
                            "selected-by-default": True,
                        },
                    },
                ],
            }
        ]
    }


def test_singer_catalog_of_the_whole_warehouse(engine: Engine) -> None:
    singer = to_singer_catalog(discover(engine), "analytics")
    default = DEFAULT_SCHEMA[backend_of(engine)]
    assert [s["tap_stream_id"] for s in singer["streams"]] == sorted(
        ["analytics-crm-accounts", "analytics-crm-contacts", f"analytics-{default}-accounts",
         f"analytics-{default}-paying_accounts"]
    )  # fmt: skip
    view = next(s for s in singer["streams"] if s["stream"] == "paying_accounts")
    assert view["metadata"][0]["metadata"]["is-view"] is True
    assert view["schema"]["properties"]["account_id"] == {"type": ["null", "integer"]}


@pytest.mark.parametrize(
    ("data_type", "nullable", "expected"),
    [
        ("integer", False, {"type": "integer"}),
        ("bigint", True, {"type": ["null", "integer"]}),
        ("smallint", False, {"type": "integer"}),
        ("hugeint", False, {"type": "integer"}),
        ("numeric", False, {"type": "number"}),
        ("numeric(18,0)", True, {"type": ["null", "number"]}),
        ("decimal(12,2)", False, {"type": "number"}),
        ("double precision", False, {"type": "number"}),
        ("double", False, {"type": "number"}),
        ("real", False, {"type": "number"}),
        ("float", False, {"type": "number"}),
        ("boolean", True, {"type": ["null", "boolean"]}),
        ("character varying", False, {"type": "string"}),
        ("character varying(256)", False, {"type": "string"}),
        ("varchar", True, {"type": ["null", "string"]}),
        ("text", False, {"type": "string"}),
        ("uuid", False, {"type": "string"}),
        ("timestamp without time zone", False, {"type": "string", "format": "date-time"}),
        ("timestamp with time zone", True, {"type": ["null", "string"], "format": "date-time"}),
        ("timestamp", False, {"type": "string", "format": "date-time"}),
        ("TIMESTAMP_NS", False, {"type": "string", "format": "date-time"}),
        ("date", True, {"type": ["null", "string"], "format": "date"}),
        ("time without time zone", False, {"type": "string"}),
        ("jsonb", False, {"type": "string"}),
    ],
)
def test_json_schema_type(data_type: str, nullable: bool, expected: dict[str, Any]) -> None:
    assert json_schema_type(data_type, nullable) == expected


def test_replication_key_candidates_follow_position_not_declaration() -> None:
    table = Table(
        "s",
        "t",
        (
            Column("b", "date", True, 1),
            Column("id", "integer", False, 2),
            Column("a", "timestamp with time zone", True, 3),
            Column("t", "time without time zone", True, 4),
        ),
    )
    assert table.replication_key_candidates == ("b", "a")


def _redshift_sql(statement: sa.TextClause) -> tuple[str, dict[str, Any]]:
    compiled = statement.compile(
        dialect=RedshiftDialect_psycopg2(), compile_kwargs={"render_postcompile": True}
    )
    return str(compiled), dict(compiled.params)


def test_redshift_statements_compile_with_bound_parameters() -> None:
    columns, keys = discovery_statements("redshift", schemas=["crm", "sales"], tables=["contacts"])
    sql, params = _redshift_sql(columns)
    assert "FROM svv_columns AS c" in sql and "JOIN svv_tables AS t" in sql
    assert "information_schema.columns" not in sql
    assert "c.table_schema IN (%(schemas_1)s, %(schemas_2)s)" in sql
    assert "c.table_name IN (%(tables_1)s)" in sql
    assert sql.rstrip().endswith("ORDER BY c.table_schema, c.table_name, c.ordinal_position")
    assert params == {"schemas_1": "crm", "schemas_2": "sales", "tables_1": "contacts"}
    assert "'crm'" not in sql and "'contacts'" not in sql  # values are never in the text

    sql, params = _redshift_sql(keys)
    assert "FROM information_schema.table_constraints AS tc" in sql
    assert "JOIN information_schema.key_column_usage AS k" in sql
    assert "k.table_schema IN (%(schemas_1)s, %(schemas_2)s)" in sql
    assert params == {"schemas_1": "crm", "schemas_2": "sales", "tables_1": "contacts"}

    columns, _ = discovery_statements("redshift")  # every schema but the system ones
    sql, params = _redshift_sql(columns)
    assert "c.table_schema NOT IN (%(excluded_schemas_1)s" in sql and "table_name IN" not in sql
    assert sorted(params.values()) == sorted(SYSTEM_SCHEMAS)


def test_postgres_and_duckdb_share_the_information_schema_statement() -> None:
    for backend in ("postgresql", "duckdb"):
        columns, keys = discovery_statements(backend, tables=["accounts"])
        assert "FROM information_schema.columns AS c" in str(columns) and "svv_" not in str(columns)
        assert str(keys) == str(discovery_statements("redshift", tables=["accounts"])[1])
