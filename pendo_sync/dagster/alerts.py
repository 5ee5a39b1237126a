"""Alerts to Slack (incoming webhook or chat.postMessage) and AWS SNS, with secrets redacted.

Alerting is best effort: a destination that fails is logged and reported back to the caller, never raised,
so a broken webhook cannot fail the sync or the sensor that wanted to report something.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import dagster as dg
import httpx

from pendo_sync import variables
from pendo_sync.dagster.env import env_or
from pendo_sync.secrets import read_secret, redact

log = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 10.0
# SNS rejects a Subject longer than 100 characters or with line breaks / control characters.
SNS_SUBJECT_LIMIT = 100

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Alert:
    """One message for people: a short title, the details, and where it came from."""

    title: str
    text: str
    sync: str = ""
    run_id: str = ""
    link: str = ""


def _resolved(value: str) -> str:
    # Outside a Dagster run (the CLI, a plain test) the fields can still hold unresolved EnvVars, and
    # str() of an EnvVar raises; read the variable instead.
    if isinstance(value, dg.EnvVar):
        return value.get_value() or ""
    return value


@functools.cache
def _secret(secret_id: str, what: str, variable: str, json_key: str) -> str:
    """A secret's value, read from AWS Secrets Manager once per process (and redacted from then on)."""
    return read_secret(secret_id, what, variable, json_key)


def _plain_or_secret(plain: str, secret_id: str, what: str, variable: str, json_key: str) -> str:
    """The secret's value when its id is set (a secret id wins, as everywhere), else the plain value."""
    resolved_id = _resolved(secret_id)
    return _secret(resolved_id, what, variable, json_key) if resolved_id else _resolved(plain)


