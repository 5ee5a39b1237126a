"""Real materializations through Dagster on a real instance: both syncs into the emulator, a partition
range as one single-run backfill, the revert job, and failures that reach Slack through the run failure
sensor, with the instance's storage on PostgreSQL."""

import dataclasses
import datetime as dt
import json
from typing import Any

import dagster as dg
import pytest

from pendo_sync.dagster.build import build_definitions
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.expected import expected_fields
from pendo_sync_tests.world import ACCOUNTS, World, run_partition_range


@pytest.fixture
def defs_for(monkeypatch: pytest.MonkeyPatch):
    """Definitions whose resources point at a test world (environment variables, read through EnvVar)."""

    def build(world: World, **alerts: str) -> dg.Definitions:
        monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
        monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
        monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
        for name, value in alerts.items():
            monkeypatch.setenv(name, value)
        return build_definitions(world.config)

    return build


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_sync_all_materializes_both_syncs_into_pendo(world: World, defs_for):
    defs = defs_for(world)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_all").execute_in_process(instance=instance)
        assert result.success
        mats = materializations(result)
        assert mats["pendo/accounts"]["rows_read"] == ACCOUNTS
        assert mats["pendo/accounts"]["missing"] == ACCOUNTS // 50
        assert mats["pendo/accounts"]["status"] == "complete"
        assert mats["pendo/visitors"]["rejected"] == 1
        checks = {
            e.asset_check_evaluation_data.asset_check_key.asset_key.to_user_string(): e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert checks["pendo/accounts"].passed
        # Visible to the UI: the instance holds the materializations with their figures.
        latest = instance.get_latest_materialization_event(dg.AssetKey(["pendo", "accounts"]))
        assert latest.asset_materialization.metadata["updated"].value == ACCOUNTS - ACCOUNTS // 50
    for name, kind in (("accounts", "account"), ("visitors", "visitor")):
        expected = expected_fields(world.engine, world.spec(name))
        have = world.emulator.records(kind)
        want = {
            i: {f: v for f, v in vals.items() if v is not None} for i, vals in expected.items() if i in have
        }
        assert {i: v for i, v in have.items() if v} == {i: v for i, v in want.items() if v}


def test_partition_range_backfill_resyncs_exactly_those_days_and_leaves_the_cursor(
    duckdb_world: World, defs_for
):
    world = duckdb_world
    defs = defs_for(world)
    with dg.instance_for_test() as instance:
        result = run_partition_range(defs, instance, ["pendo", "visitors_daily"], "2026-10-03", "2026-10-05")
        assert result.success
        mats = result.get_asset_materialization_events()
        assert sorted(e.partition for e in mats) == ["2026-10-03", "2026-10-04", "2026-10-05"]
    in_range = world.sql(
        "SELECT visitor_id FROM visitors WHERE updated_at >= '2026-10-03' AND updated_at < '2026-10-06'"
    )
    assert sorted(world.emulator.received_ids) == sorted(r[0] for r in in_range if r[0] != _bad_nps(world))
    assert world.store.versions.current_cursor("visitors") is None  # a backfill never moves the live cursor


def _bad_nps(world: World) -> str:
    return world.sql("SELECT visitor_id FROM visitors WHERE nps = 'n/a'")[0][0]


def test_revert_job_from_run_config(duckdb_world: World, defs_for):
    world = duckdb_world
    first = world.run("accounts")
    world.sql("UPDATE accounts SET seats = 7 WHERE seats IS NOT NULL")
    world.run("accounts")
    defs = defs_for(world)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("revert_sync_state").execute_in_process(
            instance=instance,
            run_config={
                "ops": {"revert_state": {"config": {"sync": "accounts", "to_version": first.version}}}
            },
        )
        assert result.success
    reverted = world.store.versions.all("accounts")[-1]
    assert (reverted.mode, reverted.status) == ("revert", "complete")
    assert reverted.note.startswith(f"reverted to version {first.version}; ")
    assert world.store.versions.current_cursor("accounts") is None  # the next run diffs the whole table
    missing = {r["record_id"] for r in world.store.rejects.outstanding("accounts", kind="missing")}
    assert missing  # kept by the revert: still owed
    world.emulator.reset_stats()
    world.run("accounts")
    # Everything confirmed after version 1 (seats set to 7) goes again; the ids Pendo just reported
    # missing wait as their rejects say; nothing else.
    changed = [r[0] for r in world.sql("SELECT account_id FROM accounts WHERE seats IS NOT NULL")]
    assert sorted(world.emulator.received_ids) == sorted(set(changed) - missing)


@pytest.mark.postgres
def test_failed_run_on_postgres_storage_alerts_slack_and_sns_without_the_key(
    pg_world: World, pg_url: str, defs_for, slack_server, moto_sns
):
    world = pg_world
    world.key = "wrong-key-do-not-leak"
    defs = defs_for(
        world,
        PENDO_SYNC_SLACK_WEBHOOK_URL=slack_server.url,
        PENDO_SYNC_UI_URL="http://dagster.local:3000",
        PENDO_SYNC_SNS_TOPIC_ARN=moto_sns.topic_arn,
        PENDO_SYNC_SNS_ENDPOINT_URL=moto_sns.endpoint_url,
        AWS_REGION=moto_sns.region,
    )
    storage = {"storage": {"postgres": {"postgres_url": pg_url}}}
    with dg.instance_for_test(overrides=storage) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
        sensor = defs.get_sensor_def("pendo_sync_run_failure")
        context = dg.build_run_status_sensor_context(
            sensor_name="pendo_sync_run_failure",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"pendo_sync_alerts": defs.resources["pendo_sync_alerts"]},
        )
        sensor(context)
    (message,) = slack_server.messages
    assert message["text"].startswith("*pendo_sync: run of sync_accounts failed*")
    assert "Pendo refused the integration key (HTTP 401)" in message["text"]
    assert f"http://dagster.local:3000/runs/{result.run_id}" in message["text"]
    assert "wrong-key-do-not-leak" not in message["text"]
    (notification,) = moto_sns.received()
    assert notification["Subject"] == "pendo_sync: run of sync_accounts failed"
    assert "Pendo refused the integration key (HTTP 401)" in notification["Message"]
    assert notification["MessageAttributes"]["run_id"]["Value"] == result.run_id
    assert "wrong-key-do-not-leak" not in json.dumps(notification)
    # The preflight read of Pendo's field schema refused the key: the run stopped before writing any state.
    assert "on reading the account field schema" in message["text"]
    world.store.ensure_schema()
    assert world.store.versions.all("accounts") == []


