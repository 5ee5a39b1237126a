"""The operator's view, without reading code: every reject with its reason (`pendo-sync rejects`, `state
show`, the materialization's metadata), Pendo read back (`verify`, `--repair`, the pendo_matches_source
check), the change log, and the run's summary and progress bar."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pendo_sync.dagster.build import build_definitions
from pendo_sync.engine.verify import verify
from pendo_sync.outcome import RunCounts
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.world import ACCOUNTS, World, write_config


def test_rejects_lists_every_outstanding_reject_with_its_history(duckdb_world: World, cli, tmp_path: Path):
    world = duckdb_world
    world.sql("CREATE TABLE visitors_copy AS SELECT * FROM visitors")
    (twice,) = world.sql("SELECT min(visitor_id) FROM visitors")[0]
    world.sql("INSERT INTO visitors_copy SELECT * FROM visitors WHERE visitor_id = :v", v=twice)

    def copy(raw: dict) -> None:
        raw["syncs"]["visitors"]["table"] = "visitors_copy"
        raw["delivery"] = {
            "batch_records": 100,
            "max_batch_records": 100,
            "concurrency": 1,
            "max_attempts": 1,
        }

    config = str(write_config(tmp_path, copy))
    world.emulator.inject_faults([Fault("status", status=503, count=1)])
    assert cli("--config", config, "run", "visitors", "--mode", "full", "--accept-rejects")[0] == 0
    code, out, err = cli("--config", config, "rejects", "visitors", "--format", "json", "--limit", "0")
    assert {r["kind"] for r in json.loads(out)} == {"missing", "invalid", "duplicate", "error"}
    assert cli("--config", config, "run", "visitors", "--mode", "full", "--accept-rejects")[0] == 0

    code, out, err = cli("--config", config, "rejects", "visitors", "--format", "json", "--limit", "0")
    rows = json.loads(out)
    assert {r["kind"] for r in rows} == {"missing", "invalid", "duplicate"}  # the errors landed on retry
    dup = next(r for r in rows if r["kind"] == "duplicate")
    assert (dup["record_id"], dup["attempts"]) == (twice, 2)  # both runs rejected it
    assert dup["first_rejected_at"] < dup["rejected_at"]
    invalid = next(r for r in rows if r["kind"] == "invalid")
    assert invalid["reason"] == "column 'nps' -> field 'nps_score': 'n/a' is not an integer"

    code, out, err = cli("--config", config, "rejects", "visitors", "--kind", "invalid", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert {r["kind"] for r in parsed} == {"invalid"} and set(parsed[0]) >= {
        "record_id",
        "reason",
        "attempts",
    }
    code, out, err = cli("--config", config, "rejects", "visitors", "--limit", "3")
    assert out.splitlines()[0].split() == [
        "id",
        "kind",
        "reason",
        "first",
        "seen",
        "last",
        "seen",
        "attempts",
    ]
    assert len(out.splitlines()) == 4 and err.startswith("3 of ")

    code, out, _ = cli("--config", config, "state", "show", "visitors")
    shown = json.loads(out)
    assert shown["rejects_by_kind"]["invalid"] == sum(1 for r in rows if r["kind"] == "invalid")
    top = shown["common_reasons"][0]
    assert top["kind"] == "missing" and top["reason"] == "visitor id not found in Pendo"
    assert top["count"] == shown["rejects_by_kind"]["missing"] and len(top["examples"]) == 2


def test_a_materialization_groups_the_reasons_and_samples_every_kind(duckdb_world: World, monkeypatch):
    world = duckdb_world
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(world.config)
            .resolve_job_def("sync_visitors")
            .execute_in_process(instance=instance)
        )
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    reasons = {
        (r.data["kind"], r.data["reason"]): r.data for r in mat.metadata["reject_reasons"].value.records
    }
    invalid = reasons[("invalid", "column 'nps' -> field 'nps_score': 'n/a' is not an integer")]
    assert invalid["count"] == 1
    known = world.emulator.records("visitor")
    valid = world.sql("SELECT visitor_id FROM visitors WHERE nps IS NULL OR nps <> 'n/a'")
    unknown = [record_id for (record_id,) in valid if record_id not in known]
    assert reasons[("missing", "visitor id not found in Pendo")]["count"] == len(unknown) > 0
    sample = {r.data["kind"] for r in mat.metadata["rejected_sample"].value.records}
    assert sample == {"missing", "invalid"}  # every kind met, not the first twenty rejects


def drift(world: World, n: int = 3) -> list[str]:
    """Values edited in Pendo behind the sync's back."""
    present = sorted(i for i, v in world.emulator.records("account").items() if v)[:n]
    for record_id in present:
        world.emulator.alter("account", record_id, {"plan": "edited in Pendo"})
    return present


