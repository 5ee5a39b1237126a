"""The Dagster UI loads the code location from workspace.yaml and shows the assets, checks, jobs,
schedules and sensors (asked through the webserver's own GraphQL API, as the UI does)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