def test_single_partition_of_a_day_without_rows_sends_nothing(duckdb_world: World, defs_for):
    world = duckdb_world
    defs = defs_for(world)
    day = (dt.date(2026, 10, 1) + dt.timedelta(days=40)).isoformat()
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["pendo", "accounts_daily"])], partition_key=day
        )
    assert result.success
    assert materializations(result)["pendo/accounts_daily"]["rows_read"] == 0
    assert world.emulator.stats()["write_calls"] == 0


def test_column_schema_change_check_sees_a_source_column_change_type(duckdb_world: World, defs_for):
    world = duckdb_world
    defs = defs_for(world)
    job = defs.resolve_job_def("sync_accounts")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        world.sql("ALTER TABLE accounts ALTER COLUMN seats TYPE BIGINT")
        second = job.execute_in_process(instance=instance)
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in second.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    changed = evaluations["column_schema_change"]
    assert not changed.passed
    assert "seats" in changed.description and "BIGINT".lower() in changed.description.lower()


def test_a_rejected_share_above_the_threshold_alerts_and_warns(duckdb_world: World, defs_for, slack_server):
    world = duckdb_world
    strict = dataclasses.replace(world.spec("accounts"), max_reject_share=0.01)
    world.config = dataclasses.replace(world.config, syncs=(strict, world.spec("visitors")))
    defs = defs_for(world, PENDO_SYNC_SLACK_WEBHOOK_URL=slack_server.url)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(instance=instance)
    assert result.success  # a warning, not a failure: the rows that could land did
    check = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "reject_share_below_threshold"
    )
    assert not check.passed and check.description == "rejected share 2.00% (threshold 1.00%)"
    (message,) = slack_server.messages
    assert message["text"].splitlines()[0] == "*pendo_sync: accounts rejected 2.0% of rows*"
    assert "4 missing, 0 rejected" in message["text"]


