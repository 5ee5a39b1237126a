"""Production on AWS, for real against moto's server and the local PostgreSQL: the Pendo key and database
passwords from Secrets Manager, run archives in S3 read back as Parquet, the grants and commands of
docs/DEPLOY.md, and deploy/dagster.yaml loaded by Dagster itself."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._core.instance.config import dagster_instance_config
from dagster._core.utils import parse_env_var
from sqlalchemy.engine import Engine, make_url

from pendo_sync.config import load_config
from pendo_sync.dagster.alerts import Alert, AlertsResource, alerts_from_env
from pendo_sync.dagster.build import build_definitions
from pendo_sync.dagster.resources import build_resources
from pendo_sync.errors import UsageError
from pendo_sync.secrets import SecretUnavailable, read_secret
from pendo_sync.settings import integration_key
from pendo_sync_tests.dagster.conftest import SlackServer
from pendo_sync_tests.world import ACCOUNTS, World, run_partition_range

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = (ROOT / "docs" / "DEPLOY.md").read_text()
BIN = Path(sys.executable).parent
REGION = "eu-west-1"


# -- moto ----------------------------------------------------------------------------------------------
@dataclass
class MotoAws:
    endpoint_url: str
    region: str = REGION

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def secret(self, value: str) -> str:
        """A new secret holding `value`; its name."""
        name = f"pendo-sync/test-{uuid.uuid4().hex[:12]}"
        self.client("secretsmanager").create_secret(Name=name, SecretString=value)
        return name

    def bucket(self) -> str:
        name = f"pendo-sync-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
        )
        return name

    def keys(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]

    def parquet(self, uri: str) -> pd.DataFrame:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return pd.read_parquet(io.BytesIO(body))


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> MotoAws:
    """moto's server for every boto3 client of this process (AWS_ENDPOINT_URL), with fake credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return MotoAws(moto_endpoint)


