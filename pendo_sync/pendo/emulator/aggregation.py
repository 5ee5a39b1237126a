"""The part of Pendo's aggregation pipeline pendo_sync uses: a source of visitors or accounts, filters on
the id (`len(visitorId) == 36`, `visitorId > "last"`), a select of the id and of metadata fields
(`"plan": "metadata.custom.plan"`), a sort and a limit. Paging by id is served in id order without
sorting every record again (a verify of a million visitors pages 5,000 at a time)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

from pendo_sync.pendo.emulator.contract import ID_KEYS, PendoState

_CLAUSE = re.compile(
    r"""^\s*(?:len\((?P<len_key>[\w.]+)\)\s*(?P<len_op>==|>=|<=|>|<)\s*(?P<len>\d+)"""
    r"""|(?P<key>[\w.]+)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>"(?:[^"\\]|\\.)*"))\s*$"""
)
_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
_ORDER = {"source": 0, "filter": 1, "select": 2, "sort": 3, "limit": 4}


def path(row: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path (`metadata.custom.plan`), or None."""
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def run_pipeline(state: PendoState, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline's rows; ValueError (a 400) for a stage or filter it does not support."""
    (name,) = pipeline[0]["source"].keys()
    kind = {"visitors": "visitor", "accounts": "account"}[name]
    id_key = ID_KEYS[kind]
    stages = [next(iter(stage.items())) for stage in pipeline[1:]]
    order = [_ORDER.get(op, -1) for op, _ in stages]
    if -1 in order or order != sorted(order):
        raise ValueError(
            f"unsupported pipeline stages {[op for op, _ in stages]}; use source, filter, select, sort, limit"
        )
    clauses = [_clause(c) for op, arg in stages if op == "filter" for c in str(arg).split("&&")]
    select = next((arg for op, arg in stages if op == "select"), None)
    sort = next((list(arg) for op, arg in stages if op == "sort"), None)
    limit = next((int(arg) for op, arg in stages if op == "limit"), None)
    in_id_order = sort in (None, [id_key])
    after = next((c["value"] for c in clauses if c["key"] == id_key and c["op"] == ">"), None)
    rows = _matching(state, kind, clauses, after if in_id_order else None)
    if in_id_order:
        picked = (
            [row for _, row in zip(range(limit), rows, strict=False)] if limit is not None else list(rows)
        )
    else:
        picked = list(rows)
        for key in reversed(sort or []):
            picked.sort(key=partial(_sort_value, key.lstrip("-")), reverse=key.startswith("-"))
        picked = picked[:limit] if limit is not None else picked
    if select is not None:
        picked = [{out: path(row, src) for out, src in select.items()} for row in picked]
    return picked


def _sort_value(dotted: str, row: dict[str, Any]) -> str:
    return str(path(row, dotted))


def _clause(text: str) -> dict[str, Any]:
    m = _CLAUSE.match(text)
    if m is None:
        raise ValueError(f"unsupported filter {text.strip()!r}")
    if m["len_key"]:
        return {"key": m["len_key"], "op": m["len_op"], "length": int(m["len"]), "value": None}
    return {"key": m["key"], "op": m["op"], "length": None, "value": json.loads(m["value"])}


def _matching(
    state: PendoState, kind: str, clauses: list[dict[str, Any]], after: str | None
) -> Iterator[dict[str, Any]]:
    ordered, start = state.ids_after(kind, after)
    for record_id in ordered[start:]:
        row = state.row(kind, record_id)
        if row is not None and all(_holds(c, row) for c in clauses):
            yield row


def _holds(clause: dict[str, Any], row: dict[str, Any]) -> bool:
    value = path(row, clause["key"])
    if clause["length"] is not None:
        return bool(_OPS[clause["op"]](len(str(value if value is not None else "")), clause["length"]))
    return bool(_OPS[clause["op"]](str(value if value is not None else ""), clause["value"]))
