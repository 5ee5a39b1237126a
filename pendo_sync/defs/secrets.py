"""Secrets from AWS Secrets Manager (the Pendo key, database passwords), read when a resource is set up so a
bad secret fails the run at its start. Every value read is registered for redaction from alerts."""

from __future__ import annotations

import json
import os

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pendo_sync.defs.alerts import register_secret


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