def _sns_subject(title: str) -> str:
    subject = _CONTROL_CHARS.sub(" ", title).encode("ascii", "replace").decode("ascii").strip()
    return subject[:SNS_SUBJECT_LIMIT] or "pendo_sync alert"


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where alerts go: a Slack webhook (or a bot token and channel) and/or an SNS topic."""

    slack_webhook_url: str = ""
    slack_webhook_url_secret_id: str = ""  # AWS Secrets Manager: the URL (text, or JSON key webhook_url)
    slack_token: str = ""
    slack_token_secret_id: str = ""  # AWS Secrets Manager: the token (text, or JSON key token)
    slack_channel: str = ""
    slack_api_url: str = "https://slack.com/api"
    sns_topic_arn: str = ""
    aws_region: str = ""
    sns_endpoint_url: str = ""  # for moto or LocalStack
    ui_base_url: str = ""  # the Dagster UI, e.g. http://127.0.0.1:3000, for links to runs

    def _slack_mode(self) -> str:
        if _resolved(self.slack_webhook_url) or _resolved(self.slack_webhook_url_secret_id):
            return "webhook"
        token = _resolved(self.slack_token) or _resolved(self.slack_token_secret_id)
        if token and _resolved(self.slack_channel):
            return "api"
        return ""

    def _webhook_url(self) -> str:
        return _plain_or_secret(
            self.slack_webhook_url,
            self.slack_webhook_url_secret_id,
            "the Slack webhook URL",
            variables.SLACK_WEBHOOK_URL_SECRET_ID.name,
            "webhook_url",
        )

    def _token(self) -> str:
        return _plain_or_secret(
            self.slack_token,
            self.slack_token_secret_id,
            "the Slack bot token",
            variables.SLACK_TOKEN_SECRET_ID.name,
            "token",
        )

    def enabled(self) -> bool:
        """Whether any destination is configured."""
        return bool(self._slack_mode() or _resolved(self.sns_topic_arn))

    def describe(self) -> str:
        """The configured destinations in words, without any secret."""
        parts = []
        mode = self._slack_mode()
        if mode == "webhook":
            parts.append("Slack webhook")
        elif mode == "api":
            parts.append(f"Slack channel {_resolved(self.slack_channel)}")
        arn = _resolved(self.sns_topic_arn)
        if arn:
            parts.append(f"SNS {arn}")
        if not parts:
            return "no destinations (set PENDO_SYNC_SLACK_WEBHOOK_URL or PENDO_SYNC_SNS_TOPIC_ARN)"
        return ", ".join(parts)

    def run_link(self, run_id: str) -> str:
        """The run's page in the Dagster UI, or "" when the UI's address is not configured."""
        base = _resolved(self.ui_base_url)
        return f"{base.rstrip('/')}/runs/{run_id}" if base else ""

    def send(self, alert: Alert) -> list[str]:
        """Deliver the alert (redacted) to every destination; the problems met, empty when all went well."""
        clean = Alert(
            title=redact(alert.title),
            text=redact(alert.text),
            sync=redact(alert.sync),
            run_id=redact(alert.run_id),
            link=redact(alert.link),
        )
        destinations: list[tuple[str, Callable[[Alert], str]]] = []
        mode = self._slack_mode()
        if mode == "webhook":
            destinations.append(("Slack webhook", self._post_webhook))
        elif mode == "api":
            destinations.append(("Slack chat.postMessage", self._post_message))
        if _resolved(self.sns_topic_arn):
            destinations.append(("SNS", self._publish_sns))
        problems = []
        for name, deliver in destinations:
            try:
                problem = deliver(clean)
            # Any failure of one destination (network, HTTP, AWS, a malformed setting) must neither stop
            # the others nor fail the caller; it is reported instead.
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                message = redact(f"{name}: {problem}")
                log.warning("alert %r not delivered: %s", clean.title, message)
                problems.append(message)
        return problems

    def _slack_text(self, alert: Alert) -> str:
        return "\n".join(part for part in (f"*{alert.title}*", alert.text, alert.link) if part)

    def _post_webhook(self, alert: Alert) -> str:
        response = httpx.post(
            self._webhook_url(),
            json={"text": self._slack_text(alert)},
            timeout=SLACK_TIMEOUT_SECONDS,
        )
        if response.is_success:
            return ""
        return f"HTTP {response.status_code} {response.text[:200]}".strip()

    def _post_message(self, alert: Alert) -> str:
        response = httpx.post(
            f"{_resolved(self.slack_api_url).rstrip('/')}/chat.postMessage",
            headers={"Authorization": f"Bearer {self._token()}"},
            json={"channel": _resolved(self.slack_channel), "text": self._slack_text(alert)},
            timeout=SLACK_TIMEOUT_SECONDS,
        )
        if not response.is_success:
            return f"HTTP {response.status_code} {response.text[:200]}".strip()
        # Slack answers HTTP 200 even when it refuses the message; the verdict is in the body.
        body = response.json()
        if not body.get("ok"):
            return f"Slack refused the message: {body.get('error', 'unknown error')}"
        return ""

    def _publish_sns(self, alert: Alert) -> str:
        client = boto3.client(
            "sns",
            region_name=_resolved(self.aws_region) or "us-east-1",
            endpoint_url=_resolved(self.sns_endpoint_url) or None,
        )
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (("sync", alert.sync), ("run_id", alert.run_id))
            if value
        }
        client.publish(
            TopicArn=_resolved(self.sns_topic_arn),
            Subject=_sns_subject(alert.title),
            Message="\n".join(part for part in (alert.text or alert.title, alert.link) if part),
            MessageAttributes=attributes,
        )
        return ""


def alerts_from_env() -> AlertsResource:
    """Alert settings from environment variables, as EnvVars so secrets are read at launch, never stored."""

    return AlertsResource(
        slack_webhook_url=env_or(variables.SLACK_WEBHOOK_URL),
        slack_webhook_url_secret_id=env_or(variables.SLACK_WEBHOOK_URL_SECRET_ID),
        slack_token=env_or(variables.SLACK_TOKEN),
        slack_token_secret_id=env_or(variables.SLACK_TOKEN_SECRET_ID),
        slack_channel=env_or(variables.SLACK_CHANNEL),
        sns_topic_arn=env_or(variables.SNS_TOPIC_ARN),
        aws_region=env_or(variables.AWS_REGION),
        sns_endpoint_url=env_or(variables.SNS_ENDPOINT_URL),
        ui_base_url=env_or(variables.UI_URL),
    )
