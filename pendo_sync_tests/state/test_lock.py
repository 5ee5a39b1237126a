"""When a run's lock is stale: its holder stopped writing batches, or was a process of this host that is gone."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

from pendo_sync.state.lock import LOCK_STALE_AFTER, is_stale

NOW = dt.datetime(2026, 12, 1, 12, 0)
HOST = socket.gethostname()


def test_a_lock_whose_holder_stopped_heartbeating_is_stale() -> None:
    assert is_stale(f"elsewhere:{os.getpid()}", NOW - LOCK_STALE_AFTER, NOW)
    assert not is_stale("elsewhere:123", NOW - LOCK_STALE_AFTER + dt.timedelta(seconds=1), NOW)


def test_a_lock_of_a_live_process_of_this_host_is_not_stale() -> None:
    assert not is_stale(f"{HOST}:{os.getpid()}", NOW, NOW)


def test_a_lock_of_a_dead_process_of_this_host_is_stale() -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert is_stale(f"{HOST}:{gone.stdout.strip()}", NOW, NOW)


def test_a_holder_of_another_host_or_without_a_pid_is_trusted_until_its_heartbeat_is_old() -> None:
    assert not is_stale("another-host:1", NOW, NOW)
    assert not is_stale(f"{HOST}:not-a-pid", NOW, NOW)
