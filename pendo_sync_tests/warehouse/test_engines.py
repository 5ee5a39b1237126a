"""How pendo_sync connects: on Redshift TLS verified against Amazon's CA, a query group, a statement timeout,
optional IAM login with temporary credentials (moto); on PostgreSQL the same session settings, for real.

The Redshift cases stop at the driver: a `do_connect` listener, added after make_engine's own, records the
arguments psycopg2 would be given and raises instead of connecting."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws

from pendo_sync.warehouse import engines
from pendo_sync.warehouse.engines import (
    DEFAULT_STATEMENT_TIMEOUT_MS,
    WarehouseUrlError,
    connection_settings,
    make_engine,
    normalize_url,
)
from pendo_sync.warehouse.errors import WarehouseError

CLUSTER_HOST = "examplecluster.abc123xyz789.eu-west-1.redshift.amazonaws.com"


class _Stopped(Exception):
    pass


def driver_arguments(url: str, password: str | None = None) -> dict[str, Any]:
    """The keyword arguments the DBAPI driver would receive for a first connection to `url`."""
    engine = make_engine(url, password=password)
    seen: dict[str, Any] = {}

    @sa.event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise _Stopped

    with pytest.raises(_Stopped):
        engine.connect()
    return seen


def test_redshift_defaults_verify_tls_name_the_load_and_bound_statements():
    args = driver_arguments(f"redshift+psycopg2://pendo_sync@{CLUSTER_HOST}:5439/analytics", password="pw")
    assert args["sslmode"] == "verify-full"
    assert args["sslrootcert"].endswith("redshift-ca-bundle.crt")
    assert args["application_name"] == "pendo_sync"
    assert (args["user"], args["password"], args["dbname"]) == ("pendo_sync", "pw", "analytics")
    settings = connection_settings(normalize_url(f"redshift://pendo_sync@{CLUSTER_HOST}:5439/analytics"))
    assert settings.session_sql == [
        f"SET statement_timeout TO {DEFAULT_STATEMENT_TIMEOUT_MS}",
        "SET query_group TO 'pendo_sync'",
    ]
    assert settings.iam is None


def test_redshift_url_overrides_reach_the_session_and_never_the_driver():
    url = (
        f"redshift+psycopg2://pendo_sync@{CLUSTER_HOST}:5439/analytics"
        "?sslmode=require&statement_timeout=600000&query_group=etl_low&application_name=pendo_sync_prod"
    )
    args = driver_arguments(url)
    assert args["sslmode"] == "require"
    assert args["application_name"] == "pendo_sync_prod"
    assert "statement_timeout" not in args and "query_group" not in args
    settings = connection_settings(normalize_url(url))
    assert settings.session_sql == ["SET statement_timeout TO 600000", "SET query_group TO 'etl_low'"]


@mock_aws
def test_redshift_iam_login_takes_temporary_credentials_for_each_connection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("redshift", region_name="eu-west-1").create_cluster(
        ClusterIdentifier="examplecluster",
        NodeType="ra3.xlplus",
        MasterUsername="admin",
        MasterUserPassword="Admin-pass-1",
    )
    url = f"redshift+psycopg2://pendo_sync@{CLUSTER_HOST}:5439/analytics?iam=true"
    first, second = driver_arguments(url), driver_arguments(url)
    assert first["user"] == "IAM:pendo_sync"  # what GetClusterCredentials answers for DbUser pendo_sync
    assert len(first["password"]) == 32 and first["password"] != second["password"]
    assert not {"iam", "cluster_identifier", "region"} & set(first)
    assert first["sslmode"] == "verify-full"


@mock_aws
def test_redshift_iam_without_permission_or_cluster_says_what_to_grant(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    url = f"redshift+psycopg2://pendo_sync@{CLUSTER_HOST}:5439/analytics?iam=true"
    with pytest.raises(WarehouseUrlError) as raised:
        make_engine(url).connect()
    assert str(raised.value) == (
        "cannot get temporary Redshift credentials for user 'pendo_sync' on cluster 'examplecluster' "
        "(ClusterNotFound); allow the task role redshift:GetClusterCredentials on "
        "dbuser:examplecluster/pendo_sync and dbname:examplecluster/analytics, or drop ?iam=true and give "
        "the password instead"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redshift://pendo_sync@10.0.0.5:5439/analytics?iam=true",
            "iam=true needs the database user and name in the URL and the cluster: "
            "redshift+psycopg2://<db user>@<cluster endpoint>:5439/<database>?iam=true"
            "[&cluster_identifier=<cluster>&region=<region>] (Redshift Serverless: use a password secret)",
        ),
        (
            "redshift://pendo_sync@host:5439/analytics?statement_timeout=1h",
            "statement_timeout='1h' in the warehouse URL is not a whole number of milliseconds; "
            "use e.g. ?statement_timeout=3600000 (0 turns the timeout off)",
        ),
        (
            "redshift://pendo_sync@host:5439/analytics?query_group=x';drop",
            'query_group="x\';drop" in the warehouse URL: use up to 64 letters, digits and _ . : -',
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/postgres?query_group=etl",
            "query_group in the warehouse URL only apply to Redshift (redshift+psycopg2://); remove them",
        ),
    ],
)
def test_bad_connection_settings_are_refused_with_the_fix(url: str, message: str):
    with pytest.raises(WarehouseUrlError) as raised:
        connection_settings(normalize_url(url))
    assert str(raised.value) == message


@pytest.mark.postgres
def test_postgres_sessions_carry_the_timeout_application_name_and_whole_result_plans(pg_url: str):
    for url, timeout in ((pg_url, "1h"), (f"{pg_url}?statement_timeout=5000", "5s")):
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == timeout
                assert conn.execute(sa.text("SHOW application_name")).scalar() == "pendo_sync"
                # Streamed reads are read to the end: no fast-start plans for them.
                assert conn.execute(sa.text("SHOW cursor_tuple_fraction")).scalar() == "1"
        finally:
            engine.dispose()


def test_password_from_a_secret_replaces_the_urls_own():
    engine = make_engine("postgresql://pendo_sync:old@db.internal:5432/state", password="from-secret")
    assert engine.url.password == "from-secret"
    assert "from-secret" not in repr(engine.url) and "from-secret" not in str(engine.url)


HOLD = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def hold_duckdb_file(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open (a run, the Dagster daemon's sensor tick)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_duckdb_file_another_process_has_open_is_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "warehouse.duckdb"
    holder = hold_duckdb_file(path, 1.5)
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="pendo_sync"),
        make_engine(f"duckdb:///{path}").connect() as conn,
    ):
        assert conn.execute(sa.text("SELECT 42")).scalar() == 42
    assert time.monotonic() - started >= 1.0
    assert holder.wait(timeout=10) == 0
    assert caplog.messages == [
        f"waiting for the DuckDB file {path}: another process (PID {holder.pid}) has it open, and DuckDB "
        "lets one process at a time open a file"
    ]


def test_a_duckdb_file_held_past_the_wait_fails_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(engines, "DUCKDB_LOCK_WAIT_SECONDS", 0.5)
    path = tmp_path / "warehouse.duckdb"
    holder = hold_duckdb_file(path, 60)
    try:
        with pytest.raises(WarehouseError) as info:
            make_engine(f"duckdb:///{path}").connect()
    finally:
        holder.kill()
        holder.wait()
    assert str(info.value) == (
        f"the DuckDB file {path} stayed open in another process (PID {holder.pid}) for 0.5 s, and DuckDB lets "
        "one process at a time open a file; let that process finish (another run, a sensor tick) or stop it, "
        "or put the warehouse on PostgreSQL to run syncs at once"
    )


def test_a_duckdb_file_under_a_path_that_is_a_file_is_a_usage_error(tmp_path):
    """PENDO_SYNC_HOME set to a file was an internal error (FileExistsError)."""
    import pytest

    from pendo_sync.errors import UsageError
    from pendo_sync.warehouse.engines import make_engine

    taken = tmp_path / "afile"
    taken.write_text("")
    with pytest.raises(UsageError) as raised:
        make_engine(f"duckdb:///{taken}/warehouse.duckdb")
    assert str(raised.value) == (
        f"cannot make the directory {taken} for the DuckDB file {taken}/warehouse.duckdb (a file is in the "
        "way); point PENDO_SYNC_HOME, or the duckdb:/// URL, at a directory"
    )
