"""A run says honestly how it went: `complete` (missing ids alone are not a failure), `with_rejects`,
`partial`, `failed`, in the outcome, in the state version, and in `pendo-sync run`'s exit code."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pendo_sync.config import FieldMapping, SyncSpec
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


def test_an_id_too_long_for_pendo_is_rejected_and_every_other_row_lands(every_world: World):
    long_id_case(every_world)


def one_field_sync(
    world: World, table: str, field: str, pendo_type: str, ids: list[str], **spec: Any
) -> SyncSpec:
    """A visitor sync of `table`'s `id` and one mapped column, Pendo holding the field and `ids`."""
    world.emulator.add_field("visitor", "custom", field, pendo_type)
    world.emulator.add_ids("visitor", ids)
    return SyncSpec(
        name=table, kind="visitor", group="custom", id_column="id", table=table,
        fields=(FieldMapping(field, field, pendo_type),), **spec,
    )  # fmt: skip


def long_id_case(world: World) -> None:
    """An id over 512 characters was rejected as invalid, then the reject itself did not fit the state's
    record_id (PostgreSQL: StringDataRightTruncation), so every run failed and no row ever landed. The
    reject now keeps a shortened id that stays the same from run to run; its reason gives the length."""
    world.sql("CREATE TABLE long_ids (id VARCHAR(1000) PRIMARY KEY, plan VARCHAR(16))")
    long_id = "z" * 600
    world.sql("INSERT INTO long_ids VALUES ('q1', 'ok'), ('q2', 'ok'), (:id, 'long')", id=long_id)
    spec = one_field_sync(world, "long_ids", "plan", "string", ["q1", "q2"])
    first = world.run(spec)
    assert first.status == "with_rejects"
    assert (first.counts["sent"], first.counts["confirmed"], first.counts["invalid"]) == (2, 2, 1)
    assert world.emulator.values_of("visitor", "q2")["plan"] == "ok"
    (reject,) = world.store.rejects.outstanding("long_ids")
    assert reject["kind"] == "invalid"
    assert reject["reason"] == (
        "id column 'id' holds 600 characters; Pendo ids (and the ledger) take at most 512"
    )
    assert len(reject["record_id"]) <= 512 and reject["record_id"].startswith("z" * 400)
    second = world.run(spec, mode="full")
    assert (second.counts["sent"], second.counts["invalid"]) == (0, 1)
    assert [r["record_id"] for r in world.store.rejects.outstanding("long_ids")] == [reject["record_id"]]


FAR_REASON = (
    "column 'seen_at' -> field 'seen_at': '10000-01-01 00:00:00' is a time after the year 9999 (or before "
    "the year 1), which pendo_sync cannot convert; correct it in the source"
)


def test_a_time_python_cannot_hold_rejects_its_row_only(world: World):
    """A time past the year 9999: psycopg2 could not read it and the whole run failed (invariant 7: one bad
    row never fails a run); DuckDB hands over its text. Now on both the row is an invalid reject naming the
    column and the fix, and every other row of the chunk lands."""
    world.sql("CREATE TABLE far_times (id VARCHAR(16) PRIMARY KEY, seen_at TIMESTAMP)")
    world.sql("INSERT INTO far_times VALUES ('q1', '2026-01-01'), ('q2', '10000-01-01'), ('q3', NULL)")
    spec = one_field_sync(world, "far_times", "seen_at", "time", ["q1", "q2", "q3"], time_format="iso8601")
    run = world.run(spec)
    assert run.status == "with_rejects"
    assert (run.counts["confirmed"], run.counts["invalid"]) == (2, 1)
    assert world.emulator.values_of("visitor", "q1")["seen_at"] == "2026-01-01T00:00:00.000+00:00"
    assert "seen_at" not in world.emulator.values_of("visitor", "q2")
    (reject,) = world.store.rejects.outstanding("far_times")
    assert (reject["record_id"], reject["kind"], reject["reason"]) == ("q2", "invalid", FAR_REASON)
    as_text = replace(spec, name="far_text", fields=(FieldMapping("seen_at", "seen_text", "string"),))
    world.emulator.add_field("visitor", "custom", "seen_text", "string")
    assert world.run(as_text).counts["confirmed"] == 3  # a string field takes the database's text
    assert world.emulator.values_of("visitor", "q2")["seen_text"] == "10000-01-01 00:00:00"
    world.sql("UPDATE far_times SET seen_at = '2027-01-01' WHERE id = 'q2'")
    again = world.run(spec)
    assert (again.status, again.counts["confirmed"]) == ("complete", 1)
    assert world.emulator.values_of("visitor", "q2")["seen_at"] == "2027-01-01T00:00:00.000+00:00"


def test_far_dates_and_arrays_of_them_reject_their_rows_on_postgresql(pg_world: World):
    """The same for a DATE, a TIMESTAMPTZ, an array of timestamps, and an interval too long for Python."""
    world = pg_world
    world.sql(
        "CREATE TABLE far_kinds (id VARCHAR(16) PRIMARY KEY, d DATE, tz TIMESTAMPTZ, a TIMESTAMP[], i INTERVAL)"
    )
    world.sql(
        "INSERT INTO far_kinds VALUES ('q1', '2026-01-01', '2026-01-01', '{2026-01-01}', '1 day'), "
        "('q2', '10000-01-01', '10000-01-01', '{2026-01-01,10000-01-01}', '100000000 years')"
    )
    fields = {"d": "time", "tz": "time", "a": "list", "i": "string"}
    for column, pendo_type in fields.items():
        world.emulator.add_field("visitor", "custom", column, pendo_type)
    world.emulator.add_ids("visitor", ["q1", "q2"])
    spec = SyncSpec(
        name="far_kinds", kind="visitor", group="custom", id_column="id", table="far_kinds",
        fields=tuple(
            FieldMapping(c, c, t, element_type="time" if t == "list" else "") for c, t in fields.items()
        ),
        time_format="iso8601",
    )  # fmt: skip
    run = world.run(spec)
    assert (run.counts["invalid"], run.status) == (2, "with_rejects")
    reasons = {r["record_id"]: r["reason"] for r in world.store.rejects.outstanding("far_kinds")}
    assert reasons["q2"] == (
        "column 'd' -> field 'd': '10000-01-01' is a time after the year 9999 (or before the year 1), which "
        "pendo_sync cannot convert; correct it in the source"
    )
    assert reasons["q1"] == (
        "column 'i' -> field 'i': an interval has no text form pendo_sync knows; cast the column to text in "
        "the sync's query"
    )


def test_rows_without_an_id_stay_rejected_through_full_runs(every_world: World):
    no_id_case(every_world)


def no_id_case(world: World) -> None:
    """A row with an empty or NULL id is an invalid reject kept as '(empty id)'; every full run then
    forgot it as an id gone from the source, so `rejects` no longer showed the row it still could not send."""
    world.sql("CREATE TABLE no_ids (id VARCHAR(16), plan VARCHAR(16))")
    world.sql("INSERT INTO no_ids VALUES ('q1', 'ok'), ('', 'empty'), (NULL, 'none')")
    spec = one_field_sync(world, "no_ids", "plan", "string", ["q1"])
    for _ in range(2):
        run = world.run(spec, mode="full")
        assert run.counts["invalid"] == 2
        kept = {(r["record_id"], r["reason"]) for r in world.store.rejects.outstanding("no_ids")}
        assert kept == {("(empty id)", "id column 'id' is empty")}
