"""The values a sync's options take, checked one by one: each parser returns the value as the spec keeps it,
or raises ValueError with what is wrong and what to write instead (config.py adds the place)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, None: 1}
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number of 0 or more")
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a whole number of 1 or more")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{value!r} is not a share between 0 and 1 (0.05 is 5%)")
    return float(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def cron(value: Any) -> str:
    parts = str(value).split()
    if not isinstance(value, str) or len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
        raise ValueError(f"{value!r} is not a cron expression of five fields, such as '*/15 * * * *'")
    return value


def date(value: Any) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD, such as '2024-01-01'") from None


def duration(value: Any) -> float:
    """Seconds, from a number of seconds or text such as '90s', '30m', '1h', '2d'."""
    match = _DURATION.match(str(value)) if not isinstance(value, bool) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration; write it as seconds or as 30m, 1h or 2d")
    return float(match[1]) * _UNITS[match[2]]


def asset_key(value: Any) -> tuple[str, ...]:
    """An asset key as Dagster's UI writes it: 'analytics/accounts'."""
    parts = tuple(p for p in str(value).split("/")) if isinstance(value, str) else ()
    if not parts or not all(parts):
        raise ValueError(
            f"{value!r} is not an asset key; write it with slashes, such as 'analytics/accounts'"
        )
    return parts


def automation(value: Any) -> tuple[str, str | None]:
    """('eager', None): sync when the upstream asset is updated; ('cron', expr): on a cron tick."""
    if value == "eager":
        return ("eager", None)
    if isinstance(value, dict) and set(value) == {"cron"}:
        return ("cron", cron(value["cron"]))
    raise ValueError(
        f"{value!r} is not an automation; use automation: eager, or automation: {{cron: '*/15 * * * *'}}"
    )


def freshness(value: Any) -> tuple[float, float | None]:
    """(fail_after, warn_after) in seconds, from {fail_after: 1h, warn_after: 30m}."""
    if not isinstance(value, dict) or "fail_after" not in value or set(value) - {"fail_after", "warn_after"}:
        raise ValueError(
            f"{value!r} is not a freshness policy; use freshness: {{fail_after: 1h}} (warn_after optional)"
        )
    fail = duration(value["fail_after"])
    warn = duration(value["warn_after"]) if "warn_after" in value else None
    if warn is not None and warn >= fail:
        raise ValueError("warn_after must be shorter than fail_after")
    return (fail, warn)


def time_format(value: Any) -> str:
    if value not in ("epoch_ms", "iso8601"):
        raise ValueError(f"{value!r} is not a time format; use epoch_ms (today's default) or iso8601")
    return str(value)


def clear_with(value: Any) -> str:
    if value is None or value == "null":  # YAML reads a bare null as None
        return "null"
    if value == "empty_string":
        return "empty_string"
    raise ValueError(f"{value!r} is not a way to clear a field; use null (today's default) or empty_string")


def change_log(value: Any) -> int:
    """change_log: {retention_days: N}: the days a run's per-row log is kept."""
    if not isinstance(value, dict) or set(value) != {"retention_days"}:
        raise ValueError(f"{value!r} is not a change log setting; use change_log: {{retention_days: 30}}")
    return positive_int(value["retention_days"])


def whole_number(least: int, most: int) -> Callable[[Any], int]:
    """A parser of a whole number from `least` to `most`."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError(f"{value!r} is not a whole number from {least:,} to {most:,}")
        return value

    return parse


def seconds(most: int, zero: str = "") -> Callable[[Any], float]:
    """A parser of a number of seconds above 0 up to `most`; and 0 too where it means something (`zero`)."""

    def parse(value: Any) -> float:
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if not number or not (0 < value <= most or (zero and value == 0)):  # NaN fails both
            low = f"from 0 ({zero}) to" if zero else "above 0, up to"
            raise ValueError(f"{value!r} is not a number of seconds {low} {most:,}")
        return float(value)

    return parse


# Every delivery setting (config.DeliverySettings) and its parser. Zero is refused where it would stall a
# run (no call in flight, empty batches or reads); the bounds past the defaults catch a slip of the pen.
DELIVERY_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "concurrency": whole_number(1, 100),
    "min_concurrency": whole_number(1, 100),
    "batch_records": whole_number(1, 100_000),
    "max_batch_records": whole_number(1, 100_000),
    "max_batch_bytes": whole_number(1_000, 100_000_000),
    "target_call_seconds": seconds(300),  # Pendo ends a call at 300 s
    "request_timeout_seconds": seconds(3600),
    "max_attempts": whole_number(1, 100),
    "backoff_base_seconds": seconds(3600, zero="no wait"),
    "backoff_max_seconds": seconds(3600, zero="no wait"),
    "runtime_budget_seconds": seconds(7 * 86_400, zero="no budget"),
    "chunk_rows": whole_number(1, 1_000_000),
    "progress_every_seconds": seconds(3600),
}

# Every sync option past the core keys (kind, group, table, query, id_column, fields, on_delete): its parser.
SYNC_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "replication_key": text,
    "lookback_seconds": non_negative_int,
    "missing_retry_seconds": non_negative_int,
    "create_missing": boolean,
    "existing_ids_only": boolean,
    "existing_id_length": positive_int,
    "incremental_cron": cron,
    "full_cron": cron,
    "partition_start": date,
    "max_reject_share": share,
    "blocking_reject_check": boolean,
    "description": text,
    "upstream": asset_key,
    "automation": automation,
    "freshness": freshness,
    "time_format": time_format,
    "clear_with": clear_with,
    "verify_sample": positive_int,
    "change_log": change_log,
}
