"""Asset checks on each Pendo asset: every mapped field exists in Pendo with a matching type, every mapped
column is still in the source with a type that fits, and Pendo holds the source's values (a sample read
back). (The rejected share is checked by the materialization itself, see assets.py.)"""

import asyncio

import dagster as dg

from pendo_sync.config import SyncSpec
from pendo_sync.dagster.assets import pendo_key
from pendo_sync.dagster.resources import PendoResource, StateResource, WarehouseResource
from pendo_sync.engine.preflight import pendo_problems, source_columns, type_warnings_seen
from pendo_sync.engine.verify import Verification, verify


def build_checks(spec: SyncSpec) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=pendo_key(spec),
        name="fields_match_pendo",
        description="Every mapped field exists in Pendo under the sync's kind and group, with a matching type.",
    )
    def fields_match_pendo(pendo_sync_pendo: PendoResource) -> dg.AssetCheckResult:
        problems = pendo_problems(spec, pendo_sync_pendo.field_schemas({spec.kind})[spec.kind])
        return dg.AssetCheckResult(
            passed=not problems,
            description="\n".join(problems) or "every mapped field exists with its type",
            metadata={"problems": len(problems)},
        )

    @dg.asset_check(
        asset=pendo_key(spec),
        name="mapped_columns_present",
        description="Every mapped column is still in the source, with a type that fits its Pendo field.",
    )
    def mapped_columns_present(
        pendo_sync_warehouse: WarehouseResource, pendo_sync_state: StateResource
    ) -> dg.AssetCheckResult:
        columns = source_columns(pendo_sync_warehouse.engine(), spec) or {}
        problems = type_warnings_seen(spec, columns, pendo_sync_state.store(pendo_sync_warehouse))
        gone = [m.column for m in spec.fields if m.column not in columns]
        return dg.AssetCheckResult(
            passed=not problems,
            # A column whose type does not fit still syncs the values that coerce (the rest are rejected
            # with reasons): a warning. A mapped column that is gone stops the sync: an error.
            severity=dg.AssetCheckSeverity.ERROR if gone else dg.AssetCheckSeverity.WARN,
            description="\n".join(problems) or "every mapped column is present and fits",
            metadata={"problems": len(problems)},
        )

    @dg.asset_check(
        asset=pendo_key(spec),
        name="pendo_matches_source",
        description=f"Pendo holds the source's values for {spec.verify_sample} confirmed ids picked at random "
        "(pendo-sync verify): a value edited in Pendo, another integration writing the field, a write that "
        "did not land.",
    )
    def pendo_matches_source(
        pendo_sync_pendo: PendoResource,
        pendo_sync_warehouse: WarehouseResource,
        pendo_sync_state: StateResource,
    ) -> dg.AssetCheckResult:
        store = pendo_sync_state.store(pendo_sync_warehouse)

        async def read_back() -> Verification:
            async with pendo_sync_pendo.client() as client:
                return await verify(spec, pendo_sync_warehouse.engine(), store, client, spec.verify_sample)

        result = asyncio.run(read_back())
        return dg.AssetCheckResult(
            passed=result.ok,
            description=result.summary(),
            metadata={
                "checked": result.checked,
                "differing": result.differing,
                "changed_since": result.changed_since,
            },
        )

    return [fields_match_pendo, mapped_columns_present, pendo_matches_source]
