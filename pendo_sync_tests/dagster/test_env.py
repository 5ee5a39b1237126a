"""Resources read the environment as dg.EnvVars where a variable is set, its default otherwise."""

from __future__ import annotations

import dagster as dg
import pytest

from pendo_sync import variables
from pendo_sync.dagster.env import env_or


def test_a_set_variable_becomes_an_env_var_and_an_unset_one_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PENDO_BASE_URL", raising=False)
    assert env_or(variables.PENDO_BASE_URL) == "http://127.0.0.1:8765"
    assert env_or(variables.PENDO_BASE_URL, "http://other") == "http://other"
    monkeypatch.setenv("PENDO_BASE_URL", "eu")
    assert env_or(variables.PENDO_BASE_URL) == dg.EnvVar("PENDO_BASE_URL")


def test_a_stand_in_name_is_used_when_the_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert env_or(variables.AWS_REGION) == ""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert env_or(variables.AWS_REGION) == dg.EnvVar("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert env_or(variables.AWS_REGION) == dg.EnvVar("AWS_REGION")
