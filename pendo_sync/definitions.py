"""The standalone project's code location: the same PendoSyncComponent a team drops into its own project,
loaded from this project's defs folder (pendo_sync/defs/pendo/defs.yaml: the demo's syncs), or, where
PENDO_SYNC_CONFIG names a config file, built from that file (existing deployments, the Docker image)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

import pendo_sync.defs
from pendo_sync.dagster.component import PendoSyncComponent
from pendo_sync.variables import CONFIG


def project_definitions() -> dg.Definitions:
    if CONFIG.value():
        return PendoSyncComponent(config_file=str(Path(CONFIG.value()).resolve())).definitions()
    return dg.load_defs(pendo_sync.defs, project_root=Path(pendo_sync.__file__).resolve().parents[1])


defs = project_definitions()
