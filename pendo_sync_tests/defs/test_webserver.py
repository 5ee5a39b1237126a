"""The Dagster UI loads the code location from workspace.yaml and shows the assets, checks, jobs,
schedules and sensors (asked through the webserver's own GraphQL API, as the UI does); the `dagster`
CLI materializes a sync."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pendo_sync_tests.world import ACCOUNTS, World

ROOT = Path(__file__).resolve().parents[2]
QUERY = """{
  repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    jobs { name }
    schedules { name }
    sensors { name }
  } } }
  assetNodes { assetKey { path } }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ui_shows_every_sync_asset_job_schedule_and_sensor(tmp_path: Path):
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), PENDO_SYNC_HOME=str(tmp_path / "home"))
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"), "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[1][-2000:]
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10
                ).json()
                if answer["data"]["repositoriesOrError"].get("nodes"):
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        assert answer is not None
        (repo,) = answer["data"]["repositoriesOrError"]["nodes"]
        assert {j["name"] for j in repo["jobs"]} >= {
            "sync_all",
            "sync_accounts",
            "sync_visitors",
            "revert_sync_state",
        }
        assert {s["name"] for s in repo["schedules"]} == {
            "accounts_incremental",
            "accounts_nightly_full",
            "visitors_incremental",
            "visitors_nightly_full",
        }
        assert {s["name"] for s in repo["sensors"]} == {
            "pendo_sync_schema_drift",
            "pendo_sync_new_rows",
            "pendo_sync_run_failure",
        }
        keys = {"/".join(n["assetKey"]["path"]) for n in answer["data"]["assetNodes"]}
        assert keys == {
            "warehouse/accounts",
            "warehouse/visitors",
            "pendo/accounts",
            "pendo/visitors",
            "pendo/accounts_daily",
            "pendo/visitors_daily",
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_dagster_asset_materialize_runs_a_sync(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = dict(
        os.environ,
        DAGSTER_HOME=str(tmp_path),
        PENDO_SYNC_WAREHOUSE_URL=world.url,
        PENDO_BASE_URL=world.server.base_url,
        PENDO_INTEGRATION_KEY=world.key,
    )
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pendo_sync.definitions"]
        + ["--select", "pendo/accounts"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    assert "UserWarning" not in done.stderr and "BetaWarning" not in done.stderr
    assert world.store.ledger_count("accounts") == ACCOUNTS - ACCOUNTS // 50
