"""How strict and how slow the emulator is, and what it lets in: Pendo's limits (the call time limit,
concurrency and call-rate limits answered 429 with Retry-After) and faults injected on demand."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pendo_sync.pendo.client import EMULATOR_KEY


@dataclass
class EmulatorSettings:
    """How strict and how slow the emulator is; 0 disables a limit. Mutable while it serves (tests)."""

    integration_key: str = EMULATOR_KEY
    fixed_latency_s: float = 0.0  # each write call takes this, plus per_record_latency_s a record
    per_record_latency_s: float = 0.0
    call_time_limit_s: float = 300.0  # Pendo's five minutes: a call whose work runs past it answers 408
    max_concurrent: int = 0  # write calls in flight at once; more answer 429
    max_calls_per_s: float = 0.0  # leaky bucket over write calls; overflow answers 429
    retry_after_s: float = 1.0
    max_body_bytes: int = 0  # a gateway's body limit before Pendo (Pendo itself has none): over it, 413


FAULT_KINDS = ("status", "drop", "lost_answer", "slow", "429")


@dataclass
class Fault:
    """One injected fault, applied to the next write calls (after `after` calls pass untouched).

    kind: "status" answers `status` without applying; "drop" closes the connection without an answer
    and without applying; "lost_answer" applies the write, then drops the connection (Pendo did the work
    but the client cannot know); "slow" waits `delay_s` before handling normally; "429" answers 429
    with Retry-After `retry_after_s`.
    """

    kind: str
    status: int = 500
    count: int = 1
    after: int = 0
    delay_s: float = 0.0
    retry_after_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} ({', '.join(FAULT_KINDS)})")


class Limits:
    """The faults queued, and admission of write calls under the concurrency and rate limits."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.in_flight = 0
        self._bucket_level = 0.0
        self._bucket_at = time.monotonic()

    def inject(self, faults: list[Fault]) -> int:
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self) -> Fault | None:
        """The fault for this write call, if one is due."""
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._faults.pop(0)
            return fault

    def admit(self) -> bool:
        """Enter the write path (then `leave`), or False: Pendo's limits would answer 429."""
        s = self.settings
        with self._lock:
            if s.max_calls_per_s > 0:
                now = time.monotonic()
                self._bucket_level = max(
                    0.0, self._bucket_level - (now - self._bucket_at) * s.max_calls_per_s
                )
                self._bucket_at = now
                if self._bucket_level + 1 > s.max_calls_per_s:
                    return False
                self._bucket_level += 1
            if s.max_concurrent and self.in_flight >= s.max_concurrent:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def work_seconds(self, records: int) -> float:
        return self.settings.fixed_latency_s + self.settings.per_record_latency_s * records
