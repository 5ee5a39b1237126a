"""How pendo_sync connects, from the environment (variables.py): the CLI resolves the variables when it
starts (`Settings.from_env()`, secrets included) and connects with `Settings.warehouse()`, `.state()`
and `.pendo()`. Dagster's resources take the same variables as `dg.EnvVar`s (dagster/resources.py) and
connect through the same `connect_*` functions, so a run behaves alike from either.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from pendo_sync.config import DeliverySettings
from pendo_sync.errors import UsageError
from pendo_sync.pendo.client import PendoClient
from pendo_sync.secrets import read_secret, register_secret
from pendo_sync.state.store import StateStore
from pendo_sync.variables import (
    PENDO_BASE_URL,
    PENDO_INTEGRATION_KEY,
    PENDO_INTEGRATION_KEY_SECRET_ID,
    STATE_PASSWORD_SECRET_ID,
    STATE_SCHEMA,
    STATE_URL,
    WAREHOUSE_PASSWORD_SECRET_ID,
    WAREHOUSE_URL,
    default_warehouse_url,
)
from pendo_sync.warehouse.engines import make_engine


def connect_warehouse(url: str, password: str | None = None, for_sensor: bool = False) -> Engine:
    return make_engine(url or default_warehouse_url(), password=password, for_sensor=for_sensor)


def connect_state(warehouse: Engine, state_url: str, password: str | None, schema: str) -> StateStore:
    """The state store: in the warehouse, or in the separate state database."""
    engine = make_engine(state_url, password=password, variable=STATE_URL.name) if state_url else warehouse
    return StateStore(engine, schema)


def connect_pendo(base_url: str, key: str, delivery: DeliverySettings) -> PendoClient:
    """A client with the delivery settings' request timeout and a connection per call in flight."""
    return PendoClient(base_url, key, delivery.request_timeout_seconds, delivery.concurrency * 2)


def warehouse_password(secret_id: str) -> str | None:
    if not secret_id:
        return None
    return read_secret(secret_id, "the warehouse password", WAREHOUSE_PASSWORD_SECRET_ID.name, "password")


def state_password(secret_id: str) -> str | None:
    if not secret_id:
        return None
    return read_secret(secret_id, "the state database password", STATE_PASSWORD_SECRET_ID.name, "password")


def integration_key(key: str, secret_id: str) -> str:
    """The key from its secret when one is named (it wins), else the plain value; registered for redaction.
    Whitespace around it goes (a key read from a file or a secret store often ends in a newline); a key that
    still holds a character an HTTP header cannot carry is refused here, before any call, without showing it."""
    if secret_id:
        key = read_secret(
            secret_id, "the Pendo integration key", PENDO_INTEGRATION_KEY_SECRET_ID.name, "integration_key"
        )
    key = key.strip()
    register_secret(key)
    unfit = next((c for c in key if not " " <= c <= "~"), None)
    if unfit is not None:
        where = (
            f"AWS Secrets Manager secret {secret_id!r} (set by {PENDO_INTEGRATION_KEY_SECRET_ID.name})"
            if secret_id
            else PENDO_INTEGRATION_KEY.name
        )
        what = (
            "a character outside ASCII (a typographic dash or quote)"
            if unfit > "\x7f"
            else "a control character (a line break, a tab)"
        )
        raise UsageError(
            f"{where} holds {what}, which an HTTP header cannot carry; set it to the key alone, as Pendo "
            "shows it (Settings > Integrations > Integration Keys)"
        )
    return key


@dataclass(frozen=True)
class Settings:
    """The environment as the CLI uses it, read once, secrets resolved."""

    warehouse_url: str
    warehouse_password: str | None
    state_url: str
    state_password: str | None
    state_schema: str
    pendo_base_url: str
    integration_key: str

    @classmethod
    def from_env(cls, warehouse_url: str | None = None) -> Settings:
        """`warehouse_url` (the CLI's --warehouse-url) wins over PENDO_SYNC_WAREHOUSE_URL."""
        state_url = STATE_URL.value()
        return cls(
            warehouse_url=warehouse_url or WAREHOUSE_URL.value() or default_warehouse_url(),
            warehouse_password=warehouse_password(WAREHOUSE_PASSWORD_SECRET_ID.value()),
            state_url=state_url,
            state_password=state_password(STATE_PASSWORD_SECRET_ID.value()) if state_url else None,
            state_schema=STATE_SCHEMA.value(),
            pendo_base_url=PENDO_BASE_URL.value(),
            integration_key=integration_key(
                PENDO_INTEGRATION_KEY.value(), PENDO_INTEGRATION_KEY_SECRET_ID.value()
            ),
        )

    def warehouse(self) -> Engine:
        return connect_warehouse(self.warehouse_url, self.warehouse_password)

    def state(self, warehouse: Engine, config_schema: str) -> StateStore:
        return connect_state(
            warehouse, self.state_url, self.state_password, self.state_schema or config_schema
        )

    def pendo(self, delivery: DeliverySettings) -> PendoClient:
        return connect_pendo(self.pendo_base_url, self.integration_key, delivery)
