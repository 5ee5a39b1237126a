"""Sensor ticks and schedule ticks on a real instance: the cursor each keeps, the runs each requests,
the alerts drift sends, and that a schedule's run config really runs its sync."""

import json

import dagster as dg
import pytest

from pendo_sync.dagster.build import build_definitions
from pendo_sync_tests.world import World


@pytest.fixture
def defs(duckdb_world: World, slack_server, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", duckdb_world.url)
    monkeypatch.setenv("PENDO_BASE_URL", duckdb_world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", duckdb_world.key)
    monkeypatch.setenv("PENDO_SYNC_SLACK_WEBHOOK_URL", slack_server.url)
    return build_definitions(duckdb_world.config)


def tick(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    sensor = defs.get_sensor_def(name)
    resources = {k: defs.resources[k] for k in sensor.required_resource_keys}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_drift_sensor_alerts_on_changes_and_resyncs_a_newly_present_mapped_column(
    duckdb_world: World, defs: dg.Definitions, slack_server
):
    world = duckdb_world
    world.sql("ALTER TABLE visitors DROP COLUMN nps")
    with dg.instance_for_test() as instance:
        first = tick(defs, "pendo_sync_schema_drift", instance, None)
        assert first.run_requests == [] and slack_server.messages == []
        assert "nps" not in json.loads(first.cursor)["tables"]["warehouse/visitors"]

        world.sql("ALTER TABLE visitors ADD COLUMN nps VARCHAR")
        world.sql("ALTER TABLE accounts ADD COLUMN region VARCHAR")
        world.emulator.add_field("account", "custom", "plan", "integer")  # someone retyped a field in Pendo
        second = tick(defs, "pendo_sync_schema_drift", instance, first.cursor)

        (request,) = second.run_requests
        assert request.asset_selection == [dg.AssetKey(["pendo", "visitors"])]
        assert request.tags["pendo_sync/reason"] == "new mapped column nps"
        assert request.run_config == {"ops": {"pendo__visitors": {"config": {"mode": "full"}}}}
        observed = {e.asset_key.to_user_string(): e for e in second.asset_events}
        assert set(observed) == {"warehouse/accounts", "warehouse/visitors"}
        assert observed["warehouse/accounts"].metadata["drift"].value == "added column region (varchar)"
        (message,) = slack_server.messages
        assert message["text"].splitlines()[:4] == [
            "*pendo_sync: schema drift*",
            "warehouse/accounts: added column region (varchar)",
            "warehouse/visitors: added column nps (varchar)",
            "Pendo account custom fields of sync accounts: field plan changed type: string -> integer",
        ]

        third = tick(defs, "pendo_sync_schema_drift", instance, second.cursor)
        assert third.run_requests == [] and len(slack_server.messages) == 1


def test_new_rows_sensor_requests_the_days_that_got_rows(duckdb_world: World, defs: dg.Definitions):
    world = duckdb_world
    with dg.instance_for_test() as instance:
        first = tick(defs, "pendo_sync_new_rows", instance, None)
        assert first.run_requests == []  # the first tick only records where the tables stand
        world.sql(
            "INSERT INTO visitors (visitor_id, role, updated_at) VALUES "
            "('late-1', 'viewer', '2026-10-20 08:00:00'), ('late-2', 'viewer', '2026-10-22 09:00:00')"
        )
        world.sql("UPDATE visitors SET updated_at = '2026-10-22 10:00:00' WHERE visitor_id = 'late-2'")
        second = tick(defs, "pendo_sync_new_rows", instance, first.cursor)
        wanted = [(r.partition_key, r.asset_selection) for r in second.run_requests]
        # Sample rows end on 2026-10-30, so these inserts are not past the newest key: nothing requested.
        assert wanted == []
        world.sql(
            "INSERT INTO visitors (visitor_id, role, updated_at) VALUES "
            "('new-1', 'viewer', '2026-11-02 08:00:00'), ('new-2', 'viewer', '2026-11-03 09:00:00')"
        )
        third = tick(defs, "pendo_sync_new_rows", instance, second.cursor)
        assert sorted(
            (r.partition_key, r.asset_selection[0].to_user_string()) for r in third.run_requests
        ) == [
            ("2026-11-02", "pendo/visitors_daily"),
            ("2026-11-03", "pendo/visitors_daily"),
        ]
        assert json.loads(third.cursor)["visitors"][0].startswith("2026-11-03T09:00:00")
        fourth = tick(defs, "pendo_sync_new_rows", instance, third.cursor)
        assert fourth.run_requests == []


def test_schedules_run_config_runs_the_sync_in_its_mode(duckdb_world: World, defs: dg.Definitions):
    world = duckdb_world
    schedule = defs.get_schedule_def("visitors_incremental")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        (request,) = data.run_requests
        result = defs.resolve_job_def("sync_visitors").execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags
        )
    assert result.success
    (version,) = world.store.versions.all("visitors")
    assert (version.mode, version.status) == ("incremental", "with_rejects")  # the n/a NPS row
    nightly = defs.get_schedule_def("accounts_nightly_full")
    assert nightly.cron_schedule == "0 3 * * *"


@pytest.mark.parametrize("name", ["pendo_sync_new_rows", "pendo_sync_schema_drift"])
def test_a_sensor_tick_skips_naming_the_process_that_holds_the_duckdb_file(
    duckdb_world: World, defs: dg.Definitions, monkeypatch: pytest.MonkeyPatch, name: str
):
    """A run holds the DuckDB file: the tick skips with the reason, well within Dagster's sensor timeout
    (60 s), keeping its cursor, instead of waiting the 600 s a run waits and failing the tick."""
    from pathlib import Path

    from pendo_sync.warehouse import engines
    from pendo_sync_tests.warehouse.test_engines import hold_duckdb_file

    monkeypatch.setattr(engines, "SENSOR_DUCKDB_LOCK_WAIT_SECONDS", 0.5)
    path = Path(duckdb_world.url.removeprefix("duckdb:///"))
    holder = hold_duckdb_file(path, 60)
    try:
        with dg.instance_for_test() as instance:
            result = tick(defs, name, instance, '{"earlier": "cursor"}' if name.endswith("rows") else None)
    finally:
        holder.kill()
        holder.wait()
    assert result.run_requests == [] and result.skip_reason is not None
    assert result.skip_reason.skip_message == (
        f"the DuckDB file {path} stayed open in another process (PID {holder.pid}) for 0.5 s, and DuckDB lets "
        "one process at a time open a file; let that process finish (another run, a sensor tick) or stop it, "
        "or put the warehouse on PostgreSQL to run syncs at once. The next tick tries again."
    )
    if name.endswith("rows"):
        assert result.cursor == '{"earlier": "cursor"}'
