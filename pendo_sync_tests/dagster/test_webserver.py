"""The Dagster UI loads the code location from workspace.yaml and shows the assets, checks, jobs,
schedules and sensors (asked through the webserver's own GraphQL API, as the UI does); the `dagster`
CLI materializes a sync."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pendo_sync.pendo.emulator.limits import Fault
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
            "observe_sources",
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
            "pendo_sync_automation",
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


def dagster_env(world: World, home: Path) -> dict[str, str]:
    """Environment for a Dagster process on the test world, with the repo's instance config in `home`."""
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return dict(
        os.environ,
        DAGSTER_HOME=str(home),
        PENDO_SYNC_WAREHOUSE_URL=world.url,
        PENDO_BASE_URL=world.server.base_url,
        PENDO_INTEGRATION_KEY=world.key,
    )


@pytest.mark.slow
def test_dagster_asset_materialize_runs_a_sync(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    env = dagster_env(world, tmp_path)
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
    assert world.store.ledger.count("accounts") == ACCOUNTS - ACCOUNTS // 50


LAUNCH_RUN = """mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
RUN_ERRORS = """query($id: ID!) {
  runOrError(runId: $id) { ... on Run { eventConnection { events {
    ... on ExecutionStepFailureEvent { stepKey error { message } }
    ... on RunFailureEvent { message }
    ... on EngineEvent { message }
  } } } }
}"""
RUN_TIMES = """query($id: ID!) {
  runOrError(runId: $id) { ... on Run { startTime endTime tags { key value } } }
}"""
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status runs { runId } } }
}"""


class Dagster:
    """`dagster dev` (webserver and daemon) on a free port, spoken to through GraphQL as the UI does."""

    def __init__(self, url: str) -> None:
        self.url = url

    def gql(self, query: str, **variables: object) -> dict:
        answer = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=30).json()
        assert "errors" not in answer, answer
        return answer["data"]

    def wait(self, query: str, pick, done: set[str], timeout: float = 240, **variables: object) -> str:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = pick(self.gql(query, **variables))
            if status in done:
                return status
            time.sleep(1)
        raise AssertionError(f"still {status} after {timeout}s")


@pytest.mark.slow
def test_dagster_dev_launches_a_run_and_a_partition_backfill(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    port = free_port()
    env = dagster_env(world, tmp_path)
    dev = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        dagster = Dagster(f"http://127.0.0.1:{port}/graphql")
        _answers(dagster)
        dagster.wait(
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }",
            lambda d: "up" if d["repositoriesOrError"].get("nodes") else "",
            {"up"},
            timeout=120,
        )
        selector = {"repositoryLocationName": "pendo_sync", "repositoryName": "__repository__"}
        launched = dagster.gql(LAUNCH_RUN, params={"selector": {**selector, "jobName": "sync_accounts"}})
        assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["launchRun"]["run"]["runId"]
        status = dagster.wait(
            RUN_STATUS, lambda d: d["runOrError"]["status"], {"SUCCESS", "FAILURE", "CANCELED"}, id=run_id
        )
        assert status == "SUCCESS"
        assert world.store.ledger.count("accounts") == ACCOUNTS - ACCOUNTS // 50

        world.emulator.reset_stats()
        backfill = dagster.gql(
            LAUNCH_BACKFILL,
            params={
                "partitionNames": ["2026-10-03", "2026-10-04", "2026-10-05"],
                "assetSelection": [{"path": ["pendo", "visitors_daily"]}],
            },
        )
        assert backfill["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", backfill
        backfill_id = backfill["launchPartitionBackfill"]["backfillId"]
        status = dagster.wait(
            BACKFILL_STATUS,
            lambda d: d["partitionBackfillOrError"]["status"],
            {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"},
            id=backfill_id,
        )
        assert status in ("COMPLETED", "COMPLETED_SUCCESS")
        runs = dagster.gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]["runs"]
        assert len(runs) == 1  # BackfillPolicy.single_run: one run for the range
        in_range = world.sql(
            "SELECT visitor_id FROM visitors WHERE updated_at >= '2026-10-03' AND updated_at < '2026-10-06' "
            "AND (nps IS NULL OR nps <> 'n/a')"
        )
        assert sorted(world.emulator.received_ids) == sorted(r[0] for r in in_range)
        assert world.store.versions.current_cursor("visitors") is None

        # Two runs of one sync launched as an asset page's Materialize button does (the implicit asset
        # job, no tags): the second waits in the queue until the first is done, and each is tagged. The
        # first has every account to send and its first call takes 8 s.
        world.sql("UPDATE accounts SET plan = plan || ' (renamed)'")
        world.emulator.inject_faults([Fault(kind="slow", delay_s=8)])
        as_the_ui = {
            **selector,
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["pendo", "accounts"]}],
        }
        run_ids = []
        for _ in range(2):
            launched = dagster.gql(LAUNCH_RUN, params={"selector": as_the_ui})
            assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
            run_ids.append(launched["launchRun"]["run"]["runId"])
        for run_id in run_ids:
            status = dagster.wait(
                RUN_STATUS, lambda d: d["runOrError"]["status"], {"SUCCESS", "FAILURE", "CANCELED"}, id=run_id
            )
            assert status == "SUCCESS", dagster.gql(RUN_ERRORS, id=run_id)
        first, second = sorted(
            (dagster.gql(RUN_TIMES, id=run_id)["runOrError"] for run_id in run_ids),
            key=lambda r: r["startTime"],
        )
        assert second["startTime"] >= first["endTime"], (first, second)
        for run in (first, second):
            assert {"key": "pendo_sync/sync", "value": "accounts"} in run["tags"]
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)


def _answers(dagster: Dagster) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            dagster.gql("{ version }")
            return
        except (httpx.HTTPError, ValueError):
            time.sleep(1)
    raise AssertionError("dagster dev did not answer within 120 s")
