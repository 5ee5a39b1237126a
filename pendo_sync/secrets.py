"""Secrets: read from AWS Secrets Manager (the Pendo key, database passwords) when a run starts, so a bad
secret fails it at once; and kept out of every message (`redact`). Every secret read is registered for
redaction, so no alert, log line or error shows it (invariant 6)."""

from __future__ import annotations

import json
import re

from pendo_sync.errors import SyncFailed
from pendo_sync.variables import AWS_REGION, PENDO_INTEGRATION_KEY

_URL_PASSWORD = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@")
_SLACK_WEBHOOK = re.compile(
    r"(?P<prefix>https://hooks\.slack\.com/(?:services|triggers|workflows)/)[^\s\"'<>|]+"
)
_SLACK_TOKEN = re.compile(r"\b(?P<prefix>xox[a-z]-)[A-Za-z0-9-]+")

# Secrets that did not come from PENDO_INTEGRATION_KEY (AWS Secrets Manager, URL passwords): redacted all
# the same, wherever they appear, when they are long enough to hide only themselves: a password of a few
# letters, starred wherever those letters stood in ordinary words, garbled every message and told itself
# letter by letter. A short one is still hidden where it stands in a URL (_URL_PASSWORD).
_REGISTERED_SECRETS: set[str] = set()
MIN_REDACTED_LENGTH = 8


def register_secret(value: str) -> None:
    """Have `redact` hide this value from now on (if it is at least MIN_REDACTED_LENGTH long)."""
    if len(value) >= MIN_REDACTED_LENGTH:
        _REGISTERED_SECRETS.add(value)


def redact(text: str) -> str:
    """The text without secrets: the Pendo integration key (from the environment or registered), URL
    passwords, Slack webhook paths and tokens."""
    for secret in sorted({PENDO_INTEGRATION_KEY.value(), *_REGISTERED_SECRETS}, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<prefix>***@", text)
    text = _SLACK_WEBHOOK.sub(r"\g<prefix>***", text)
    return _SLACK_TOKEN.sub(r"\g<prefix>***", text)


class SecretUnavailable(SyncFailed):
    """A configured secret cannot be read; the message names the secret and the fix, never its value."""


def read_secret(secret_id: str, what: str, env_name: str, json_key: str) -> str:
    """The text of an AWS Secrets Manager secret; from a JSON secret (as RDS and Redshift store them), the
    value at `json_key`. Called when a resource is set up, so a bad secret fails the run at its start."""
    import boto3  # here: only a configured secret needs it, and the CLI starts faster without
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"{what} cannot be read from AWS Secrets Manager secret {secret_id!r} (set by {env_name})"
    try:
        client = boto3.client("secretsmanager", region_name=AWS_REGION.value() or None)
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
