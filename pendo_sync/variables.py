"""The one place pendo_sync reads its environment: every variable it takes, what it means, and its default.
(settings.py turns them into connections; dagster/env.py into Dagster's EnvVars.)"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pendo_sync.pendo.client import EMULATOR_KEY, EMULATOR_URL


@dataclass(frozen=True)
class Variable:
    """An environment variable, with the names that stand in for it when it is unset (`also`)."""

    name: str
    meaning: str
    default: str = ""
    also: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    def set_name(self) -> str | None:
        """The first of the names that is set, or None."""
        return next((n for n in self.names if os.environ.get(n)), None)

    def value(self) -> str:
        name = self.set_name()
        return os.environ[name] if name else self.default


HOME = Variable(
    "PENDO_SYNC_HOME", "local files: DuckDB warehouse, emulator snapshot, Dagster home", ".pendo_sync"
)
CONFIG = Variable("PENDO_SYNC_CONFIG", "the sync config file (default: the demo config)")
WAREHOUSE_URL = Variable(
    "PENDO_SYNC_WAREHOUSE_URL", "SQLAlchemy URL of the warehouse (default: a DuckDB file)"
)
WAREHOUSE_PASSWORD_SECRET_ID = Variable(
    "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID", "AWS Secrets Manager secret holding the warehouse password"
)
STATE_URL = Variable("PENDO_SYNC_STATE_URL", "a separate state database, for a read-only warehouse")
STATE_PASSWORD_SECRET_ID = Variable(
    "PENDO_SYNC_STATE_PASSWORD_SECRET_ID", "AWS Secrets Manager secret holding the state database password"
)
STATE_SCHEMA = Variable("PENDO_SYNC_STATE_SCHEMA", "schema of the state tables (default: the config's)")
PENDO_BASE_URL = Variable("PENDO_BASE_URL", "Pendo region (us, us1, eu, jpn, au) or URL", EMULATOR_URL)
PENDO_INTEGRATION_KEY = Variable("PENDO_INTEGRATION_KEY", "Pendo integration key", EMULATOR_KEY)
PENDO_INTEGRATION_KEY_SECRET_ID = Variable(
    "PENDO_INTEGRATION_KEY_SECRET_ID", "AWS Secrets Manager secret holding the integration key"
)
SLACK_WEBHOOK_URL = Variable("PENDO_SYNC_SLACK_WEBHOOK_URL", "Slack incoming webhook for alerts")
SLACK_TOKEN = Variable("PENDO_SYNC_SLACK_TOKEN", "Slack bot token for alerts (with a channel)")
SLACK_WEBHOOK_URL_SECRET_ID = Variable(
    "PENDO_SYNC_SLACK_WEBHOOK_URL_SECRET_ID", "AWS Secrets Manager secret holding the Slack webhook URL"
)
SLACK_TOKEN_SECRET_ID = Variable(
    "PENDO_SYNC_SLACK_TOKEN_SECRET_ID", "AWS Secrets Manager secret holding the Slack bot token"
)
SLACK_CHANNEL = Variable("PENDO_SYNC_SLACK_CHANNEL", "Slack channel for alerts (with a token)")
SNS_TOPIC_ARN = Variable("PENDO_SYNC_SNS_TOPIC_ARN", "AWS SNS topic for alerts")
SNS_ENDPOINT_URL = Variable("PENDO_SYNC_SNS_ENDPOINT_URL", "SNS endpoint (moto, LocalStack)")
UI_URL = Variable("PENDO_SYNC_UI_URL", "Dagster UI base URL, for links in alerts")
ARCHIVE_S3_URI = Variable("PENDO_SYNC_ARCHIVE_S3_URI", "s3://bucket/prefix for each run's rejects and report")
TRACEBACK = Variable("PENDO_SYNC_TRACEBACK", "set: `pendo-sync` shows the traceback of a bug")
# ECS sets both; botocore itself reads only AWS_DEFAULT_REGION.
AWS_REGION = Variable(
    "AWS_REGION", "AWS region for SNS, S3 and Secrets Manager", also=("AWS_DEFAULT_REGION",)
)


def home() -> Path:
    return Path(HOME.value())


def default_warehouse_url() -> str:
    """The embedded default: a DuckDB file under PENDO_SYNC_HOME, so a new user needs no server."""
    return f"duckdb:///{(home() / 'warehouse.duckdb').resolve()}"


def fingerprint() -> tuple[str | None, ...]:
    """Which variables are set, by which name, and the home: what decides the resources built from them."""
    found = [v.set_name() for v in globals().values() if isinstance(v, Variable)]
    return (*found, str(home().resolve()))
