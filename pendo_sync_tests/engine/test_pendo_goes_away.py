"""Pendo going away mid-run (its address refusing connections through every retry) stops the run as
failed, exit 4, naming the URL; what Pendo confirmed before stays confirmed and the rest is sent by the
next run. The run went on batch after batch, each giving up after its retries, and ended `with_rejects`
(exit 0 under --accept-rejects), as if Pendo had refused those rows."""

from __future__ import annotations

import threading
import time

import pytest

from pendo_sync.engine.delivery import FatalDeliveryError
from pendo_sync.engine.run import RunOptions, run_sync
from pendo_sync.pendo.client import PendoClient
from pendo_sync.pendo.emulator import EmulatorServer
from pendo_sync_tests.world import World


def test_a_pendo_that_stops_answering_fails_the_run_and_the_next_run_sends_the_rest(duckdb_world: World):
    world = duckdb_world
    world.emulator.settings.fixed_latency_s = 0.02
    server = EmulatorServer(world.emulator).start()
    url = server.base_url

    def stop_after_some() -> None:
        deadline = time.monotonic() + 30
        while world.emulator.stats()["records_updated"] < 300 and time.monotonic() < deadline:
            time.sleep(0.002)
        server.stop()

    stopper = threading.Thread(target=stop_after_some)
    stopper.start()
    with pytest.raises(FatalDeliveryError) as raised:
        run_sync(
            world.spec("visitors"),
            world.engine,
            world.store,
            lambda: PendoClient(url, world.key, timeout_seconds=5),
            world.delivery,
            RunOptions(),
        )
    stopper.join()
    assert str(raised.value).startswith(f"sync 'visitors': Pendo stopped answering at {url} (")
    assert str(raised.value).endswith(
        "); what it confirmed is kept and the next run sends the rest: check that Pendo is reachable, then "
        "run again"
    )
    (version,) = world.store.versions.all("visitors")
    assert version.status == "failed"
    assert world.store.rejects.outstanding("visitors", kind="error") == []  # not refused: not sent
    confirmed = set(world.store.ledger.rows("visitors"))
    assert 0 < len(confirmed) < 1000

    world.emulator.settings.fixed_latency_s = 0.0
    again = world.run("visitors")
    assert again.status == "with_rejects"  # the demo's invalid and missing rows
    assert set(world.store.ledger.rows("visitors")) > confirmed
