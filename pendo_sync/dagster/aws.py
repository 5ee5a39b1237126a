"""AWS in production, through dagster-aws: each run's rejected rows and report archived to S3 as Parquet,
partitioned for Athena and Redshift Spectrum (secrets are read by pendo_sync/dagster/secrets.py).

It is off unless configured, so a laptop needs no AWS at all. Endpoints, region and credentials come
from boto3's usual chain (AWS_REGION, the task role, AWS_ENDPOINT_URL for moto or LocalStack).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from pendo_sync import variables
from pendo_sync.dagster.env import env_or
from pendo_sync.engine.run import SyncOutcome
from pendo_sync.errors import UsageError
from pendo_sync.outcome import RunCounts
from pendo_sync.state.store import StateStore

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
        *[(name, pa.int64()) for name in RunCounts().as_dict()],
        ("counts_json", pa.string()),  # every figure again, as JSON: readers of older archives keep working
        ("duration_seconds", pa.float64()),
        ("records_per_second", pa.float64()),
        ("reject_share", pa.float64()),
        ("note", pa.string()),
        ("archived_at", pa.timestamp("us", tz="UTC")),
    ]
)


# (metadata name, folder): the run's rejected rows and its one-row report.
TABLES = (("rejects", "rejects"), ("report", "reports"))


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
            name: archive_key(self._prefix, table, sync, now.date(), context.run.run_id)
            for name, table in TABLES
        }
        client = self.s3.get_client()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                rejects_file, report_file = f"{tmp}/rejects.parquet", f"{tmp}/report.parquet"
                with pq.ParquetWriter(rejects_file, REJECTS_SCHEMA) as writer:
                    writer.write_table(REJECTS_SCHEMA.empty_table())  # a run without rejects still has a file
                    for rows in run_rejects(store, sync, context.run.run_id):
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
    """A run's outstanding rejects, chunk by chunk, with their times marked UTC for Parquet."""
    for rows in store.rejects.of_run(sync, run_id):
        yield [{**row, "rejected_at": row["rejected_at"].replace(tzinfo=dt.UTC)} for row in rows]


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
        "run_id": context.run.run_id,
        "state_version": outcome.version,
        "mode": outcome.mode,
        "status": outcome.status,
        "slice": outcome.slice,
        "cursor": None if outcome.cursor is None else str(outcome.cursor),
        **outcome.counts.as_dict(),
        "counts_json": json.dumps(outcome.counts.as_dict(), sort_keys=True),
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
        raise UsageError(
            f"PENDO_SYNC_ARCHIVE_S3_URI={uri!r} is not an S3 location; use s3://<bucket>[/<prefix>]"
        )
    return bucket, prefix.strip("/")


def archive_from_env() -> RunArchiveResource:
    """The archive from PENDO_SYNC_ARCHIVE_S3_URI (off when unset) and dagster-aws's S3 resource. A malformed
    URI fails the code location's load, before any run."""
    if variables.ARCHIVE_S3_URI.value():
        parse_s3_uri(variables.ARCHIVE_S3_URI.value())
    return RunArchiveResource(
        s3_uri=env_or(variables.ARCHIVE_S3_URI),
        s3=S3Resource(region_name=env_or(variables.AWS_REGION) or None),
    )