def test_a_mapped_column_that_disappeared_fails_its_check_naming_the_column(duckdb_world: World, defs_for):
    world = duckdb_world
    defs = defs_for(world)
    world.sql("ALTER TABLE accounts DROP COLUMN health_score")
    check = dg.AssetCheckKey(dg.AssetKey(["pendo", "accounts"]), "mapped_columns_present")
    only_check = dg.define_asset_job("check_columns", selection=dg.AssetSelection.checks(check))
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[only_check]))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("check_columns").execute_in_process(
            instance=instance, raise_on_error=False
        )
    (evaluation,) = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.description == "sync 'accounts': mapped column 'health_score' is no longer in accounts"


def step_failure(result: dg.ExecuteInProcessResult) -> Any:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return event.step_failure_data.user_failure_data


def test_a_run_pendo_refused_every_row_of_fails_with_its_figures(duckdb_world: World, defs_for):
    world = duckdb_world
    world.config = dataclasses.replace(
        world.config,
        delivery=dataclasses.replace(
            world.delivery, max_attempts=1, backoff_base_seconds=0.01, backoff_max_seconds=0.01
        ),
    )
    world.emulator.inject_faults([Fault("status", status=503, count=100_000)])
    defs = defs_for(world)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    failure = step_failure(result)
    assert failure.description == (
        f"sync 'accounts' failed: Pendo refused or failed every row it was sent ({ACCOUNTS} errors, the first: "
        "gave up after 1 attempts: HTTP 503: injected fault: HTTP 503); every row is retried by the next run"
    )
    assert failure.metadata["errors"].value == ACCOUNTS and failure.metadata["status"].value == "failed"
    (version,) = world.store.versions.all("accounts")
    assert version.status == "failed"


def test_a_blocking_reject_check_fails_above_its_threshold(duckdb_world: World, defs_for):
    world = duckdb_world
    strict = dataclasses.replace(world.spec("accounts"), max_reject_share=0.01, blocking_reject_check=True)
    world.config = dataclasses.replace(world.config, syncs=(strict, world.spec("visitors")))
    defs = defs_for(world)
    spec = next(
        s
        for s in defs.resolve_assets_def(dg.AssetKey(["pendo", "accounts"])).check_specs
        if s.name == "reject_share_below_threshold"
    )
    assert spec.blocking
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
    check = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "reject_share_below_threshold"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert not result.success  # a blocking check that fails fails the run, so the failure alerts fire


def test_a_source_query_the_warehouse_refuses_fails_the_step_with_the_clis_message(
    duckdb_world: World, defs_for
):
    world = duckdb_world
    columns = "account_id, CAST(plan AS INTEGER) AS plan, seats, arr, health_score, is_paying, renewal_date, updated_at"
    by_query = dataclasses.replace(
        world.spec("accounts"), table=None, query=f"SELECT {columns} FROM accounts"
    )
    world.config = dataclasses.replace(world.config, syncs=(by_query, world.spec("visitors")))
    defs = defs_for(world)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
    description = step_failure(result).description
    assert description.startswith(
        "sync 'accounts': the warehouse refused the source query: Conversion Error: "
    )
    assert description.endswith("; fix 'query' in the config")


def test_a_run_of_a_sync_named_like_a_daily_asset_carries_its_sync_tag(duckdb_world: World, defs_for):
    """The asset page's Materialize button launches the implicit asset job without tags: the run is tagged
    with its sync, whatever the sync's name (one ending in _daily was taken for a partitioned asset)."""
    world = duckdb_world
    accounts = dataclasses.replace(world.config.sync("accounts"), name="accounts_daily")
    world.config = dataclasses.replace(world.config, syncs=(accounts,))
    defs = defs_for(world)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["pendo", "accounts_daily"])]
        )
        assert result.success
        assert instance.get_run_by_id(result.run_id).tags["pendo_sync/sync"] == "accounts_daily"
