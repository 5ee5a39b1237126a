"""What `pendo-sync` prints: a run's summary (every figure, zeros included), a progress bar in a terminal
and plain progress lines elsewhere, and the rejects as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pendo_sync.engine.run import SyncOutcome
from pendo_sync.engine.runner import Progress
from pendo_sync.outcome import STATUSES, RunCounts


def duration(seconds: float) -> str:
    """3s, 2m05s, 1h02m."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class ProgressDisplay:
    """A redrawn bar on a terminal (`\\r` and erase-line, so no old text is left behind), plain lines
    elsewhere; `finish()` erases the bar before the summary."""

    def __init__(self, sync: str, stream: TextIO | None = None) -> None:
        self.sync, self.stream = sync, stream or sys.stderr
        self.tty = self.stream.isatty()
        self._drawn = False

    @property
    def every_seconds(self) -> float | None:
        """A terminal redraws four times a second; a log keeps the delivery settings' cadence."""
        return 0.25 if self.tty else None

    def __call__(self, progress: Progress) -> None:
        if not self.tty:
            print(f"{self.sync}: {progress.line()}", file=self.stream, flush=True)
            return
        self.stream.write("\r" + self.bar(progress) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def bar(self, progress: Progress) -> str:
        rate = f"{progress.rate:,.0f}/s"
        if progress.total < 0:
            return f"{self.sync}: {progress.done:,} records, {rate}"
        share = progress.done / progress.total if progress.total else 1.0
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 60))
        filled = int(width * min(1.0, share))
        eta = progress.eta_seconds
        tail = f", ETA {duration(eta)}" if eta is not None and share < 1 else ""
        return (
            f"{self.sync}: [{'#' * filled}{'-' * (width - filled)}] {share:4.0%} "
            f"{progress.done:,}/{progress.total:,} {rate}{tail}"
        )

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def summary(outcome: SyncOutcome) -> str:
    """The run in words: status, time, version, slice, then every figure with what it means."""
    counts = outcome.counts.as_dict()
    lines = [
        f"{outcome.sync}: {outcome.status} in {outcome.duration_seconds:.2f} s, state version {outcome.version}, "
        f"{outcome.records_per_second:,.0f} records/s ({outcome.slice})",
        f"  {STATUSES.get(outcome.status, '')}",
    ]
    width = max(len(name) for name in counts)
    lines += [f"  {name:<{width}}  {value:>12,}  {RunCounts.meaning(name)}" for name, value in counts.items()]
    if outcome.note:
        lines.append(f"  note: {outcome.note}")
    return "\n".join(lines)


def as_json(outcome: SyncOutcome) -> str:
    """The run as one line of JSON, for scripts (`pendo-sync run --json`)."""
    return json.dumps(
        {
            "sync": outcome.sync,
            "status": outcome.status,
            "version": outcome.version,
            "counts": outcome.counts.as_dict(),
            "seconds": round(outcome.duration_seconds, 3),
            "records_per_second": round(outcome.records_per_second, 1),
            "slice": outcome.slice,
        },
        default=str,
    )


REJECT_COLUMNS = ("record_id", "kind", "reason", "first_rejected_at", "rejected_at", "attempts")
_HEADERS = {"record_id": "id", "first_rejected_at": "first seen", "rejected_at": "last seen"}


def rejects(rows: Sequence[dict[str, Any]], form: str) -> str:
    """Outstanding rejects as a table (reasons cut to the terminal), CSV or JSON (both whole)."""
    records = [{c: _cell(row, c, whole=form != "table") for c in REJECT_COLUMNS} for row in rows]
    if form == "json":
        return json.dumps(records, indent=2)
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(REJECT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue().rstrip("\n")
    headers = [_HEADERS.get(c, c) for c in REJECT_COLUMNS]
    table = [headers, *[[str(r[c]) for c in REJECT_COLUMNS] for r in records]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    room = shutil.get_terminal_size((160, 20)).columns - sum(w + 2 for i, w in enumerate(widths) if i != 2)
    widths[2] = max(20, min(widths[2], room))
    return "\n".join("  ".join(_fit(cell, widths[i]) for i, cell in enumerate(row)).rstrip() for row in table)


def _cell(row: dict[str, Any], column: str, whole: bool) -> Any:
    """A reject's value for display: times in UTC, to the second in a table, ISO 8601 whole for scripts."""
    value = row.get(column)
    if column.endswith("_at") and value is not None:
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.isoformat() if whole else moment.strftime("%Y-%m-%d %H:%M:%S")
    if column == "attempts":
        return int(value or 1)
    return value


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
