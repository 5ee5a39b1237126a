"""Dagster resources: the warehouse, Pendo and the state store, configured from environment variables
(read through dg.EnvVar) with embedded defaults, so the same assets run on a laptop and in production.
They connect as the CLI does (pendo_sync/settings.py); a *_secret_id names an AWS Secrets Manager secret,
read when a run starts."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from pendo_sync import settings, variables
from pendo_sync.config import DeliverySettings
from pendo_sync.dagster.env import env_or
from pendo_sync.pendo.client import PendoClient, read_field_schemas
from pendo_sync.state.store import StateStore


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The warehouse the syncs read: an SQLAlchemy URL (redshift+psycopg2://, postgresql://, duckdb:///), its
    password optionally from AWS Secrets Manager (password_secret_id), read when the resource is set up."""

    url: str
    password_secret_id: str = ""
    _engine: Engine | None = PrivateAttr(default=None)
    _sensor_engine: Engine | None = PrivateAttr(default=None)
    _password: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._password = settings.warehouse_password(self.password_secret_id)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = settings.connect_warehouse(self.url, self._password)
        return self._engine

    def sensor_engine(self) -> Engine:
        """The engine for a sensor tick: a DuckDB file a run holds is waited for briefly (engines.py)."""
        if self._sensor_engine is None:
            self._sensor_engine = settings.connect_warehouse(self.url, self._password, for_sensor=True)
        return self._sensor_engine


class StateResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the ledger, rejects and versions live: a schema of the warehouse, or a separate database
    (state_url) when the sync may only read the warehouse."""

    schema_name: str = "pendo_sync"
    state_url: str = ""
    password_secret_id: str = ""  # the state database's password (AWS Secrets Manager), when state_url is set
    _store: StateStore | None = PrivateAttr(default=None)
    _password: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.state_url:
            self._password = settings.state_password(self.password_secret_id)

    def store(self, warehouse: WarehouseResource) -> StateStore:
        if self._store is None:
            self._store = settings.connect_state(
                warehouse.engine(), self.state_url, self._password, self.schema_name
            )
        return self._store


class PendoResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Pendo's Integration API: base URL (a region name or URL) and the integration key, or the AWS Secrets
    Manager secret that holds it (integration_key_secret_id wins; read when the resource is set up)."""

    base_url: str
    integration_key: str
    integration_key_secret_id: str = ""
    _key: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._key = settings.integration_key(self.integration_key, self.integration_key_secret_id)

    def client(self, delivery: DeliverySettings | None = None) -> PendoClient:
        return settings.connect_pendo(
            self.base_url, self._key or self.integration_key, delivery or DeliverySettings()
        )

    def field_schemas(self, kinds: set[str]) -> dict[str, dict[str, Any]]:
        """kind -> Pendo's field schema of that kind (one call a kind)."""
        return read_field_schemas(self.client, kinds)


def build_resources(state_schema: str = "pendo_sync") -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """Resources for this deployment: environment variables where set, the local defaults otherwise.
    A *_SECRET_ID variable names an AWS Secrets Manager secret read at run start instead (docs/DEPLOY.md)."""
    return {
        "pendo_sync_warehouse": WarehouseResource(
            url=env_or(variables.WAREHOUSE_URL, variables.default_warehouse_url()),
            password_secret_id=env_or(variables.WAREHOUSE_PASSWORD_SECRET_ID),
        ),
        "pendo_sync_pendo": PendoResource(
            base_url=env_or(variables.PENDO_BASE_URL),
            integration_key=env_or(variables.PENDO_INTEGRATION_KEY),
            integration_key_secret_id=env_or(variables.PENDO_INTEGRATION_KEY_SECRET_ID),
        ),
        "pendo_sync_state": StateResource(
            schema_name=env_or(variables.STATE_SCHEMA, state_schema),
            state_url=env_or(variables.STATE_URL),
            password_secret_id=env_or(variables.STATE_PASSWORD_SECRET_ID),
        ),
    }
