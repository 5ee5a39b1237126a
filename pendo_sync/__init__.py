"""pendo_sync: keep Pendo visitor and account fields in step with a data warehouse, run by Dagster.

`pendo_sync.PendoSyncComponent` is the Dagster component (dg list components shows it); it is imported
on first use, so the CLI and the engine start without Dagster.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "PendoSyncComponent":
        from pendo_sync.dagster.component import PendoSyncComponent

        return PendoSyncComponent
    raise AttributeError(f"module 'pendo_sync' has no attribute {name!r}")


def __dir__() -> list[str]:
    return ["PendoSyncComponent", "__version__"]
