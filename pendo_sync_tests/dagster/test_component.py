"""pendo_sync inside a team's own Dagster project: a project made with Dagster's own scaffolding (offline,
from the installed packages), the component added with `dg scaffold defs`, checked and listed with dg;
automation after the upstream model on a real instance; and `dg launch` in this repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from pendo_sync.dagster.build import AUTOMATION_SENSOR
from pendo_sync.dagster.component import PendoSyncComponent
from pendo_sync_tests.world import World

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UPSTREAM = '''import dagster as dg


@dg.asset(key=["analytics", "accounts"], kinds={"dbt"})
def accounts() -> None:
    """Stand-in for the team's dbt model of its accounts."""
'''


def dg_env(project_src: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment (pendo_sync installed) as the active one, offline."""
    env = dict(os.environ, VIRTUAL_ENV=str(BIN.parent), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env["DAGSTER_DG_UPDATE_CHECK_ENABLED"] = "0"
    if project_src is not None:
        env["PYTHONPATH"] = str(project_src)
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def team_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A new project, as `create-dagster project` makes it, with an upstream asset keyed like a dbt model."""
    where = tmp_path_factory.mktemp("team")
    made = run([str(BIN / "create-dagster"), "project", "team_project", "--no-uv-sync"], where, dg_env())
    assert made.returncode == 0, made.stderr
    project = where / "team_project"
    (project / "src" / "team_project" / "defs" / "analytics.py").write_text(UPSTREAM)
    return project, dg_env(project / "src")


@pytest.mark.slow
def test_a_team_adds_pendo_sync_with_dg_and_dg_checks_and_lists_it(team_project: tuple[Path, dict[str, str]]):
    project, env = team_project
    components = run(["dg", "list", "components", "--json"], project, env)
    assert "pendo_sync.PendoSyncComponent" in {c["key"] for c in json.loads(components.stdout)["items"]}
    scaffolded = run(["dg", "scaffold", "defs", "pendo_sync.PendoSyncComponent", "pendo"], project, env)
    assert scaffolded.returncode == 0, scaffolded.stderr
    defs_yaml = project / "src" / "team_project" / "defs" / "pendo" / "defs.yaml"
    written = yaml.safe_load(defs_yaml.read_text())
    assert written["type"] == "pendo_sync.PendoSyncComponent"
    assert written["attributes"]["syncs"]["accounts"]["upstream"] == "analytics/accounts"

    checked = run(["dg", "check", "defs"], project, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = json.loads(run(["dg", "list", "defs", "--json"], project, env).stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert assets["pendo/accounts"]["dependency_keys"] == ["analytics/accounts"]
    assert assets["pendo/accounts"]["automation_condition"]["label"] == "eager"
    assert "warehouse/accounts" not in assets  # the team's own asset is the source: no second one
    assert AUTOMATION_SENSOR in {s["name"] for s in listed["sensors"]}

    written["attributes"]["syncs"]["accounts"]["kind"] = "acount"
    written["attributes"]["syncs"]["accounts"]["fields"]["seats"] = {"type": "int"}
    defs_yaml.write_text(yaml.safe_dump(written))
    broken = run(["dg", "check", "defs"], project, env)
    assert broken.returncode == 1
    output = broken.stdout + broken.stderr
    assert f"pendo_sync.config.ConfigError: 2 problem(s) in {defs_yaml}:" in output
    assert (
        "  - sync 'accounts': kind 'acount' is not one of visitor, account; set kind: visitor or kind: account"
        in output
    )
    assert (
        "  - sync 'accounts', column 'seats': unknown Pendo type 'int'; use one of string, boolean, integer, "
        "float, time, list" in output
    )


def automated_defs(world: World, changed: list[str], monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The team's project in one process: the upstream model (it updates `changed` accounts) and a
    PendoSyncComponent whose accounts sync follows it (automation: eager)."""
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)

    @dg.asset(key=["analytics", "accounts"], kinds={"dbt"})
    def model() -> None:
        for record_id in changed:
            world.sql(
                "UPDATE accounts SET plan = 'rebuilt', updated_at = TIMESTAMP '2026-11-30 12:00:00' "
                "WHERE account_id = :i",
                i=record_id,
            )

    raw = yaml.safe_load((ROOT / "pendo_sync" / "demo" / "syncs.yaml").read_text())
    accounts = {**raw["syncs"]["accounts"], "upstream": "analytics/accounts", "automation": "eager"}
    component = PendoSyncComponent(syncs={"accounts": accounts}, delivery=raw["delivery"])
    return dg.Definitions.merge(dg.Definitions(assets=[model]), component.definitions())


def test_materializing_the_upstream_model_leads_automation_to_sync_exactly_what_changed(
    duckdb_world: World, monkeypatch: pytest.MonkeyPatch
):
    world = duckdb_world
    world.run("accounts", mode="incremental")  # an earlier sync: Pendo already holds every account
    present = sorted(i for i, v in world.emulator.records("account").items() if v)
    changed = present[:3]
    defs = automated_defs(world, changed, monkeypatch)
    sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    pendo = dg.AssetKey(["pendo", "accounts"])
    with dg.instance_for_test() as instance:
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert before.total_requested == 0  # the upstream model was never built: nothing to follow yet
        built = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["analytics", "accounts"])]
        )
        assert built.success
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
        assert tick.get_requested_partitions(pendo) == {None}
        assert tick.total_requested == 1
        world.emulator.reset_stats()
        synced = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[pendo]
        )
        assert synced.success
        assert sorted(world.emulator.received_ids) == changed
        assert all(world.emulator.values_of("account", i)["plan"] == "rebuilt" for i in changed)
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert again.total_requested == 0


@pytest.mark.slow
def test_dg_launch_materializes_a_sync_of_the_repositorys_demo(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    env = dg_env(
        PENDO_SYNC_WAREHOUSE_URL=world.url,
        PENDO_BASE_URL=world.server.base_url,
        PENDO_INTEGRATION_KEY=world.key,
        DAGSTER_HOME=str(tmp_path),
    )
    env.pop("PENDO_SYNC_CONFIG", None)
    launched = run(["dg", "launch", "--assets", "pendo/accounts"], ROOT, env)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert world.store.ledger.count("accounts") == len(
        [v for v in world.emulator.records("account").values() if v]
    )
    assert world.store.versions.get("accounts").status == "complete"


def test_the_standalone_project_loads_through_the_component_and_honours_pendo_sync_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    import importlib

    import pendo_sync.definitions as definitions

    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)
    keys = {
        k.to_user_string()
        for k in importlib.reload(definitions).defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert {"pendo/accounts", "pendo/visitors", "warehouse/accounts"} <= keys
    raw = yaml.safe_load((ROOT / "pendo_sync" / "demo" / "syncs.yaml").read_text())
    del raw["syncs"]["visitors"]
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PENDO_SYNC_CONFIG", str(mine))
    keys = {
        k.to_user_string()
        for k in importlib.reload(definitions).defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert "pendo/accounts" in keys and "pendo/visitors" not in keys
