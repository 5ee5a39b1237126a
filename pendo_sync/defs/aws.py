"""AWS in production, through dagster-aws: secrets read from Secrets Manager when a resource is set up, and
each run's rejected rows and report archived to S3 as Parquet, partitioned for Athena and Redshift Spectrum.

Both are off unless configured, so a laptop needs no AWS at all. Endpoints, region and credentials come
from boto3's usual chain (AWS_REGION, the task role, AWS_ENDPOINT_URL for moto or LocalStack).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from pendo_sync.defs.alerts import register_secret
from pendo_sync.engine.run import SyncOutcome
from pendo_sync.state.store import COUNTERS, StateStore

REJECT_CHUNK_ROWS = 10_000

REJECTS_SCHEMA = pa.schema(
    [
        ("sync_name", pa.string()),
        ("record_id", pa.string()),
        ("row_hash", pa.string()),
        ("kind", pa.string()),
        ("reason", pa.string()),
        ("run_id", pa.string()),
        ("version", pa.int64()),
        ("rejected_at", pa.timestamp("us", tz="UTC")),
    ]
)
REPORT_SCHEMA = pa.schema(
    [
        ("sync", pa.string()),
        ("asset", pa.string()),
        ("partition", pa.string()),
        ("run_id", pa.string()),
        ("state_version", pa.int64()),
        ("mode", pa.string()),
        ("status", pa.string()),
        ("slice", pa.string()),
        ("cursor", pa.string()),
        *[(name, pa.int64()) for name in COUNTERS],
        ("counts_json", pa.string()),  # every counter of the run, including ones newer than this schema
        ("duration_seconds", pa.float64()),
        ("records_per_second", pa.float64()),
        ("reject_share", pa.float64()),
        ("note", pa.string()),
        ("archived_at", pa.timestamp("us", tz="UTC")),
    ]
)


# (metadata name, folder): the run's rejected rows and its one-row report.
TABLES = (("rejects", "rejects"), ("report", "reports"))


class SecretUnavailable(RuntimeError):
    """A configured secret cannot be read; the message names the secret and the fix, never its value."""


def read_secret(secret_id: str, what: str, env_name: str, json_key: str) -> str:
    """The text of an AWS Secrets Manager secret; from a JSON secret (as RDS and Redshift store them), the
    value at `json_key`. Called when a resource is set up, so a bad secret fails the run at its start."""
    where = f"{what} cannot be read from AWS Secrets Manager secret {secret_id!r} (set by {env_name})"
    try:
        client = boto3.client("secretsmanager", region_name=_region() or None)
        answer = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        fix = _secret_fix(code, secret_id, env_name, client.meta.region_name)
        raise SecretUnavailable(f"{where}: {code}. {fix}") from None
    except BotoCoreError as exc:
        raise SecretUnavailable(
            f"{where}: {type(exc).__name__}. Give the process AWS credentials and a region (in production "
            "the ECS task role and AWS_REGION)"
        ) from None
    text = answer.get("SecretString")
    if not text:
        raise SecretUnavailable(f"{where}: it has no text value. Store the value as the secret's string")
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None  # not JSON after all: a value that starts with a brace
        if isinstance(parsed, dict):
            value = parsed.get(json_key)
            if not isinstance(value, str) or not value:
                raise SecretUnavailable(
                    f"{where}: it holds JSON without a text {json_key!r} key. Put the value under "
                    f"{json_key!r}, or store it as plain text"
                )
            register_secret(value)
            return value
    register_secret(text)
    return text


def _region() -> str:
    # ECS sets both; botocore itself reads only AWS_DEFAULT_REGION.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""


def _secret_fix(code: str, secret_id: str, env_name: str, region: str) -> str:
    if code == "ResourceNotFoundException":
        return (
            f"Create it in region {region} (aws secretsmanager create-secret --name {secret_id} "
            f"--secret-string ...), or point {env_name} at the right name or ARN"
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        return (
            "Allow the task role secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key if "
            "it uses a customer-managed key)"
        )
    if code in ("InvalidRequestException", "DecryptionFailure"):
        return "Check that the secret is not scheduled for deletion and that its KMS key is usable"
    return f"Check the secret and {env_name}"


def _env(*names: str) -> str | dg.EnvVar:
    for name in names:
        if os.environ.get(name):
            return dg.EnvVar(name)
    return ""


class RunArchiveResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where each run's rejected rows and one-row report go, as Parquet under s3_uri (see archive_key);
    off when s3_uri is empty."""

    s3_uri: str = ""
    s3: S3Resource
    _bucket: str = PrivateAttr(default="")
    _prefix: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.s3_uri:
            self._bucket, self._prefix = parse_s3_uri(self.s3_uri)

    def enabled(self) -> bool:
        return bool(self._bucket)

    def write_run(
        self, context: dg.AssetExecutionContext, sync: str, outcome: SyncOutcome, store: StateStore
    ) -> dict[str, Any]:
        """Archive the run's rejects and report; their S3 URIs as metadata. A failed upload is reported as
        metadata and a warning, not raised: the sync itself is done and its state already written."""
        if not self.enabled():
            return {}
        now = dt.datetime.now(dt.UTC)
        keys = {
            name: archive_key(self._prefix, table, sync, now.date(), context.run_id) for name, table in TABLES
        }
        client = self.s3.get_client()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                rejects_file, report_file = f"{tmp}/rejects.parquet", f"{tmp}/report.parquet"
                with pq.ParquetWriter(rejects_file, REJECTS_SCHEMA) as writer:
                    writer.write_table(REJECTS_SCHEMA.empty_table())  # a run without rejects still has a file
                    for rows in run_rejects(store, sync, context.run_id):
                        writer.write_table(pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA))
                pq.write_table(
                    pa.Table.from_pylist([_report_row(context, sync, outcome, now)], schema=REPORT_SCHEMA),
                    report_file,
                )
                client.upload_file(rejects_file, self._bucket, keys["rejects"])
                client.upload_file(report_file, self._bucket, keys["report"])
        except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:
            code = _s3_error_code(exc)
            if code == "NoSuchBucket":
                fix = "create the bucket, or correct PENDO_SYNC_ARCHIVE_S3_URI"
            else:
                objects = f"{self._prefix}/*" if self._prefix else "*"
                fix = f"the task role needs s3:PutObject on arn:aws:s3:::{self._bucket}/{objects}"
            problem = f"run archive not written to s3://{self._bucket}/{keys['rejects']}: {code}; {fix}"
            context.log.warning(problem)
            return {"archive_error": dg.MetadataValue.text(problem)}
        return {
            f"archive_{name}": dg.MetadataValue.path(f"s3://{self._bucket}/{key}")
            for name, key in keys.items()
        }


