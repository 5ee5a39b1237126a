"""The one way resources read the environment: a dg.EnvVar where a variable is set (resolved at launch,
never stored in run config), else its default (pendo_sync/variables.py names every variable)."""

from __future__ import annotations

import dagster as dg

from pendo_sync.variables import Variable


def env_or(variable: Variable, default: str | None = None) -> str | dg.EnvVar:
    """dg.EnvVar of the variable (or the first of its stand-ins) that is set, else its default."""
    name = variable.set_name()
    if name:
        return dg.EnvVar(name)
    return variable.default if default is None else default