@pytest.mark.parametrize("how", [["--all"], ["--sample", "1000"]])
def test_verify_finds_exactly_what_pendo_changed_and_repair_resends_exactly_that(
    duckdb_world: World, cli, how
):
    world = duckdb_world
    assert cli("run", "accounts", "--mode", "full")[0] == 0
    code, out, _ = cli("verify", "accounts", *how)
    assert code == 0 and out.startswith(
        f"sync 'accounts': {ACCOUNTS - ACCOUNTS // 50:,} confirmed ids compared"
    )
    altered = drift(world)
    code, out, _ = cli("verify", "accounts", *how, "--repair")
    assert code == 3
    lines = out.splitlines()
    assert (
        lines[0]
        == f"sync 'accounts': {ACCOUNTS - ACCOUNTS // 50:,} confirmed ids compared with Pendo, 3 differ"
    )
    assert sorted(line.split(":")[0].strip() for line in lines[1:4]) == altered
    assert "plan is 'edited in Pendo' in Pendo" in lines[1]
    world.emulator.reset_stats()
    assert cli("run", "accounts", "--mode", "incremental")[0] == 0  # past the cursor: only the repairs go
    assert sorted(world.emulator.received_ids) == altered
    assert all(world.emulator.values_of("account", i)["plan"] != "edited in Pendo" for i in altered)
    assert cli("verify", "accounts", *how)[0] == 0


@pytest.mark.parametrize("how", [["--all"], ["--sample", "1000"]])
def test_verify_compares_integers_and_times_exactly(duckdb_world: World, cli, how):
    """Every number was compared within a relative 1e-9: a time 1.5 s off (epoch milliseconds near 1.7e12)
    and an integer off by a few thousand near 9.2e18 were reported the same as the source."""
    world = duckdb_world
    assert cli("run", "accounts", "--mode", "full")[0] == 0
    first, second = sorted(i for i, v in world.emulator.records("account").items() if v)[:2]
    renewal = world.emulator.values_of("account", first)["renewal_date"]
    world.emulator.alter("account", first, {"renewal_date": renewal + 1500})
    world.sql("ALTER TABLE accounts ALTER seats TYPE BIGINT")
    world.sql("UPDATE accounts SET seats = 9223372036854775807 WHERE account_id = :a", a=second)
    assert cli("run", "accounts", "--mode", "full")[0] == 0
    world.emulator.alter("account", second, {"seats": 9223372036854770000})
    code, out, _ = cli("verify", "accounts", *how)
    assert code == 3
    lines = out.splitlines()
    assert lines[0].endswith("confirmed ids compared with Pendo, 2 differ"), out
    assert sorted(line.split(":")[0].strip() for line in lines[1:3]) == [first, second]