def defs_with(world: World, monkeypatch: pytest.MonkeyPatch, **env: str) -> dg.Definitions:
    """Definitions on the world's warehouse and emulator, plus these variables (the rest unset)."""
    for name in (
        "PENDO_INTEGRATION_KEY",
        "PENDO_INTEGRATION_KEY_SECRET_ID",
        "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID",
        "PENDO_SYNC_STATE_URL",
        "PENDO_SYNC_STATE_PASSWORD_SECRET_ID",
        "PENDO_SYNC_ARCHIVE_S3_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_definitions(world.config)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        e.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def run_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(record) for record in instance.all_logs(run_id))


def days_around(action: Any) -> tuple[Any, set[str]]:
    """Run `action`; the UTC dates it may have stamped (two, across midnight)."""
    before = dt.datetime.now(dt.UTC).date()
    out = action()
    return out, {f"{before:%Y-%m-%d}", f"{dt.datetime.now(dt.UTC).date():%Y-%m-%d}"}


def doc_block(marker: str) -> str:
    """The fenced block that follows `<!-- tested: marker -->` in docs/DEPLOY.md."""
    found = re.search(rf"<!-- tested: {re.escape(marker)} -->\n```\w*\n(.*?)```", DOCS, re.S)
    assert found, f"docs/DEPLOY.md lost its block marked {marker!r}"
    return found.group(1)


# -- secrets and archives through a materialization ----------------------------------------------------
def test_key_from_secrets_manager_and_archives_in_s3_through_a_materialization(
    world: World, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    key = f"key-from-secrets-manager-{uuid.uuid4().hex}"
    world.emulator.settings.integration_key = key  # the emulator answers 401 to any other key
    password = f"pw-{uuid.uuid4().hex}"
    bucket = aws.bucket()
    env = {
        "PENDO_INTEGRATION_KEY": "a-stale-key-the-secret-overrides",
        "PENDO_INTEGRATION_KEY_SECRET_ID": aws.secret(key),
        "PENDO_SYNC_ARCHIVE_S3_URI": f"s3://{bucket}/pendo_sync/archive",
    }
    if world.url.startswith("postgresql"):
        # As Redshift stores a managed secret: JSON with the password under "password".
        env["PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID"] = aws.secret(
            json.dumps({"username": "postgres", "password": password, "engine": "postgres"})
        )
    defs = defs_with(world, monkeypatch, **env)
    with dg.instance_for_test() as instance:
        result, days = days_around(
            lambda: defs.resolve_job_def("sync_all").execute_in_process(instance=instance)
        )
        assert result.success
        log_text = run_log_text(instance, result.run_id)
    assert key not in log_text and password not in log_text
    assert world.emulator.stats()["records_updated"] > 0  # writes went through, so with the secret's key
    mats = materializations(result)
    for sync in ("accounts", "visitors"):
        meta = mats[f"pendo/{sync}"]
        assert key not in str(meta)
        found = {}
        for table, folder in (("rejects", "rejects"), ("report", "reports")):
            uri = meta[f"archive_{table}"]
            match = re.fullmatch(
                rf"s3://{bucket}/pendo_sync/archive/{folder}/sync={sync}/date=(\d{{4}}-\d\d-\d\d)/"
                rf"{result.run_id}\.parquet",
                uri,
            )
            assert match and match.group(1) in days, uri
            found[table] = aws.parquet(uri)
        rejects, report = found["rejects"], found["report"]
        stored = [r for r in world.store.rejects.outstanding(sync) if r["run_id"] == result.run_id]
        assert len(rejects) == meta["missing"] + meta["rejected"] == len(stored) > 0
        assert sorted(rejects.record_id) == sorted(r["record_id"] for r in stored)
        assert dict(zip(rejects.record_id, rejects.reason, strict=True)) == {
            r["record_id"]: r["reason"] for r in stored
        }
        assert set(rejects.sync_name) == {sync} and set(rejects.run_id) == {result.run_id}
        assert str(rejects.rejected_at.dtype) == "datetime64[us, UTC]"
        (row,) = report.to_dict("records")
        assert (row["sync"], row["asset"], row["partition"], row["run_id"]) == (
            sync,
            f"pendo/{sync}",
            "",
            result.run_id,
        )
        assert (row["status"], row["state_version"]) == (meta["status"], meta["state_version"])
        for counter in ("rows_read", "sent", "updated", "missing", "rejected", "calls"):
            assert row[counter] == meta[counter], counter
        assert json.loads(row["counts_json"])["rows_read"] == meta["rows_read"]
    assert mats["pendo/accounts"]["rows_read"] == ACCOUNTS
    assert sorted(aws.keys(bucket)) == sorted(
        m[f"archive_{t}"].removeprefix(f"s3://{bucket}/")
        for m in mats.values()
        for t in ("rejects", "report")
    )


def test_a_backfill_range_is_archived_once_with_its_partition_range(
    duckdb_world: World, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    bucket = aws.bucket()
    defs = defs_with(
        world, monkeypatch, PENDO_INTEGRATION_KEY=world.key, PENDO_SYNC_ARCHIVE_S3_URI=f"s3://{bucket}"
    )
    with dg.instance_for_test() as instance:
        result = run_partition_range(defs, instance, ["pendo", "visitors_daily"], "2026-10-03", "2026-10-05")
        assert result.success
    keys = aws.keys(bucket)
    assert len(keys) == 2 and all(k.endswith(f"/{result.run_id}.parquet") for k in keys)
    (report_key,) = [k for k in keys if k.startswith("reports/sync=visitors/date=")]
    (row,) = aws.parquet(f"s3://{bucket}/{report_key}").to_dict("records")
    assert (row["asset"], row["partition"], row["mode"]) == (
        "pendo/visitors_daily",
        "2026-10-03..2026-10-05",
        "backfill",
    )


def test_an_archive_that_cannot_be_written_is_a_warning_not_a_failed_sync(
    duckdb_world: World, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    defs = defs_with(
        world,
        monkeypatch,
        PENDO_INTEGRATION_KEY=world.key,
        PENDO_SYNC_ARCHIVE_S3_URI=f"s3://{bucket}/archive",
    )
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(instance=instance)
    assert result.success
    meta = materializations(result)["pendo/accounts"]
    assert "archive_rejects" not in meta
    assert re.fullmatch(
        rf"run archive not written to s3://{bucket}/archive/rejects/sync=accounts/date=\d{{4}}-\d\d-\d\d/"
        rf"{result.run_id}\.parquet: NoSuchBucket; create the bucket, or correct PENDO_SYNC_ARCHIVE_S3_URI",
        meta["archive_error"],
    )
    assert world.store.ledger.count("accounts") == ACCOUNTS - ACCOUNTS // 50


def test_a_malformed_archive_uri_fails_the_code_location_load(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PENDO_SYNC_ARCHIVE_S3_URI", "acme-pendo-sync/archive")
    with pytest.raises(ValueError) as raised:
        build_definitions(load_config())
    assert str(raised.value) == (
        "PENDO_SYNC_ARCHIVE_S3_URI='acme-pendo-sync/archive' is not an S3 location; use s3://<bucket>[/<prefix>]"
    )


# -- secrets: failures and forms -----------------------------------------------------------------------
def missing_key_message(name: str) -> str:
    return (
        f"the Pendo integration key cannot be read from AWS Secrets Manager secret '{name}' "
        f"(set by PENDO_INTEGRATION_KEY_SECRET_ID): ResourceNotFoundException. Create it in region {REGION} "
        f"(aws secretsmanager create-secret --name {name} --secret-string ...), or point "
        "PENDO_INTEGRATION_KEY_SECRET_ID at the right name or ARN"
    )


def test_a_missing_secret_stops_the_run_at_start_naming_the_secret_and_the_fix(
    duckdb_world: World, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    name = f"pendo-sync/missing-{uuid.uuid4().hex[:8]}"
    defs = defs_with(world, monkeypatch, PENDO_INTEGRATION_KEY_SECRET_ID=name)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success
        failures = [
            e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.is_failure
        ]
    text = "\n".join(str(e) for e in failures)
    assert missing_key_message(name) in text
    assert result.get_asset_materialization_events() == []
    assert world.emulator.stats()["records_received"] == 0  # nothing was sent


def test_the_documented_missing_secret_message_is_the_real_one(aws: MotoAws):
    documented = re.search(r"```\n(the Pendo integration key cannot be read.*?)```", DOCS, re.S)
    assert documented
    with pytest.raises(SecretUnavailable) as raised:
        read_secret(
            "pendo-sync/pendo-integration-key",
            "the Pendo integration key",
            "PENDO_INTEGRATION_KEY_SECRET_ID",
            "integration_key",
        )
    assert (
        " ".join(documented.group(1).split())
        == str(raised.value)
        == missing_key_message("pendo-sync/pendo-integration-key")
    )


@pytest.mark.parametrize(
    ("stored", "value"),
    [
        ("plain-value", "plain-value"),
        ('{"password": "from-json", "username": "u"}', "from-json"),
        ("{not json but a value", "{not json but a value"),
    ],
)
def test_secret_forms(aws: MotoAws, stored: str, value: str):
    assert read_secret(aws.secret(stored), "the warehouse password", "X_SECRET_ID", "password") == value


def test_a_json_secret_without_the_key_says_where_to_put_the_value(aws: MotoAws):
    name = aws.secret('{"username": "pendo_sync_user", "pass": "not-the-right-key"}')
    with pytest.raises(SecretUnavailable) as raised:
        read_secret(name, "the warehouse password", "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID", "password")
    assert str(raised.value) == (
        f"the warehouse password cannot be read from AWS Secrets Manager secret '{name}' (set by "
        "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID): it holds JSON without a text 'password' key. Put the value "
        "under 'password', or store it as plain text"
    )
    assert "not-the-right-key" not in str(raised.value)


def test_database_passwords_come_from_their_secrets_and_stay_out_of_sight(
    aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    warehouse_pw, state_pw = f"wh-{uuid.uuid4().hex}", f"st-{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "PENDO_SYNC_WAREHOUSE_URL", "redshift+psycopg2://pendo_sync_user@cluster.internal:5439/analytics"
    )
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID", aws.secret(warehouse_pw))
    monkeypatch.setenv("PENDO_SYNC_STATE_URL", "postgresql://pendo_sync_state@state.internal:5432/pendo_sync")
    monkeypatch.setenv("PENDO_SYNC_STATE_PASSWORD_SECRET_ID", aws.secret(json.dumps({"password": state_pw})))
    resources = build_resources()
    wanted = {key: resources[key] for key in ("pendo_sync_warehouse", "pendo_sync_state")}
    with dg.build_resources(wanted) as built:
        warehouse = built.pendo_sync_warehouse.engine()
        state = built.pendo_sync_state.store(built.pendo_sync_warehouse).engine
        assert (warehouse.url.password, state.url.password) == (warehouse_pw, state_pw)
        shown = f"{warehouse.url} {state.url} {built.pendo_sync_warehouse!r} {built.pendo_sync_state!r}"
        assert warehouse_pw not in shown and state_pw not in shown


def test_the_documented_secret_commands_feed_a_materialization(
    duckdb_world: World, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    if not shutil.which("aws"):
        pytest.skip("the AWS CLI (aws) is not installed")
    world = duckdb_world
    key = f"documented-{uuid.uuid4().hex}"
    world.emulator.settings.integration_key = key
    shell_env = dict(os.environ, PENDO_INTEGRATION_KEY=key, REDSHIFT_PASSWORD="Chang3-me-in-Secrets-Manager")
    try:
        done = subprocess.run(
            ["bash", "-ec", doc_block("secrets")], env=shell_env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        defs = defs_with(
            world, monkeypatch, PENDO_INTEGRATION_KEY_SECRET_ID="pendo-sync/pendo-integration-key"
        )
        with dg.instance_for_test() as instance:
            assert defs.resolve_job_def("sync_accounts").execute_in_process(instance=instance).success
        assert world.store.ledger.count("accounts") == ACCOUNTS - ACCOUNTS // 50
    finally:
        client = aws.client("secretsmanager")
        for name in ("pendo-sync/pendo-integration-key", "pendo-sync/redshift-password"):
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


# -- Redshift grants (PostgreSQL stands in) ------------------------------------------------------------
@pytest.fixture
def db_role(pg_url: str, pg_admin: Engine) -> Iterator[str]:
    """A login role for this test (created by the documented SQL); dropped with its privileges and objects
    in the test's database, before that database goes."""
    role = f"pendo_sync_user_{uuid.uuid4().hex[:8]}"
    yield role
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
            conn.execute(sa.text(f'DROP OWNED BY "{role}" CASCADE'))
    engine.dispose()
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


def run_documented_grants(world: World, marker: str, user: str, role: str) -> None:
    """The doc's SQL with the test's names: sources in `public`, this database, this role."""
    database = make_url(world.url).database
    sql = (
        doc_block(marker)
        .replace("DATABASE analytics", f'DATABASE "{database}"')
        .replace("SCHEMA analytics", "SCHEMA public")
        .replace("analytics.", "public.")
        .replace(user, role)
    )
    with world.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            conn.execute(sa.text(statement))


def role_url(world: World, role: str) -> str:
    return make_url(world.url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_the_documented_grants_are_enough_for_a_sync_with_state_in_the_warehouse(
    pg_world: World, db_role: str, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    world = pg_world
    run_documented_grants(world, "grants", "pendo_sync_user", db_role)
    defs = defs_with(
        world,
        monkeypatch,
        PENDO_SYNC_WAREHOUSE_URL=role_url(world, db_role),
        PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID=aws.secret("Chang3-me-in-Secrets-Manager"),
        PENDO_INTEGRATION_KEY=world.key,
    )
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("sync_all").execute_in_process(instance=instance).success
    assert world.sql("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pendo_sync'") == [
        (db_role,)
    ]
    assert world.store.ledger.count("accounts") == ACCOUNTS - ACCOUNTS // 50


@pytest.mark.postgres
def test_a_read_only_warehouse_with_state_in_a_separate_database(
    pg_world: World, db_role: str, pg_admin: Engine, aws: MotoAws, monkeypatch: pytest.MonkeyPatch
):
    world = pg_world
    run_documented_grants(world, "grants-read-only", "pendo_sync_reader", db_role)
    state_db = f"pendo_sync_state_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{state_db}"'))
    state_url = make_url(world.url).set(database=state_db).render_as_string(hide_password=False)
    try:
        defs = defs_with(
            world,
            monkeypatch,
            PENDO_SYNC_WAREHOUSE_URL=role_url(world, db_role),
            PENDO_SYNC_STATE_URL=state_url,
            PENDO_SYNC_STATE_PASSWORD_SECRET_ID=aws.secret('{"password": "state-db-password"}'),
            PENDO_INTEGRATION_KEY=world.key,
        )
        with dg.instance_for_test() as instance:
            assert defs.resolve_job_def("sync_all").execute_in_process(instance=instance).success
        assert not sa.inspect(world.engine).has_schema("pendo_sync")  # nothing written to the warehouse
        state = sa.create_engine(state_url, poolclass=sa.pool.NullPool)
        with state.connect() as conn:
            ledger = conn.execute(
                sa.text("SELECT count(*) FROM pendo_sync.ledger WHERE sync_name = 'accounts'")
            ).scalar()
        assert ledger == ACCOUNTS - ACCOUNTS // 50
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{state_db}" WITH (FORCE)'))


# -- the production instance ---------------------------------------------------------------------------
@pytest.fixture
def production_env(pg_url: str, aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the webserver and daemon tasks set: PostgreSQL (the local server), S3 and the roles (moto)."""
    url = make_url(pg_url)
    env = {
        "DAGSTER_PG_HOST": url.host or "",
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_DB": url.database or "",
        "DAGSTER_PG_USERNAME": url.username or "",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_COMPUTE_LOG_BUCKET": aws.bucket(),
        "PENDO_SYNC_RUN_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/pendo-sync-run",
        "PENDO_SYNC_RUN_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/pendo-sync-run-execution",
        "PENDO_SYNC_RUN_LOG_GROUP": "/ecs/pendo-sync",
        "PENDO_BASE_URL": "eu",
        "PENDO_INTEGRATION_KEY_SECRET_ID": "pendo-sync/pendo-integration-key",
        "PENDO_SYNC_WAREHOUSE_URL": "redshift+psycopg2://pendo_sync_user@cluster.internal:5439/analytics",
        "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID": "pendo-sync/redshift-password",
        "PENDO_SYNC_ARCHIVE_S3_URI": "",
        "PENDO_SYNC_UI_URL": "https://dagster.internal",
        "PENDO_SYNC_SNS_TOPIC_ARN": "",
        "PENDO_SYNC_SLACK_WEBHOOK_URL_SECRET_ID": "",
        "PENDO_SYNC_SLACK_TOKEN_SECRET_ID": "",
        "PENDO_SYNC_SLACK_CHANNEL": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def dagster_home(tmp_path: Path) -> Path:
    """$DAGSTER_HOME as the image lays it out."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(DEPLOY / name, home / name)
    return home


@pytest.mark.postgres
def test_the_production_instance_validates_and_loads_with_its_aws_parts_on_moto(
    production_env: dict[str, str], aws: MotoAws, tmp_path: Path
):
    config, _ = dagster_instance_config(str(DEPLOY))  # Dagster's own schema validation of the file
    assert {"storage", "compute_logs", "run_launcher", "concurrency", "run_monitoring", "run_retries"} <= set(
        config
    )
    instance = dg.DagsterInstance.from_config(str(dagster_home(tmp_path)))
    try:
        kinds = {
            type(part).__name__
            for part in (
                instance.run_storage,
                instance.event_log_storage,
                instance.schedule_storage,
                instance.compute_log_manager,
                instance.run_launcher,
                instance.run_coordinator,
            )
        }
        assert kinds == {
            "PostgresRunStorage",
            "PostgresEventLogStorage",
            "PostgresScheduleStorage",
            "S3ComputeLogManager",
            "EcsRunLauncher",
            "QueuedRunCoordinator",
        }
        assert instance.get_runs() == []  # the storage answers from PostgreSQL
        # (Capturing a step's output through S3ComputeLogManager is Dagster's own code, and it tails
        # files through `tail -F` subprocesses that time out under CI's captured output: not tested here.)
        launcher = instance.run_launcher
        # Every variable the launcher passes to runs is set in the daemon's environment (else no run starts).
        passed = dict(parse_env_var(name) for name in launcher.env_vars)  # type: ignore[attr-defined]
        assert passed["PENDO_INTEGRATION_KEY_SECRET_ID"] == "pendo-sync/pendo-integration-key"
        assert not any("PASSWORD=" in name or "KEY=" in name for name in launcher.env_vars)  # type: ignore[attr-defined]
        assert launcher.task_role_arn == production_env["PENDO_SYNC_RUN_TASK_ROLE_ARN"]  # type: ignore[attr-defined]
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [
            {"key": "pendo_sync/sync", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_a_run_task_alerts_as_the_daemon_is_set_up_to_with_the_slack_webhook_by_secret_id(
    production_env: dict[str, str],
    aws: MotoAws,
    slack_server: SlackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A run's own alert (a sync's rejected share over its threshold) is sent from its ECS task, which has
    only the variables the launcher passes: the alert settings must be among them, and no secret value."""
    webhook = aws.secret(json.dumps({"webhook_url": f"{slack_server.url}/services/T0/B0/xyz"}))
    topic = aws.client("sns").create_topic(Name="pendo-sync-alerts")["TopicArn"]
    monkeypatch.setenv("PENDO_SYNC_SLACK_WEBHOOK_URL_SECRET_ID", webhook)
    monkeypatch.setenv("PENDO_SYNC_SNS_TOPIC_ARN", topic)
    instance = dg.DagsterInstance.from_config(str(dagster_home(tmp_path)))
    try:
        passed = dict(parse_env_var(name) for name in instance.run_launcher.env_vars)  # type: ignore[attr-defined]
    finally:
        instance.dispose()
    for name in list(os.environ):  # the run task: the image's environment and what the launcher passes
        if name.startswith("PENDO_") and name not in passed:
            monkeypatch.delenv(name)
    alerts = alerts_from_env()
    assert alerts.describe() == f"Slack webhook, SNS {topic}"
    assert alerts.send(Alert(title="pendo_sync: accounts rejected 12.0% of rows", text="over 5%")) == []
    assert slack_server.messages == [{"text": "*pendo_sync: accounts rejected 12.0% of rows*\nover 5%"}]
    assert [r.path for r in slack_server.requests] == ["/services/T0/B0/xyz"]


def test_a_slack_secret_that_cannot_be_read_is_an_alert_problem_naming_it_and_the_fix(aws: MotoAws) -> None:
    alerts = AlertsResource(slack_webhook_url_secret_id="pendo-sync/no-such-webhook")
    assert alerts.describe() == "Slack webhook"
    (problem,) = alerts.send(Alert(title="t", text="x"))
    assert problem.startswith(
        "Slack webhook: SecretUnavailable: the Slack webhook URL cannot be read from AWS Secrets Manager "
        "secret 'pendo-sync/no-such-webhook' (set by PENDO_SYNC_SLACK_WEBHOOK_URL_SECRET_ID): "
        "ResourceNotFoundException."
    )


@pytest.mark.postgres
def test_dagster_instance_info_as_the_docs_run_it(production_env: dict[str, str], tmp_path: Path):
    assert "dagster instance info" in DOCS
    done = subprocess.run(
        [str(BIN / "dagster"), "instance", "info"],
        env=dict(os.environ, DAGSTER_HOME=str(dagster_home(tmp_path))),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run_storage: PostgresRunStorage" in done.stdout and "class: EcsRunLauncher" in done.stdout
    assert "Storage schema state" in done.stdout  # read from PostgreSQL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_command(port: int, bin_dir: Path = BIN) -> list[str]:
    """The Dockerfile's CMD, on a free port and the dagster of `bin_dir` (this environment's by default)."""
    (cmd,) = re.findall(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    args = json.loads(cmd)
    assert args[0] == "dagster" and args[args.index("--port") + 1] == "4000"
    args[args.index("--port") + 1] = str(port)
    return [str(bin_dir / "dagster"), *args[1:]]


@contextlib.contextmanager
def code_server(command: list[str], port: int, env: dict[str, str], cwd: Path) -> Iterator[None]:
    """The code server of `command`, up until Dagster's health check passes; killed on leaving."""
    log_path = cwd / "code_server.log"
    log = log_path.open("w")
    dagster = str(Path(command[0]).parent / "dagster")
    server = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            check = subprocess.run(
                [dagster, "api", "grpc-health-check", "--port", str(port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, check.stderr
            time.sleep(1)
        yield
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the code server and the process it serves from
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_the_workspace_reaches_the_images_code_server(production_env: dict[str, str], tmp_path: Path):
    assert "dagster definitions validate -w /opt/dagster/dagster_home/workspace.yaml" in DOCS
    assert "dagster api grpc-health-check --port 4000" in DOCS
    home = dagster_home(tmp_path)
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), PENDO_SYNC_HOME=str(tmp_path / "home"))
    with code_server(image_command(port), port, env, tmp_path):
        done = subprocess.run(
            [str(BIN / "dagster"), "definitions", "validate", "-w", str(home / "workspace.yaml")],
            env=dict(env, PENDO_SYNC_CODE_HOST="127.0.0.1", PENDO_SYNC_CODE_PORT=str(port)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "All code locations passed validation." in done.stdout + done.stderr


def test_a_secret_read_from_secrets_manager_is_redacted_from_alerts(aws: MotoAws, monkeypatch):
    from pendo_sync.secrets import redact

    monkeypatch.delenv("PENDO_INTEGRATION_KEY", raising=False)
    value = read_secret(aws.secret("sm-only-key-4711"), "the Pendo integration key", "X_SECRET_ID", "key")
    assert redact(f"Pendo said no to {value}") == "Pendo said no to ***"


def image_build_steps() -> tuple[list[tuple[list[str], str]], str, dict[str, str]]:
    """The Dockerfile read as build steps: its COPYs (sources, destination), its one RUN and its ARG
    defaults (its CMD is image_command's); any other instruction fails the test, so the reading keeps up."""
    lines = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text()).splitlines()
    copies, runs, args = [], [], {}
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "COPY":
            *sources, destination = rest.split()
            copies.append((sources, destination))
        elif instruction == "RUN":
            runs.append(rest)
        elif instruction == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert instruction in ("FROM", "ENV", "WORKDIR", "USER", "EXPOSE", "CMD"), line
    (run,) = runs
    return copies, run, args


@pytest.mark.slow
def test_the_images_build_steps_install_pendo_sync_that_serves_its_code(tmp_path: Path):
    """No Docker engine runs here: the image's steps are replayed instead. Its build context is what its
    COPY lines name, installed with its own `pip install .` into a clean virtualenv (no site packages);
    the image's CMD, run from that virtualenv, serves the code location and passes Dagster's health check.
    What this cannot check is the base image itself (python:3.11-slim)."""
    copies, run, args = image_build_steps()
    assert run.startswith("pip install . ")
    app, home = tmp_path / "opt/dagster/app", tmp_path / "opt/dagster/dagster_home"
    app.mkdir(parents=True)
    home.mkdir(parents=True)
    for sources, destination in copies:
        # WORKDIR is the app folder; absolute destinations land under tmp_path, as under the image's root.
        target = {"./": app, "$DAGSTER_HOME/": home}.get(destination) or (
            tmp_path / destination.lstrip("/") if destination.startswith("/") else app / destination
        )
        for source in sources:
            source = source.replace("$SYNC_CONFIG", args["SYNC_CONFIG"])
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which the repository lacks"
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            elif destination.endswith("/"):
                shutil.copy(path, target / path.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", "."],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert (app / "syncs.yaml").read_text() == (ROOT / args["SYNC_CONFIG"]).read_text()
    port = free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(home),
        "PENDO_SYNC_CONFIG": str(app / "syncs.yaml"),
        "PENDO_SYNC_HOME": str(tmp_path / "state"),
    }
    # Run from tmp_path, not the checkout: the installed package, not the source tree, is served.
    with code_server(image_command(port, venv / "bin"), port, env, tmp_path):
        served = subprocess.run(
            [str(venv / "bin/python"), "-c", "import pendo_sync; print(pendo_sync.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert served.stdout.startswith(str(venv)), (
            served.stdout + served.stderr
        )  # installed, not the checkout


def test_the_cli_reads_the_key_from_its_secret_as_the_resources_do(
    duckdb_world: World, aws: MotoAws, cli: Any, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    key = f"cli-secret-{uuid.uuid4().hex}"
    world.emulator.settings.integration_key = key
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", "not-the-right-key")
    monkeypatch.setenv("PENDO_INTEGRATION_KEY_SECRET_ID", aws.secret(key))
    code, out, err = cli("run", "accounts", "--mode", "full", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["counts"]["confirmed"] == ACCOUNTS - ACCOUNTS // 50
    assert key not in out + err


def test_a_key_from_its_secret_loses_surrounding_whitespace_or_is_refused_naming_the_secret(aws: MotoAws):
    assert integration_key("a-stale-key", aws.secret("key-from-a-file\n")) == "key-from-a-file"
    name = aws.secret(json.dumps({"integration_key": "Zq7-part\r\nWv9-part"}))
    with pytest.raises(UsageError) as raised:
        integration_key("a-stale-key", name)
    assert str(raised.value) == (
        f"AWS Secrets Manager secret '{name}' (set by PENDO_INTEGRATION_KEY_SECRET_ID) holds a control "
        "character (a line break, a tab), which an HTTP header cannot carry; set it to the key alone, as Pendo "
        "shows it (Settings > Integrations > Integration Keys)"
    )
