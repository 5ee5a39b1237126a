"""The emulator's record of the calls it served: counts, statuses, batch sizes, the ids each write carried
(what tests and the benchmark read through /_emulator/stats)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class CallStats:
    """Figures of the calls served since the last reset; thread-safe under `lock`."""

    lock: threading.Lock

    def stats(self) -> dict[str, Any]:
        with self.lock:
            out = dict(self._stats)
            out["statuses"] = dict(self._statuses)
            out["batch_sizes"] = list(self._batch_sizes)
            out["call_bytes"] = list(self._call_bytes)
            return out

    def reset_stats(self) -> None:
        with self.lock:
            self._stats: dict[str, Any] = {
                "write_calls": 0,
                "records_received": 0,
                "records_updated": 0,
                "bytes_received": 0,
                "missing": 0,
                "errors": 0,
                "max_in_flight": 0,
            }
            self._statuses: Counter[int] = Counter()
            self._batch_sizes: list[int] = []
            self._call_bytes: list[int] = []  # the body size of each write call that carried records
            # Which ids each write carried, in order: lets a test prove what was (not) resent.
            self.received_ids: list[str] = []

    def count_call(self, n_records: int, n_bytes: int, status: int | None = None) -> None:
        with self.lock:
            self._stats["write_calls"] += 1
            self._stats["records_received"] += n_records
            self._stats["bytes_received"] += n_bytes
            if n_records:
                self._batch_sizes.append(n_records)
                self._call_bytes.append(n_bytes)
            if status is not None:
                self._statuses[status] += 1

    def count_status(self, status: int) -> None:
        with self.lock:
            self._statuses[status] += 1

    def note_in_flight(self, in_flight: int) -> None:
        with self.lock:
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], in_flight)
