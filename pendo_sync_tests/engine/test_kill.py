"""Invariant 2: a run killed (SIGKILL) at any instant and run again leaves Pendo equal to the source,
resends at most the batches that were in flight, and never claims a row Pendo did not confirm.
The runs are real `pendo-sync run` processes against PostgreSQL and the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pendo_sync.config import DEMO_CONFIG
from pendo_sync_tests.expected import expected_fields
from pendo_sync_tests.world import World

BATCH, CONCURRENCY = 20, 4


def write_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["delivery"] = {"concurrency": CONCURRENCY, "batch_records": BATCH, "max_batch_records": BATCH}
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start_run(world: World, config: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PENDO_BASE_URL=world.server.base_url, PENDO_INTEGRATION_KEY="emulator-key")
    return subprocess.Popen(
        [sys.executable, "-m", "pendo_sync.cli", "--config", str(config), "--warehouse-url", world.url]
        + [
            "run",
            "visitors",
            "--mode",
            "full",
            "--accept-rejects",
            "--json",
        ],  # the demo's n/a NPS row is rejected
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
def test_killed_runs_resume_without_loss_or_false_claims(pg_world: World, tmp_path: Path):
    world = pg_world
    config = write_config(tmp_path)
    world.emulator.settings.fixed_latency_s = 0.05
    expected = expected_fields(world.engine, world.spec("visitors"))
    have = world.emulator.records("visitor")
    want = {i: {f: v for f, v in vals.items() if v is not None} for i, vals in expected.items() if i in have}

    for kill_after in (60, 300, 620):
        run = start_run(world, config)
        deadline = time.monotonic() + 60
        while world.emulator.stats()["records_received"] < kill_after:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        run.kill()
        run.wait()
        # Whatever the ledger claims at this instant, Pendo holds.
        for record_id in world.store.ledger.rows("visitors"):
            assert world.emulator.values_of("visitor", record_id) == want[record_id]
        world.emulator.settings.fixed_latency_s = 0.05

    final = start_run(world, config)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert '"status": "with_rejects"' in out
    assert {i: v for i, v in world.emulator.records("visitor").items() if v} == want
    assert set(world.store.ledger.rows("visitors")) == set(want)
    # Each kill may cost a resend of the batches then in flight, and no more.
    sent_twice = len(world.emulator.received_ids) - len(set(world.emulator.received_ids))
    assert sent_twice <= 3 * CONCURRENCY * BATCH
    statuses = [v.status for v in world.store.versions.all("visitors")]
    assert statuses == ["abandoned", "abandoned", "abandoned", "with_rejects"]


@pytest.mark.postgres
def test_sigterm_stops_a_run_as_ctrl_c_does_and_the_next_run_resumes(pg_world: World, tmp_path: Path):
    """ECS, Kubernetes and Dagster stop a run with SIGTERM: the run closes its version and releases its
    lock, so the next run (on any host) need not wait for the lock to go stale. SIGTERM killed the
    process outright, leaving the version running and the lock held for 15 minutes."""
    import signal

    world = pg_world
    config = write_config(tmp_path)
    world.emulator.settings.fixed_latency_s = 0.05
    run = start_run(world, config)
    deadline = time.monotonic() + 60
    while world.emulator.stats()["records_received"] < 100:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "pendo-sync: stopped by SIGTERM; the next run resumes where this one stopped"
    )
    assert world.sql("SELECT count(*) FROM pendo_sync.locks WHERE sync_name = 'visitors'") == [(0,)]
    assert world.sql("SELECT status, note FROM pendo_sync.versions WHERE sync_name = 'visitors'") == [
        (
            "failed",
            "stopped before its end (SIGTERM or Ctrl-C); what Pendo confirmed is kept, the next run sends the rest",
        )
    ]
    world.emulator.settings.fixed_latency_s = 0.0
    final = start_run(world, config)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert '"status": "with_rejects"' in out
