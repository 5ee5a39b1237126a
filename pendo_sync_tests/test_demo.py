"""`pendo-sync demo`, as `make demo` runs it, at a small size: a first run sends every row, a second sends
the day's changes, and `--fresh` starts over in the state the demo's Dagster runs use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pendo_sync.demo.run import run_demo


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PENDO_SYNC_WAREHOUSE_URL", "PENDO_SYNC_STATE_URL", "PENDO_SYNC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PENDO_SYNC_HOME", str(tmp_path / "home"))
    # The demo sets these for its Dagster runs; setting them here has them restored after the test.
    for name in ("DAGSTER_HOME", "PENDO_BASE_URL", "PENDO_INTEGRATION_KEY"):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("DAGSTER_HOME")


def sent(out: str) -> dict[str, int]:
    """asset -> records sent, from the demo's summary lines of its last run."""
    last = out.rsplit("Dagster run ", 1)[1]
    return {
        m[1]: int(m[2].replace(",", ""))
        for m in re.finditer(r"(pendo/\w+)\s+read\s+[\d,]+\s+sent\s+([\d,]+)", last)
    }


def test_demo_fresh_starts_over_in_the_state_schema_the_demo_uses(
    demo_env: None, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PENDO_SYNC_STATE_SCHEMA", "demo_state")
    assert run_demo(accounts=100, visitors=500) == 0
    out, err = capfd.readouterr()
    first = sent(out)
    # The demo's runs log at INFO: progress and summaries, not Dagster's step-by-step DEBUG events.
    assert " - DEBUG - " not in out + err
    assert " - INFO - " in out + err
    assert first["pendo/accounts"] > 90 and first["pendo/visitors"] > 450
    assert run_demo(accounts=100, visitors=500) == 0
    assert sent(capfd.readouterr().out)["pendo/visitors"] == 0  # nothing changed in visitors
    assert run_demo(accounts=100, visitors=500, fresh=True) == 0
    assert sent(capfd.readouterr().out) == first  # a new emulator and new state: every row again
