"""Dagster resources: the warehouse, Pendo and the state store, configured from environment variables
(read through dg.EnvVar) with embedded defaults, so the same assets run on a laptop and in production."""

from __future__ import annotations

import os
from functools import cached_property

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from pendo_sync.pendo.client import PendoClient
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import default_warehouse_url, make_engine

EMULATOR_URL = "http://127.0.0.1:8765"
EMULATOR_KEY = "emulator-key"


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The warehouse the syncs read: an SQLAlchemy URL (redshift+psycopg2://, postgresql://, duckdb:///)."""

    url: str
    _engine: Engine | None = PrivateAttr(default=None)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine


class StateResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the ledger, rejects and versions live: a schema of the warehouse, or a separate database
    (state_url) when the sync may only read the warehouse."""

    schema_name: str = "pendo_sync"
    state_url: str = ""
    _store: StateStore | None = PrivateAttr(default=None)

    def store(self, warehouse: WarehouseResource) -> StateStore:
        if self._store is None:
            engine = make_engine(self.state_url) if self.state_url else warehouse.engine()
            self._store = StateStore(engine, self.schema_name)
        return self._store


class PendoResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Pendo's Integration API: base URL (a region name or URL) and the integration key."""

    base_url: str
    integration_key: str
    timeout_seconds: float = 300.0

    def client(self, max_connections: int = 64) -> PendoClient:
        return PendoClient(self.base_url, self.integration_key, self.timeout_seconds, max_connections)

    @cached_property
    def host(self) -> str:
        return self.client().base_url


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """dg.EnvVar when the variable is set (resolved at launch, never stored), else the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(state_schema: str = "pendo_sync") -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """Resources for this deployment: environment variables where set, the local defaults otherwise."""
    return {
        "warehouse": WarehouseResource(url=_env_or("PENDO_SYNC_WAREHOUSE_URL", default_warehouse_url())),
        "pendo": PendoResource(
            base_url=_env_or("PENDO_BASE_URL", EMULATOR_URL),
            integration_key=_env_or("PENDO_INTEGRATION_KEY", EMULATOR_KEY),
        ),
        "state": StateResource(
            schema_name=_env_or("PENDO_SYNC_STATE_SCHEMA", state_schema),
            state_url=_env_or("PENDO_SYNC_STATE_URL", ""),
        ),
    }
