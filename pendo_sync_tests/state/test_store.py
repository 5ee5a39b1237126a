"""The state store on PostgreSQL and DuckDB: batch outcomes, versions, revert, the run lock."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from pendo_sync.outcome import Reject, RunCounts
from pendo_sync.state.change_log import changed_fields
from pendo_sync.state.ledger import BatchOutcome
from pendo_sync.state.lock import SyncLocked
from pendo_sync.state.store import StateStore
from pendo_sync.state.versions import StateError
from pendo_sync.warehouse.engines import make_engine


@pytest.fixture
def store(warehouse_url: str) -> StateStore:
    state = StateStore(make_engine(warehouse_url), "pendo_sync")
    state.ensure_schema()
    return state


def test_batches_reach_ledger_and_rejects_together(store: StateStore) -> None:
    v1 = store.versions.begin("accounts", "run-1", "full", None)
    store.record_batch(
        "accounts",
        v1,
        "run-1",
        confirmed=[("a", "h1"), ("b", "h2")],
        rejects=[Reject("c", "h3", "missing", "account id not found in Pendo")],
        counts=RunCounts(sent=3, missing=1),
    )
    assert store.ledger.rows("accounts") == {"a": "h1", "b": "h2"}
    assert [
        (r["record_id"], r["kind"], r["reason"], r["run_id"]) for r in store.rejects.outstanding("accounts")
    ] == [("c", "missing", "account id not found in Pendo", "run-1")]
    # c confirmed later: its reject is gone; a changed: its hash replaced, never duplicated
    store.record_batch("accounts", v1, "run-1", confirmed=[("c", "h3"), ("a", "h9")])
    assert store.ledger.rows("accounts") == {"a": "h9", "b": "h2", "c": "h3"}
    assert store.rejects.outstanding("accounts") == []
    store.versions.finish("accounts", v1, "complete", dt.datetime(2026, 10, 2, 3, 4, 5), RunCounts(sent=5))
    latest = store.versions.get("accounts")
    assert latest is not None and (latest.status, latest.counts.sent) == ("complete", 5)
    assert store.versions.current_cursor("accounts") == dt.datetime(2026, 10, 2, 3, 4, 5)


def test_revert_forgets_rows_confirmed_after_the_version(store: StateStore) -> None:
    v1 = store.versions.begin("visitors", "r1", "full", None)
    store.record_batch("visitors", v1, "r1", confirmed=[("a", "h1"), ("b", "h1")])
    store.versions.finish("visitors", v1, "complete", 10, RunCounts())
    v2 = store.versions.begin("visitors", "r2", "incremental", 10)
    store.record_batch("visitors", v2, "r2", confirmed=[("b", "h2"), ("c", "h2")])
    store.versions.finish("visitors", v2, "complete", 20, RunCounts())
    assert store.versions.revert_plan("visitors", v1) == 2
    reverted = store.versions.revert("visitors", v1)
    # No cursor: b was confirmed at or below 10 (a look-back, a full run) and must be read again.
    assert (reverted.version, reverted.mode, reverted.cursor) == (3, "revert", None)
    assert store.ledger.rows("visitors") == {"a": "h1"}
    assert [v.version for v in store.versions.all("visitors")] == [1, 2, 3]
    with pytest.raises(StateError, match=r"sync 'visitors' has no state version 9; versions are \[1, 2, 3\]"):
        store.versions.revert("visitors", 9)


def test_lock_refuses_a_second_writer(store: StateStore) -> None:
    store.locks.acquire("accounts", "run-1")
    with pytest.raises(SyncLocked, match="sync 'accounts' is being written by run run-1"):
        store.locks.acquire("accounts", "run-2")
    store.locks.release("accounts", "run-1")
    store.locks.acquire("accounts", "run-2")


@pytest.mark.postgres
def test_a_schema_made_by_a_dba_is_enough_without_create_on_the_database(pg_url: str, pg_admin) -> None:
    role = f"pendo_sync_owner_{uuid.uuid4().hex[:8]}"
    database = pg_url.rsplit("/", 1)[1]
    admin = make_engine(pg_url)
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC'))
            conn.execute(sa.text(f'CREATE SCHEMA pendo_sync AUTHORIZATION "{role}"'))
        as_role = make_engine(pg_url.replace("postgres@", f"{role}@"))
        store = StateStore(as_role, "pendo_sync")
        store.ensure_schema()
        assert store.versions.all("accounts") == []
        as_role.dispose()
    finally:
        admin.dispose()
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


def test_ids_and_reasons_with_tabs_newlines_and_backslashes_are_stored_as_they_are(store: StateStore) -> None:
    # PostgreSQL writes batches with COPY, whose text format escapes these characters; DuckDB is given a
    # column as one text joined by the unit separator, unless an id holds it.
    awkward = ["tab\there", "new\nline", "back\\slash", "cr\rlf", "\\N", "ünï €", "unit\x1fsep", ""]
    v1 = store.versions.begin("visitors", "r1", "full", None)
    store.record_batch(
        "visitors",
        v1,
        "r1",
        confirmed=[(i, f"h{n}") for n, i in enumerate(awkward)],
        rejects=[Reject("bad\tid", "h9", "invalid", "column 'nps' -> field 'nps_score':\n'n/a'\\x")],
        new_ids=set(awkward),
    )
    assert store.ledger.rows("visitors") == {i: f"h{n}" for n, i in enumerate(awkward)}
    (reject,) = store.rejects.outstanding("visitors")
    assert (reject["record_id"], reject["reason"]) == (
        "bad\tid",
        "column 'nps' -> field 'nps_score':\n'n/a'\\x",
    )
    # Confirming a new id clears its outstanding reject.
    store.record_batch("visitors", v1, "r1", confirmed=[("bad\tid", "h9")], new_ids={"bad\tid"})
    assert store.rejects.outstanding("visitors") == []
    assert store.ledger.rows("visitors")["bad\tid"] == "h9"


@pytest.mark.postgres
def test_the_run_writer_reconnects_once_when_the_server_dropped_its_connection(pg_url: str, pg_admin) -> None:
    # One connection serves a run's batch writes; an idle disconnect between two slow batches (a restarted
    # server, a proxy's idle timeout) must cost a reconnect, not the run.
    from pendo_sync.state.ledger import BatchOutcome

    store = StateStore(make_engine(pg_url), "pendo_sync")
    store.ensure_schema()
    version = store.versions.begin("accounts", "run-1", "full", None)
    writer = store.batch_writer()
    writer.record_batch("accounts", version, "run-1", BatchOutcome.of([("a", "h1")]))
    database = pg_url.rsplit("/", 1)[1]
    with pg_admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :d AND pid <> pg_backend_pid()"
            ),
            {"d": database},
        )
    writer.record_batch("accounts", version, "run-1", BatchOutcome.of([("b", "h2")]))
    writer.close()
    assert store.ledger.rows("accounts") == {"a": "h1", "b": "h2"}


def test_a_change_of_more_field_names_than_the_log_holds_is_logged_as_every_field(store: StateStore) -> None:
    fields = [f"a_rather_long_pendo_field_name_{n:03d}" for n in range(113)]  # 3,615 characters joined
    v1 = store.versions.begin("visitors", "r1", "full", None)
    first = BatchOutcome.of(
        [("a", "h1")], new_ids={"a"}, field_hashes=[",".join(["0"] * 113)], fields=fields, log=True
    )
    store.record_batch("visitors", v1, "r1", batch=first)
    changed = BatchOutcome.of([("a", "h2")], field_hashes=[",".join(["1"] * 113)], fields=fields, log=True)
    store.record_batch("visitors", v1, "r1", batch=changed)
    with store.engine.connect() as conn:
        logged = conn.execute(
            sa.text("SELECT changed_fields FROM pendo_sync.change_log ORDER BY logged_at")
        ).all()
    assert [r[0] for r in logged] == ["*", "*"]  # not cut short: a query for any one field still finds it
    assert store.ledger.rows("visitors") == {"a": "h2"}


def test_fingerprints_not_kept_name_no_field_even_for_a_one_field_sync() -> None:
    assert changed_fields(["plan"], "", "0badf00d") == "*"  # a ledger row from before fingerprints
    assert changed_fields(["plan"], "0badf00d", "0badf00d") == ""
    assert changed_fields(["plan", "seats"], "1,2", "1,3") == "seats"


def test_the_change_log_shows_a_row_per_id_of_each_entry_whatever_the_ids_hold(store: StateStore) -> None:
    """Ids are kept joined by the unit separator, an entry for each group of a batch's rows alike; an id
    that holds the separator itself is an entry of its own, and the view shows every id whole."""
    v1 = store.versions.begin("visitors", "r1", "full", None)
    odd = ["plain", "with\x1fseparator", "\x1f", "tab\tand 'quote'", "ünï"]
    batch = BatchOutcome.of(
        [(i, "h") for i in odd],
        new_ids=set(odd),
        rejects=[Reject("bad\x1fone", "h", "invalid", "no"), Reject("bad2", "h", "invalid", "no")],
        cleared=["gone"],
        field_hashes=["1,2"] * len(odd),
        fields=["a", "b"],
        log=True,
    )
    store.record_batch("visitors", v1, "r1", batch=batch)
    with store.engine.connect() as conn:
        shown = conn.execute(
            sa.text(
                "SELECT record_id, operation, outcome, reason, changed_fields, run_id, version FROM pendo_sync.change_log"
            )
        ).all()
        entries = conn.execute(sa.text("SELECT count(*) FROM pendo_sync.change_log_entries")).scalar()
    assert sorted(tuple(r) for r in shown) == sorted(
        [(i, "upsert", "confirmed", None, "*", "r1", v1) for i in odd]
        + [
            ("bad\x1fone", "upsert", "invalid", "no", None, "r1", v1),
            ("bad2", "upsert", "invalid", "no", None, "r1", v1),
        ]
        + [("gone", "clear", "confirmed", None, "*", "r1", v1)]
    )
    assert entries == 6  # the three plain new ids share one; each id holding the separator has its own


def test_a_run_writer_clears_the_rejects_it_wrote_itself_and_writes_figures_at_most_each_second(
    store: StateStore,
) -> None:
    """The writer looks for rejects to clear only where the sync may have some: none when the run began
    (probed once), until the run writes one; a row it rejected and later confirmed leaves the rejects. The
    version's figures are written at most once a second during the run (finish writes the last)."""
    version = store.versions.begin("accounts", "run-1", "full", None)
    writer = store.batch_writer()
    writer.record_batch(
        "accounts",
        version,
        "run-1",
        BatchOutcome(rejects=[Reject("x", "h", "error", "HTTP 500")]),
        RunCounts(errors=1),
    )
    assert [r["record_id"] for r in store.rejects.outstanding("accounts")] == ["x"]
    writer.record_batch(
        "accounts", version, "run-1", BatchOutcome.of([("x", "h")], {"x"}), RunCounts(confirmed=1)
    )
    writer.close()
    assert store.rejects.outstanding("accounts") == []
    assert store.ledger.rows("accounts") == {"x": "h"}
    (running,) = store.versions.all("accounts")
    assert (running.counts.errors, running.counts.confirmed) == (1, 0)  # the second batch's came too soon
    store.versions.finish("accounts", version, "complete", None, RunCounts(errors=1, confirmed=1))
    (done,) = store.versions.all("accounts")
    assert (done.counts.errors, done.counts.confirmed) == (1, 1)
