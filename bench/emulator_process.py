"""The Pendo emulator as a separate process (`python -m pendo_sync.cli emulator`), with the latency model
and concurrency limit of the benchmark, and its admin endpoints for per-run figures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

KEY = "emulator-key"


@dataclass(frozen=True)
class LatencyModel:
    """What one write call costs in the emulator: fixed_ms + per_record_us * records, and at most
    max_concurrent calls at once (the next one answers 429 with Retry-After: retry_after_s; 0: no limit)."""

    fixed_ms: float = 150.0
    per_record_us: float = 20.0
    max_concurrent: int = 16
    retry_after_s: float = 1.0

    @classmethod
    def none(cls) -> LatencyModel:
        """No latency and no concurrency limit: what the emulator's own CPU can serve."""
        return cls(fixed_ms=0.0, per_record_us=0.0, max_concurrent=0)

    def describe(self) -> str:
        limit = (
            f"{self.max_concurrent} calls at once (429, Retry-After {self.retry_after_s:g} s)"
            if self.max_concurrent
            else "no limit on calls at once"
        )
        return f"{self.fixed_ms:g} ms per call + {self.per_record_us:g} us per record, {limit}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorProcess:
    """`with EmulatorProcess(model, seed) as emulator:` serves on a free port until the block ends."""

    def __init__(self, model: LatencyModel, seed: dict[str, Any], cwd: Path) -> None:
        self.model, self.seed, self.cwd = model, seed, cwd
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._seed_dir = tempfile.TemporaryDirectory(prefix="pendo-bench-")

    def __enter__(self) -> EmulatorProcess:
        seed_path = Path(self._seed_dir.name) / "seed.json"
        seed_path.write_text(json.dumps(self.seed))
        m = self.model
        command = [
            sys.executable,
            "-m",
            "pendo_sync.cli",
            "emulator",
            f"--port={self.port}",
            f"--seed={seed_path}",
            f"--key={KEY}",
            f"--latency-ms={m.fixed_ms}",
            f"--per-record-us={m.per_record_us}",
            f"--max-concurrent={m.max_concurrent}",
            f"--retry-after={m.retry_after_s}",
        ]
        self._proc = subprocess.Popen(command, cwd=self.cwd, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the emulator exited at start (code {self._proc.returncode})")
            try:
                httpx.get(f"{self.base_url}/_emulator/stats", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"the emulator did not answer on {self.base_url} within {timeout_s:g} s")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._seed_dir.cleanup()

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used so far (Linux /proc; 0.0 elsewhere)."""
        if self._proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def reset_stats(self) -> None:
        httpx.delete(f"{self.base_url}/_emulator/stats", timeout=30.0).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_emulator/stats", timeout=60.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats
