"""The Dagster code location: Definitions built from the sync config (PENDO_SYNC_CONFIG, or the demo)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pendo_sync.config import ProjectConfig, load_config
from pendo_sync.defs.assets import build_daily_asset, build_pendo_asset, build_source_asset, pendo_key
from pendo_sync.defs.resources import build_resources
from pendo_sync.defs.slices_io import SourceSliceIOManager


def build_definitions(config: ProjectConfig | None = None) -> dg.Definitions:
    """Everything Dagster shows for a config: assets, jobs, and the resources they run with."""
    config = config or load_config()
    sources: dict[dg.AssetKey, dg.SourceAsset] = {}
    assets: list[dg.AssetsDefinition] = []
    for spec in config.syncs:
        source = build_source_asset(spec)
        sources.setdefault(source.key, source)
        assets.append(build_pendo_asset(spec, config.delivery))
        if spec.replication_key:
            assets.append(build_daily_asset(spec, config.delivery))
    sync_all = dg.define_asset_job(
        "sync_all",
        selection=dg.AssetSelection.assets(*[pendo_key(s) for s in config.syncs]),
        description="Every live sync: incremental past each cursor (full where a sync has no replication key).",
    )
    resources: dict[str, Any] = build_resources(config.state_schema)
    resources["source_slices"] = SourceSliceIOManager(warehouse=resources["warehouse"])
    return dg.Definitions(assets=[*sources.values(), *assets], jobs=[sync_all], resources=resources)


defs = build_definitions()