def _s3_error_code(exc: Exception) -> str:
    # upload_file wraps the S3 answer in boto3's S3UploadFailedError, whose text carries the error code.
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    for code in ("NoSuchBucket", "AccessDenied"):
        if code in str(exc):
            return code
    return type(exc).__name__


def archive_key(prefix: str, table: str, sync: str, day: dt.date, run_id: str) -> str:
    """<prefix>/<table>/sync=<sync>/date=<YYYY-MM-DD>/<run id>.parquet: one folder per table, so an Athena
    or Spectrum table over it sees one schema, with sync and date as its (Hive-style) partitions."""
    return "/".join(
        p for p in (prefix, table, f"sync={sync}", f"date={day:%Y-%m-%d}", f"{run_id}.parquet") if p
    )


def run_rejects(store: StateStore, sync: str, run_id: str) -> Iterator[list[dict[str, Any]]]:
    """The rejects a run recorded that are still outstanding, chunk by chunk. StateStore.rejects_of reads
    every outstanding reject of the sync at once; a run's share is streamed here instead."""
    table = store.rejects
    stmt = (
        sa.select(table)
        .where(table.c.sync_name == sync, table.c.run_id == run_id)
        .order_by(table.c.record_id)
    )
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=REJECT_CHUNK_ROWS).execute(stmt)
        for part in result.partitions(REJECT_CHUNK_ROWS):
            yield [{**row._mapping, "rejected_at": row.rejected_at.replace(tzinfo=dt.UTC)} for row in part]


def _report_row(
    context: dg.AssetExecutionContext, sync: str, outcome: SyncOutcome, now: dt.datetime
) -> dict[str, Any]:
    partition = ""
    if context.has_partition_key_range:
        keys = context.partition_key_range
        partition = keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}"
    return {
        "sync": sync,
        "asset": context.asset_key.to_user_string(),
        "partition": partition,
        "run_id": context.run_id,
        "state_version": outcome.version,
        "mode": outcome.mode,
        "status": outcome.status,
        "slice": outcome.slice,
        "cursor": None if outcome.cursor is None else str(outcome.cursor),
        **{name: int(outcome.counts.get(name, 0)) for name in COUNTERS},
        "counts_json": json.dumps(outcome.counts, sort_keys=True, default=str),
        "duration_seconds": outcome.duration_seconds,
        "records_per_second": outcome.records_per_second,
        "reject_share": outcome.reject_share,
        "note": outcome.note,
        "archived_at": now,
    }


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(
            f"PENDO_SYNC_ARCHIVE_S3_URI={uri!r} is not an S3 location; use s3://<bucket>[/<prefix>]"
        )
    return bucket, prefix.strip("/")


def archive_from_env() -> RunArchiveResource:
    """The archive from PENDO_SYNC_ARCHIVE_S3_URI (off when unset) and dagster-aws's S3 resource. A malformed
    URI fails the code location's load, before any run."""
    if os.environ.get("PENDO_SYNC_ARCHIVE_S3_URI"):
        parse_s3_uri(os.environ["PENDO_SYNC_ARCHIVE_S3_URI"])
    return RunArchiveResource(
        s3_uri=_env("PENDO_SYNC_ARCHIVE_S3_URI"),
        s3=S3Resource(region_name=_env("AWS_REGION", "AWS_DEFAULT_REGION") or None),
    )