@pytest.mark.parametrize("how", [["--all"], ["--sample", "1000"]])
def test_verify_finds_the_records_pendo_lost_and_repair_resends_them(duckdb_world: World, cli, how):
    world = duckdb_world
    assert cli("run", "accounts", "--mode", "full")[0] == 0
    lost = sorted(i for i, v in world.emulator.records("account").items() if v)[:2]
    world.emulator.remove_ids("account", lost)  # deleted in Pendo, or a write acknowledged that never landed
    code, out, _ = cli("verify", "accounts", *how, "--repair")
    assert code == 3
    lines = out.splitlines()
    assert lines[0] == (
        f"sync 'accounts': {ACCOUNTS - ACCOUNTS // 50:,} confirmed ids compared with Pendo, 2 differ"
    )
    assert sorted(lines[1:3]) == [f"  {i}: no record in Pendo" for i in lost]
    assert lines[3:] == ["  the next run of accounts resends these 2 ids (drift rejects)"]
    world.emulator.add_ids("account", lost)  # the ids exist again: the resend lands
    world.emulator.reset_stats()
    assert cli("run", "accounts", "--mode", "incremental")[0] == 0
    assert sorted(world.emulator.received_ids) == lost
    assert cli("verify", "accounts", *how)[0] == 0


def test_verify_all_on_each_database_ignores_ids_the_ledger_never_had(world: World) -> None:
    """Pendo holds more than the sync wrote (anonymous visitors, other integrations' ids, any length):
    only the ledger's ids are compared and remembered, and the ones Pendo lacks are found."""
    world.run("accounts")
    lost = sorted(i for i, v in world.emulator.records("account").items() if v)[:2]
    world.emulator.remove_ids("account", lost)
    world.emulator.add_ids("account", ["x" * 600, "another integration's account"])

    async def read_back():  # type: ignore[no-untyped-def]
        async with world.client() as client:
            return await verify(world.spec("accounts"), world.engine, world.store, client, None, repair=True)

    result = asyncio.run(read_back())
    assert (result.checked, result.differing, result.repaired) == (ACCOUNTS - ACCOUNTS // 50, 2, 2)
    assert sorted(d.line() for d in result.examples) == [f"{i}: no record in Pendo" for i in lost]
    assert {r["record_id"] for r in world.store.rejects.outstanding("accounts", kind="drift")} == set(lost)


def test_the_pendo_matches_source_check_fails_with_the_count_and_examples(duckdb_world: World, monkeypatch):
    world = duckdb_world
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", world.url)
    monkeypatch.setenv("PENDO_BASE_URL", world.server.base_url)
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", world.key)
    world.run("accounts")
    altered = drift(world, 2)
    accounts = dataclasses.replace(world.spec("accounts"), verify_sample=ACCOUNTS)
    defs = build_definitions(dataclasses.replace(world.config, syncs=(accounts, world.spec("visitors"))))
    check = dg.AssetCheckKey(dg.AssetKey(["pendo", "accounts"]), "pendo_matches_source")
    job = dg.define_asset_job("verify", selection=dg.AssetSelection.checks(check))
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("verify").execute_in_process(instance=instance, raise_on_error=False)
    (evaluation,) = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert not evaluation.passed
    assert evaluation.metadata["differing"].value == 2
    assert all(record_id in evaluation.description for record_id in altered)


def test_the_change_log_says_what_each_run_did_to_each_row_and_is_pruned(world: World):
    logged = dataclasses.replace(world.spec("accounts"), change_log_retention_days=30)
    first = world.run(logged)
    rows = world.sql(
        "SELECT record_id, operation, outcome, changed_fields, reason FROM pendo_sync.change_log"
    )
    assert len(rows) == ACCOUNTS
    assert {(op, outcome, changed) for _, op, outcome, changed, _ in rows if outcome == "confirmed"} == {
        ("upsert", "confirmed", "*")
    }
    assert sum(1 for r in rows if r[2] == "missing") == ACCOUNTS // 50
    present = sorted(i for i, v in world.emulator.records("account").items() if v)
    changed, gone = present[:2], present[2]
    world.sql(
        "UPDATE accounts SET plan = 'changed', seats = 1 WHERE account_id IN (:a, :b)",
        a=changed[0],
        b=changed[1],
    )
    world.sql("DELETE FROM accounts WHERE account_id = :c", c=gone)
    second = world.run(logged)
    rows = world.sql(
        "SELECT record_id, operation, outcome, changed_fields FROM pendo_sync.change_log WHERE run_id = :r ORDER BY record_id",
        r=second_run_id(world, second.version),
    )
    assert sorted(rows) == sorted(
        [
            (changed[0], "upsert", "confirmed", "plan,seats"),
            (changed[1], "upsert", "confirmed", "plan,seats"),
            (gone, "clear", "confirmed", "*"),
        ]
    )
    # "When did Pendo get this value?" is one query:
    ((when,),) = world.sql(
        "SELECT max(logged_at) FROM pendo_sync.change_log WHERE record_id = :a AND outcome = 'confirmed' "
        "AND (changed_fields = '*' OR changed_fields LIKE '%plan%')",
        a=changed[0],
    )
    assert when is not None
    world.sql(
        "UPDATE pendo_sync.change_log_entries SET logged_at = TIMESTAMP '2020-01-01 00:00:00' "
        "WHERE version = :v",
        v=first.version,
    )
    world.run(logged)
    assert world.sql("SELECT count(*) FROM pendo_sync.change_log WHERE version = :v", v=first.version) == [
        (0,)
    ]
    assert world.sql(
        "SELECT count(*) FROM pendo_sync.change_log_entries WHERE version = :v", v=first.version
    ) == [(0,)]  # the newer runs' stay:
    assert world.sql("SELECT count(*) FROM pendo_sync.change_log WHERE version = :v", v=second.version) == [
        (3,)
    ]


def second_run_id(world: World, version: int) -> str:
    (run_id,) = world.sql(
        "SELECT run_id FROM pendo_sync.versions WHERE sync_name = 'accounts' AND version = :v", v=version
    )[0]
    return str(run_id)


def test_times_and_clears_go_in_the_form_the_sync_says(duckdb_world: World):
    world = duckdb_world
    spec = dataclasses.replace(world.spec("accounts"), time_format="iso8601", clear_with="empty_string")
    world.run(spec)
    dated = world.sql("SELECT account_id, renewal_date FROM accounts WHERE renewal_date IS NOT NULL")
    record_id, renewal = next((i, d) for i, d in dated if world.emulator.values_of("account", i))
    assert (
        world.emulator.values_of("account", record_id)["renewal_date"]
        == f"{renewal.isoformat()}T00:00:00.000+00:00"
    )
    world.sql("DELETE FROM accounts WHERE account_id = :a", a=record_id)
    world.emulator.reset_stats()
    world.run(spec)
    # Cleared with "", field by field: Pendo keeps "" in a string field, and empties any other type.
    assert world.emulator.values_of("account", record_id) == {"plan": ""}


def test_switching_the_time_format_resends_every_row_in_the_new_form(duckdb_world: World):
    # A wire setting is part of what was sent: changing it changes every row's sent value.
    world = duckdb_world
    world.run(world.spec("accounts"))
    dated = world.sql("SELECT account_id, renewal_date FROM accounts WHERE renewal_date IS NOT NULL")
    record_id, renewal = next((i, d) for i, d in dated if world.emulator.values_of("account", i))
    assert isinstance(world.emulator.values_of("account", record_id)["renewal_date"], int)
    outcome = world.run(world.spec("accounts", time_format="iso8601"))
    assert outcome.counts.sent == len(world.sql("SELECT account_id FROM accounts"))
    assert (
        world.emulator.values_of("account", record_id)["renewal_date"]
        == f"{renewal.isoformat()}T00:00:00.000+00:00"
    )
    # Back to the default: resent once more, as epoch milliseconds.
    outcome = world.run(world.spec("accounts"))
    assert outcome.counts.sent == len(world.sql("SELECT account_id FROM accounts"))
    assert isinstance(world.emulator.values_of("account", record_id)["renewal_date"], int)


def test_run_ends_with_a_summary_of_every_figure(cli):
    code, out, _ = cli("run", "accounts", "--mode", "full")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("accounts: complete in ")
    figures = {
        line.split()[0]: line.split()[1]
        for line in lines[2:]
        if line.startswith("  ") and not line.startswith("  note")
    }
    assert set(figures) == set(RunCounts().as_dict())
    assert figures["errors"] == "0" and figures["missing"] == f"{ACCOUNTS // 50:,}"


def test_a_terminal_gets_a_progress_bar_redrawn_and_cleaned_up(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    world.emulator.settings.fixed_latency_s = 0.1
    config = write_config(tmp_path, concurrency=1, batch_records=20, max_batch_records=20)
    main, child = pty.openpty()
    env = dict(
        os.environ, PENDO_BASE_URL=world.server.base_url, PENDO_INTEGRATION_KEY=world.key, COLUMNS="100"
    )
    command = [
        sys.executable,
        "-m",
        "pendo_sync.cli",
        "--config",
        str(config),
        "--warehouse-url",
        world.url,
        "run",
        "accounts",
        "--mode",
        "full",
    ]
    run = subprocess.Popen(command, stdin=child, stdout=subprocess.PIPE, stderr=child, env=env)
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif run.poll() is not None:
            break
    out, _ = run.communicate(timeout=30)
    os.close(main)
    terminal = seen.decode()
    frames = [f for f in terminal.split("\r") if f.startswith("accounts: [")]
    assert run.returncode == 0
    assert len(frames) >= 4  # at least four a second over a run of about a second (ten calls of 0.1 s)
    assert all(frame.endswith("\x1b[K") for frame in frames)  # each erases what was left of the last
    assert any("%" in f and "/200" in f and "/s" in f for f in frames)
    assert "0ss" not in terminal
    assert terminal.endswith("\r\x1b[K")  # the bar is gone before the summary
    assert out.decode().startswith("accounts: complete in ")


def test_a_bare_emulator_serves_the_demos_fields_and_ids(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    home = Path(world.url.removeprefix("duckdb:///")).parent
    (home / "warehouse.duckdb").exists() or pytest.fail("the world's warehouse is the demo's file")
    port = free_port()
    env = dict(os.environ, PENDO_SYNC_HOME=str(home))
    env.pop("PENDO_SYNC_CONFIG", None)
    world.engine.dispose()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pendo_sync.cli", "emulator", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        check = None
        while time.monotonic() < deadline:
            check = subprocess.run(
                [sys.executable, "-m", "pendo_sync.cli", "check"],
                env={**env, "PENDO_BASE_URL": f"http://127.0.0.1:{port}"},
                capture_output=True,
                text=True,
            )
            if "cannot reach Pendo" not in check.stderr:
                break
            time.sleep(0.3)
        assert check is not None and check.returncode == 0, check.stderr if check else ""
        assert check.stdout.splitlines()[0].startswith("accounts: OK;")
    finally:
        emulator.terminate()
        _, err = emulator.communicate(timeout=10)
    assert "Serving the demo's fields and the demo warehouse's" in err


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_changed_mapping_is_logged_as_a_change_of_the_fields_it_touched(world: World):
    logged = dataclasses.replace(world.spec("accounts"), change_log_retention_days=30)
    world.run(logged)
    retyped = dataclasses.replace(
        logged,
        fields=tuple(
            dataclasses.replace(m, field="seats_total") if m.field == "seats" else m for m in logged.fields
        ),
    )
    world.emulator.add_field("account", "custom", "seats_total", "integer")
    second = world.run(retyped)
    changed = world.sql(
        "SELECT DISTINCT changed_fields FROM pendo_sync.change_log WHERE version = :v AND outcome = 'confirmed'",
        v=second.version,
    )
    assert changed == [("seats_total",)]  # every row sent again, and the log says why
