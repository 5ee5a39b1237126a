"""Dagster resources: the warehouse, Pendo and the state store, configured from environment variables
(read through dg.EnvVar) with embedded defaults, so the same assets run on a laptop and in production."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from pendo_sync.config import DeliverySettings
from pendo_sync.defs.env import env_or
from pendo_sync.defs.secrets import read_secret
from pendo_sync.pendo.client import EMULATOR_KEY, EMULATOR_URL, PendoClient, read_field_schemas
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import default_warehouse_url, make_engine


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The warehouse the syncs read: an SQLAlchemy URL (redshift+psycopg2://, postgresql://, duckdb:///), its
    password optionally from AWS Secrets Manager (password_secret_id), read when the resource is set up."""

    url: str
    password_secret_id: str = ""
    _engine: Engine | None = PrivateAttr(default=None)
    _password: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.password_secret_id:
            self._password = read_secret(
                self.password_secret_id,
                "the warehouse password",
                "PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID",
                "password",
            )

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url, password=self._password)
        return self._engine


class StateResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the ledger, rejects and versions live: a schema of the warehouse, or a separate database
    (state_url) when the sync may only read the warehouse."""

    schema_name: str = "pendo_sync"
    state_url: str = ""
    password_secret_id: str = ""  # the state database's password (AWS Secrets Manager), when state_url is set
    _store: StateStore | None = PrivateAttr(default=None)
    _password: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.state_url and self.password_secret_id:
            self._password = read_secret(
                self.password_secret_id,
                "the state database password",
                "PENDO_SYNC_STATE_PASSWORD_SECRET_ID",
                "password",
            )

    def store(self, warehouse: WarehouseResource) -> StateStore:
        if self._store is None:
            if self.state_url:
                engine = make_engine(self.state_url, password=self._password)
            else:
                engine = warehouse.engine()
            self._store = StateStore(engine, self.schema_name)
        return self._store


class PendoResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Pendo's Integration API: base URL (a region name or URL) and the integration key, or the AWS Secrets
    Manager secret that holds it (integration_key_secret_id wins; read when the resource is set up)."""

    base_url: str
    integration_key: str
    integration_key_secret_id: str = ""
    _key: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.integration_key_secret_id:
            self._key = read_secret(
                self.integration_key_secret_id,
                "the Pendo integration key",
                "PENDO_INTEGRATION_KEY_SECRET_ID",
                "integration_key",
            )

    def client(self, delivery: DeliverySettings | None = None) -> PendoClient:
        """A client with the delivery settings' request timeout and a connection per call in flight."""
        delivery = delivery or DeliverySettings()
        key = self._key or self.integration_key
        return PendoClient(self.base_url, key, delivery.request_timeout_seconds, delivery.concurrency * 2)

    def field_schemas(self, kinds: set[str]) -> dict[str, dict[str, Any]]:
        """kind -> Pendo's field schema of that kind (one call a kind)."""
        return read_field_schemas(self.client, kinds)


def build_resources(state_schema: str = "pendo_sync") -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """Resources for this deployment: environment variables where set, the local defaults otherwise.
    A *_SECRET_ID variable names an AWS Secrets Manager secret read at run start instead (docs/DEPLOY.md)."""
    return {
        "warehouse": WarehouseResource(
            url=env_or("PENDO_SYNC_WAREHOUSE_URL", default=default_warehouse_url()),
            password_secret_id=env_or("PENDO_SYNC_WAREHOUSE_PASSWORD_SECRET_ID"),
        ),
        "pendo": PendoResource(
            base_url=env_or("PENDO_BASE_URL", default=EMULATOR_URL),
            integration_key=env_or("PENDO_INTEGRATION_KEY", default=EMULATOR_KEY),
            integration_key_secret_id=env_or("PENDO_INTEGRATION_KEY_SECRET_ID"),
        ),
        "state": StateResource(
            schema_name=env_or("PENDO_SYNC_STATE_SCHEMA", default=state_schema),
            state_url=env_or("PENDO_SYNC_STATE_URL"),
            password_secret_id=env_or("PENDO_SYNC_STATE_PASSWORD_SECRET_ID"),
        ),
    }
