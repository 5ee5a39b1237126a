"""The emulator's API: Pendo's endpoints (the bulk write, the field schema, a record, the aggregation)
and its own admin endpoints under /_emulator (stats, faults, records, drift), routed to the contract."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pendo_sync.pendo.emulator.aggregation import run_pipeline
from pendo_sync.pendo.emulator.contract import GROUPS, ID_KEYS, KINDS, Answer, PendoState
from pendo_sync.pendo.emulator.fast_write import WriteDecoders
from pendo_sync.pendo.emulator.limits import EmulatorSettings, Fault, Limits


class Drop(Exception):
    """Close the connection without answering."""


class Emulator(PendoState):
    """Pendo's state and rules (contract.py) behind its HTTP API; served by server.EmulatorServer."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or EmulatorSettings()
        self.limits = Limits(self.settings)
        self._decoders = WriteDecoders()

    def inject_faults(self, faults: list[Fault]) -> None:
        self.limits.inject(faults)

    def clear_faults(self) -> None:
        self.limits.clear()

    async def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        """The answer to one request; raises Drop to close the connection without one."""
        split = urlsplit(raw_path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        if parts[:1] == ["_emulator"]:
            return self._admin(method, parts[1:], body)
        if headers.get("x-pendo-integration-key") != self.settings.integration_key:
            return Answer(401, {"error": "invalid integration key"})
        if parts[:3] == ["api", "v1", "metadata"] and len(parts) == 6 and parts[5] == "value":
            if method != "POST":
                return Answer(405, {"error": "method not allowed"})
            create = parse_qs(split.query).get("create", [""])[0] == "true"
            return await self._write(parts[3], parts[4], body, create)
        if parts[:4] == ["api", "v1", "metadata", "schema"] and len(parts) == 5 and method == "GET":
            return self.schema(parts[4])
        if parts[:2] == ["api", "v1"] and len(parts) == 4 and parts[2] in KINDS and method == "GET":
            return self.record(parts[2], parts[3])
        if parts == ["api", "v1", "aggregation"] and method == "POST":
            return self._aggregate(body)
        return Answer(404, {"error": f"no such endpoint: {method} {split.path}"})

    async def _write(self, kind: str, group: str, body: bytes, create: bool) -> Answer:
        if kind not in KINDS:
            return Answer(404, {"error": f"unknown kind {kind!r}"})
        if group not in GROUPS:
            return Answer(400, {"error": f"unknown group {group!r}"})
        fault = self.limits.take_fault()
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
            fault = None
        if fault is not None:
            self.count_call(0, len(body))
            if fault.kind == "drop":
                raise Drop
            if fault.kind == "status":
                self.count_status(fault.status)
                return Answer(fault.status, {"error": f"injected fault: HTTP {fault.status}"})
            if fault.kind == "429":
                return self._throttled(fault.retry_after_s or self.settings.retry_after_s)
        if not self.limits.admit():
            self.count_call(0, len(body))
            return self._throttled(self.settings.retry_after_s)
        try:
            self.note_in_flight(self.limits.in_flight)
            return await self._admitted_write(kind, group, body, create, lost_answer=fault is not None)
        finally:
            self.limits.leave()

    async def _admitted_write(
        self, kind: str, group: str, body: bytes, create: bool, lost_answer: bool
    ) -> Answer:
        limit = self.settings.max_body_bytes
        if limit and len(body) > limit:
            self.count_call(0, len(body), 413)
            return Answer(413, {"error": f"request body over {limit} bytes"})
        checked = self._decoders.decode(kind, group, ID_KEYS[kind], self.fields[kind][group], body)
        if checked is None:  # not every row fits: the checks say which, and why
            try:
                items = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                self.count_call(0, len(body), 400)
                return Answer(400, {"error": f"malformed JSON: {exc}"})
            judged = self.check_write(kind, group, items)
            if isinstance(judged, Answer):
                self.count_call(len(items) if isinstance(items, list) else 0, len(body), 400)
                return judged
            checked = judged
        self.count_call(len(checked.ids), len(body))
        work = self.limits.work_seconds(len(checked.ids))
        if work > self.settings.call_time_limit_s:
            await asyncio.sleep(self.settings.call_time_limit_s)
            self.count_status(408)
            return Answer(408, {"error": "request ran past the time limit"})
        if work > 0:
            await asyncio.sleep(work)
        if checked.objects is not None:
            answer = self.apply_whole(kind, group, checked.ids, checked.objects, create)
        else:
            answer = self.apply_write(kind, group, checked, create)
        if lost_answer:
            raise Drop
        return Answer(200, answer)

    def _throttled(self, retry_after: float) -> Answer:
        self.count_status(429)
        return Answer(
            429, {"error": "rate limit exceeded (leaky bucket)"}, {"Retry-After": f"{retry_after:g}"}
        )

    def _aggregate(self, body: bytes) -> Answer:
        try:
            rows = run_pipeline(self, orjson.loads(body)["request"]["pipeline"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            return Answer(400, {"error": f"bad aggregation: {exc}"})
        return Answer(200, {"results": rows})

    def _admin(self, method: str, parts: list[str], body: bytes) -> Answer:
        if parts == ["stats"] and method == "GET":
            return Answer(200, self.stats())
        if parts == ["stats"] and method == "DELETE":
            self.reset_stats()
            return Answer(200, {})
        if parts == ["faults"] and method == "POST":
            try:
                queued = self.limits.inject([Fault(**f) for f in orjson.loads(body)])
            except (ValueError, TypeError) as exc:
                return Answer(400, {"error": str(exc)})
            return Answer(200, {"queued": queued})
        if parts == ["faults"] and method == "DELETE":
            self.clear_faults()
            return Answer(200, {})
        if len(parts) == 2 and parts[0] == "records" and parts[1] in KINDS and method == "GET":
            return Answer(200, self.records(parts[1]))
        if parts == ["alter"] and method == "POST":
            return self._alter(orjson.loads(body))
        if parts == ["settings"] and method == "GET":
            return Answer(200, {k: v for k, v in asdict(self.settings).items() if k != "integration_key"})
        return Answer(404, {"error": "unknown emulator admin endpoint"})

    def _alter(self, change: dict[str, Any]) -> Answer:
        """{"kind", "id", "values", "group"?}: values changed as Pendo's UI or another integration would."""
        try:
            self.alter(change["kind"], change["id"], change["values"], change.get("group", "custom"))
        except (KeyError, TypeError) as exc:
            return Answer(400, {"error": f"bad alter: {exc}; send kind, id and values of a known record"})
        return Answer(200, {})
