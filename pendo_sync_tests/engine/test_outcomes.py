"""A run says honestly how it went: `complete` (missing ids alone are not a failure), `with_rejects`,
`partial`, `failed`, in the outcome, in the state version, and in `pendo-sync run`'s exit code."""

from __future__ import annotations

import json
from dataclasses import replace

from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.world import ACCOUNTS, TEST_DELIVERY, World, write_config

FAILING = replace(TEST_DELIVERY, max_attempts=2)


def test_a_run_whose_every_call_failed_is_failed_and_keeps_its_cursor(duckdb_world: World):
    world = duckdb_world
    world.emulator.inject_faults([Fault("status", status=500, count=100_000)])
    outcome = world.run("accounts", delivery=FAILING, mode="incremental")
    assert outcome.status == "failed"
    assert (outcome.counts["errors"], outcome.counts["confirmed"]) == (ACCOUNTS, 0)
    assert outcome.cursor is None
    (version,) = world.store.versions.all("accounts")
    assert (version.status, version.counts.errors, version.cursor) == ("failed", ACCOUNTS, None)


def test_a_partial_runs_figures_add_up_and_its_invalid_rows_are_recorded(duckdb_world: World):
    """The budget stops a run while rows it read are still queued: the figures count what was read (so
    read = sent + invalid + what the next run sends), and an invalid row that was read is a reject. Before,
    a chunk's figures came after its batches and were dropped: rows_read 0 with 40 rows sent."""
    world = duckdb_world
    world.emulator.settings.fixed_latency_s = 0.1
    tight = replace(
        world.delivery, runtime_budget_seconds=0.5, concurrency=1, batch_records=10, max_batch_records=10
    )
    outcome = world.run("visitors", delivery=tight)
    counts = outcome.counts
    assert outcome.status == "partial"
    assert counts["sent"] < counts["rows_read"] == 1000  # one chunk read whole; the rest waits
    assert counts["invalid"] == 1
    (bad,) = world.store.rejects.outstanding("visitors", kind="invalid")
    assert bad["reason"] == "column 'nps' -> field 'nps_score': 'n/a' is not an integer"
    (version,) = world.store.versions.all("visitors")
    assert (version.counts.rows_read, version.counts.invalid) == (1000, 1)


def test_invalid_values_make_a_run_with_rejects_and_missing_ids_alone_do_not(world: World):
    visitors = world.run("visitors")
    assert (visitors.status, visitors.counts["invalid"]) == ("with_rejects", 1)
    accounts = world.run("accounts")
    assert (accounts.status, accounts.counts["missing"]) == ("complete", ACCOUNTS // 50)
    statuses = {v.sync_name: v.status for s in ("visitors", "accounts") for v in world.store.versions.all(s)}
    assert statuses == {"visitors": "with_rejects", "accounts": "complete"}


def test_run_exits_zero_three_or_four_as_the_run_went(cli, duckdb_world: World, tmp_path):
    code, out, err = cli("run", "accounts", "--json")
    assert (code, json.loads(out.splitlines()[-1])["status"]) == (0, "complete")

    code, out, err = cli("run", "visitors", "--json")
    assert (code, json.loads(out.splitlines()[-1])["status"]) == (3, "with_rejects")
    assert err.splitlines()[-1] == (
        "pendo-sync: sync 'visitors': 1 row was not applied (1 invalid); each is retried by every later run "
        "(pendo-sync rejects visitors lists the reasons); pass --accept-rejects to exit 0 on rejects"
    )
    duckdb_world.sql("UPDATE visitors SET role = 'owner' WHERE nps = 'n/a'")
    code, out, err = cli("run", "visitors", "--accept-rejects", "--json")
    assert code == 0

    duckdb_world.emulator.inject_faults([Fault("status", status=503, count=100_000)])
    failing = write_config(tmp_path, max_attempts=1, backoff_base_seconds=0.01, backoff_max_seconds=0.01)
    duckdb_world.sql("UPDATE accounts SET seats = 1")
    code, out, err = cli("--config", str(failing), "run", "accounts", "--mode", "full", "--json")
    assert (code, json.loads(out.splitlines()[-1])["status"]) == (4, "failed")
    assert err.splitlines()[-1] == (
        f"pendo-sync: sync 'accounts' failed: Pendo refused or failed every row it was sent ({ACCOUNTS} "
        "errors, the first: gave up after 1 attempts: HTTP 503: injected fault: HTTP 503); every row is "
        "retried by the next run"
    )
