"""pendo_sync as a Dagster component, for a team's own project: `dg scaffold defs
pendo_sync.PendoSyncComponent pendo` writes `defs/pendo/defs.yaml`, whose `attributes:` are a pendo_sync
config (syncs, delivery, state_schema), validated with pendo_sync's own messages (`dg check defs`).

    type: pendo_sync.PendoSyncComponent
    attributes:
      syncs:
        accounts:
          kind: account
          table: analytics.accounts
          upstream: analytics/accounts   # the asset that builds the table, a dbt model say
          automation: eager              # sync when it is rebuilt
          id_column: account_id
          fields:
            plan: {type: string}

Or `config_file: path/to/syncs.yaml` (relative to the defs.yaml), a pendo_sync config file as the CLI
reads it. The standalone project is the same component: pendo_sync/defs/pendo/defs.yaml names the demo's
config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from pendo_sync.config import ConfigError, ProjectConfig, load_config, parse_config
from pendo_sync.dagster.build import build_definitions

EXAMPLE: dict[str, Any] = {
    "syncs": {
        "accounts": {
            "description": "Plan and seats of each customer account.",
            "kind": "account",
            "group": "custom",
            "table": "analytics.accounts",
            "upstream": "analytics/accounts",
            "automation": "eager",
            "id_column": "account_id",
            "replication_key": "updated_at",
            "fields": {"plan": {"type": "string"}, "seats": {"type": "integer"}},
        }
    },
}


class PendoSyncScaffolder(dg.Scaffolder):  # type: ignore[type-arg]
    """Writes a defs.yaml with one working sync to adapt: a table, its upstream asset, two fields."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:  # type: ignore[type-arg]
        dg.scaffold_component(request, EXAMPLE)


@dg.scaffold_with(PendoSyncScaffolder)
class PendoSyncComponent(dg.Component, dg.Model, dg.Resolvable):
    """Keeps Pendo visitor and account fields in step with warehouse tables: a Pendo asset per sync (and a
    daily-partitioned one where it has a replication key), its checks, schedules, sensors and alerts.
    The warehouse, Pendo and the state store come from PENDO_SYNC_WAREHOUSE_URL, PENDO_BASE_URL,
    PENDO_INTEGRATION_KEY and friends (pendo_sync's README)."""

    syncs: dict[str, Any] | None = Field(
        default=None,
        description="The syncs, by name: each a table or query, an id column, a Pendo kind and group, and "
        "fields (pendo_sync's config, README: Configuration).",
    )
    config_file: str | None = Field(
        default=None, description="A pendo_sync config file instead of `syncs` (relative to this defs.yaml)."
    )
    delivery: dict[str, Any] | None = Field(
        default=None, description="Delivery settings shared by the syncs."
    )
    state_schema: str = Field(default="pendo_sync", description="Schema of the ledger, rejects and versions.")
    define_resources: bool = Field(
        default=True,
        description="Make the pendo_sync_* resources from the environment; false where the project defines them.",
    )

    def project_config(self, here: Path | None = None) -> ProjectConfig:
        """The attributes (or the config file they name) as a pendo_sync config; ConfigError names every
        problem with its place and its fix."""
        where = str(here / "defs.yaml") if here else "the component's attributes"
        if (self.syncs is None) == (self.config_file is None):
            raise ConfigError(["give exactly one of 'syncs' (the syncs, by name) or 'config_file'"], where)
        if self.config_file is not None:
            path = Path(self.config_file)
            return load_config(path if path.is_absolute() or here is None else here / path)
        raw: dict[str, Any] = {"syncs": self.syncs, "state_schema": self.state_schema}
        if self.delivery is not None:
            raw["delivery"] = self.delivery
        return parse_config(raw, where)

    def definitions(self, here: Path | None = None) -> dg.Definitions:
        return build_definitions(self.project_config(here), self.define_resources)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.definitions(Path(context.path))
