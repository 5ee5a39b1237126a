"""The one way resources read the environment: a dg.EnvVar where a variable is set (resolved at launch,
never stored in run config), else an embedded default."""

from __future__ import annotations

import os

import dagster as dg


def env_or(*names: str, default: str = "") -> str | dg.EnvVar:
    """dg.EnvVar of the first of `names` that is set, else `default`."""
    for name in names:
        if os.environ.get(name):
            return dg.EnvVar(name)
    return default
