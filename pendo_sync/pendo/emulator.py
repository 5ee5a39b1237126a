"""A local Pendo emulator: a real HTTP server that keeps the parts of Pendo's Integration API that
pendo_sync uses, strictly (PENDO_API.md), so the demo, the tests and the benchmark need no Pendo.

What it enforces: the integration key (401); fields must exist in the kind and group (400 naming the
field); values must match the field's type (a row-level error); ids must exist unless `create=true`
(`missing`); the call time limit (a call whose simulated work runs past it answers 408 and applies
nothing); concurrency and call-rate limits (429 with Retry-After). Latency is simulated as a fixed cost
per call plus a cost per record. Faults can be injected on demand (a status, a dropped connection, an
answer lost after the write was applied, a slow call), in process or over `/_emulator/faults`.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pendo_sync.pendo.client import EMULATOR_KEY

KINDS = ("visitor", "account")
GROUPS = ("custom", "agent")
ID_KEYS = {"visitor": "visitorId", "account": "accountId"}


@dataclass
class EmulatorSettings:
    """How strict and how slow the emulator is; 0 disables a limit."""

    integration_key: str = EMULATOR_KEY
    fixed_latency_s: float = 0.0
    per_record_latency_s: float = 0.0
    call_time_limit_s: float = 300.0  # Pendo's five minutes
    max_concurrent: int = 0  # write calls in flight at once; more answer 429
    max_calls_per_s: float = 0.0  # leaky bucket over write calls; overflow answers 429
    retry_after_s: float = 1.0


@dataclass
class Fault:
    """One injected fault, applied to the next write calls (after `after` calls pass untouched).

    kind: "status" answers `status` without applying; "drop" closes the connection without an answer
    and without applying; "lost_answer" applies the write, then drops the connection (Pendo did the work
    but the client cannot know); "slow" sleeps `delay_s` before handling normally; "429" answers 429
    with Retry-After `retry_after_s`.
    """

    kind: str
    status: int = 500
    count: int = 1
    after: int = 0
    delay_s: float = 0.0
    retry_after_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("status", "drop", "lost_answer", "slow", "429"):
            raise ValueError(f"unknown fault kind {self.kind!r} (status, drop, lost_answer, slow, 429)")


class _Drop(Exception):
    """Close the connection without answering."""


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


# Exact classes a JSON value of each type decodes to (json.loads gives bool, int, float, str, list).
_FITS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "float": (int, float),
    "time": (int,),
}
_WANTED = {"time": "epoch milliseconds (integer)", "integer": "an integer", "float": "a number"}


def _type_error(pendo_type: str, element_type: str, value: Any) -> str | None:
    """Why a value does not fit a field type, or None when it fits (None always fits: it clears)."""
    if value is None or pendo_type == "":
        return None
    fits = _FITS.get(pendo_type)
    if fits is not None:
        # Class, not isinstance: a JSON true is a bool, which must not pass as an integer.
        if value.__class__ in fits:
            return None
        return f"value {json.dumps(value)} is not {_WANTED.get(pendo_type, f'a {pendo_type}')}"
    if pendo_type == "list":
        if not isinstance(value, list):
            return f"{json.dumps(value)} is not a list"
        for item in value:
            problem = _type_error(element_type or "", "", item)
            if problem:
                return f"list element {problem}"
    return None


def _sort_value(name: str, row: dict[str, Any]) -> str:
    return str(row.get(name))


_CLAUSE = re.compile(
    r"""^\s*(?:len\((?P<len_key>\w+)\)\s*(?P<len_op>==|>=|<=|>|<)\s*(?P<len>\d+)"""
    r"""|(?P<key>\w+)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>"(?:[^"\\]|\\.)*"))\s*$"""
)
_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


class Emulator:
    """Pendo's state (fields, records) and its rules; thread-safe, served by EmulatorServer."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self._lock = threading.Lock()
        self._fields: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            k: {g: {} for g in GROUPS} for k in KINDS
        }
        self._records: dict[str, dict[str, dict[str, dict[str, Any]]]] = {k: {} for k in KINDS}
        self._faults: list[Fault] = []
        self._in_flight = 0
        self._bucket_level = 0.0
        self._bucket_at = time.monotonic()
        self.reset_stats()

    # -- set-up ---------------------------------------------------------------------------------
    def add_field(self, kind: str, group: str, name: str, pendo_type: str, element_type: str = "") -> None:
        with self._lock:
            self._fields[kind][group][name] = {
                "Type": pendo_type,
                "DisplayName": name.replace("_", " ").title(),
                "ElementType": element_type or "",
                "ElementFormat": "",
                "Dirty": False,
                "isHidden": False,
                "isDeleted": False,
                "isCalculated": False,
                "isPerApp": False,
            }

    def remove_field(self, kind: str, group: str, name: str) -> None:
        with self._lock:
            self._fields[kind][group].pop(name, None)

    def add_ids(self, kind: str, ids: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            records = self._records[kind]
            for record_id in ids:
                records.setdefault(str(record_id), {"custom": {}, "agent": {}})

    def seed_from_file(self, path: str | Path) -> None:
        """JSON {"fields": {kind: {group: {name: type}}}, "ids": {kind: [id, ...]}}."""
        seed = json.loads(Path(path).read_text())
        for kind, groups in seed.get("fields", {}).items():
            for group, fields in groups.items():
                for name, spec in fields.items():
                    if isinstance(spec, dict):
                        self.add_field(kind, group, name, spec.get("Type", ""), spec.get("ElementType", ""))
                    else:
                        self.add_field(kind, group, name, str(spec))
        for kind, ids in seed.get("ids", {}).items():
            self.add_ids(kind, ids)

    def inject_faults(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- inspection -----------------------------------------------------------------------------
    def records(self, kind: str, group: str = "custom") -> dict[str, dict[str, Any]]:
        """id -> that group's field values, for every record of a kind."""
        with self._lock:
            return {rid: dict(groups[group]) for rid, groups in self._records[kind].items()}

    def values_of(self, kind: str, record_id: str, group: str = "custom") -> dict[str, Any] | None:
        with self._lock:
            record = self._records[kind].get(record_id)
            return dict(record[group]) if record is not None else None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self._stats)
            out["statuses"] = dict(self._statuses)
            out["batch_sizes"] = list(self._batch_sizes)
            out["call_bytes"] = list(self._call_bytes)
            return out

    def reset_stats(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
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

    def snapshot(self) -> dict[str, Any]:
        """Every record and its values, as JSON-able data (fields are seeded from the config each time)."""
        with self._lock:
            return {"records": json.loads(json.dumps(self._records))}

    def restore(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            for kind in KINDS:
                for rid, groups in snapshot.get("records", {}).get(kind, {}).items():
                    self._records[kind][rid] = {g: dict(groups.get(g, {})) for g in GROUPS}

    # -- the API --------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Answer:
        split = urlsplit(raw_path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        query = parse_qs(split.query)
        if parts[:1] == ["_emulator"]:
            return self._admin(method, parts[1:], body)
        if headers.get("x-pendo-integration-key") != self.settings.integration_key:
            return _Answer(401, {"error": "invalid integration key"})
        if parts[:3] == ["api", "v1", "metadata"] and len(parts) == 6 and parts[5] == "value":
            if method != "POST":
                return _Answer(405, {"error": "method not allowed"})
            return self._write(parts[3], parts[4], body, query.get("create", [""])[0] == "true")
        if parts[:4] == ["api", "v1", "metadata", "schema"] and len(parts) == 5 and method == "GET":
            return self._schema(parts[4])
        if parts[:2] == ["api", "v1"] and len(parts) == 4 and parts[2] in KINDS and method == "GET":
            return self._get_record(parts[2], parts[3])
        if parts == ["api", "v1", "aggregation"] and method == "POST":
            return self._aggregate(body)
        return _Answer(404, {"error": f"no such endpoint: {method} {split.path}"})

    def _write(self, kind: str, group: str, body: bytes, create: bool) -> _Answer:
        if kind not in KINDS:
            return _Answer(404, {"error": f"unknown kind {kind!r}"})
        if group not in GROUPS:
            return _Answer(400, {"error": f"unknown group {group!r}"})
        fault = self._take_fault()
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
            fault = None
        if fault is not None:
            self._count_call(0, len(body), None)
            if fault.kind == "drop":
                raise _Drop
            if fault.kind == "status":
                self._count_status(fault.status)
                return _Answer(fault.status, {"error": f"injected fault: HTTP {fault.status}"})
            if fault.kind == "429":
                return self._throttled(fault.retry_after_s or self.settings.retry_after_s)
        throttle = self._admit()
        if throttle is not None:
            self._count_call(0, len(body), None)
            return throttle
        try:
            return self._write_admitted(kind, group, body, create, lost_answer=fault is not None)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _write_admitted(self, kind: str, group: str, body: bytes, create: bool, lost_answer: bool) -> _Answer:
        try:
            items = json.loads(body)
        except ValueError as exc:
            self._count_call(0, len(body), 400)
            return _Answer(400, {"error": f"malformed JSON: {exc}"})
        id_key = ID_KEYS[kind]
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get(id_key), str) and isinstance(i.get("values"), dict)
            for i in items
        ):
            self._count_call(0, len(body), 400)
            return _Answer(
                400, {"error": f"body must be a JSON array of {{{id_key!r}: string, 'values': object}}"}
            )
        self._count_call(len(items), len(body), None)
        fields = self._fields[kind][group]
        for item in items:
            for name in item["values"]:
                if name not in fields or fields[name]["isDeleted"]:
                    self._count_status(400)
                    return _Answer(400, {"error": f"field {name!r} is not mapped for {kind} {group}"})
        work = self.settings.fixed_latency_s + self.settings.per_record_latency_s * len(items)
        if work > self.settings.call_time_limit_s:
            time.sleep(self.settings.call_time_limit_s)
            self._count_status(408)
            return _Answer(408, {"error": "request ran past the time limit"})
        if work > 0:
            time.sleep(work)
        missing: list[str] = []
        errors: list[dict[str, str]] = []
        valid: list[tuple[str, dict[str, Any]]] = []
        types = {name: (f["Type"], f["ElementType"]) for name, f in fields.items()}
        for item in items:  # type checks outside the lock: other calls proceed meanwhile
            rid, values = item[id_key], item["values"]
            for name, value in values.items():
                problem = _type_error(*types[name], value)
                if problem:
                    errors.append({"id": rid, "field": name, "error": problem})
                    break
            else:
                valid.append((rid, values))
        updated = 0
        with self._lock:
            self.received_ids.extend(item[id_key] for item in items)
            records = self._records[kind]
            for rid, values in valid:
                if rid not in records:
                    if not create:
                        missing.append(rid)
                        continue
                    records[rid] = {"custom": {}, "agent": {}}
                target = records[rid][group]
                for name, value in values.items():
                    if value is None:
                        target.pop(name, None)
                    else:
                        target[name] = value
                updated += 1
            self._stats["records_updated"] += updated
            self._stats["missing"] += len(missing)
            self._stats["errors"] += len(errors)
            self._statuses[200] += 1
        if lost_answer:
            raise _Drop
        failed = len(missing) + len(errors)
        return _Answer(
            200,
            {
                "total": updated + failed,
                "updated": updated,
                "failed": failed,
                "missing": missing,
                "errors": errors,
            },
        )

    def _take_fault(self) -> Fault | None:
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

    def _admit(self) -> _Answer | None:
        """Enter the write path, or the 429 that Pendo's limits would give."""
        s = self.settings
        with self._lock:
            if s.max_calls_per_s > 0:
                now = time.monotonic()
                self._bucket_level = max(
                    0.0, self._bucket_level - (now - self._bucket_at) * s.max_calls_per_s
                )
                self._bucket_at = now
                if self._bucket_level + 1 > s.max_calls_per_s:
                    return self._throttled_locked(s.retry_after_s)
                self._bucket_level += 1
            if s.max_concurrent and self._in_flight >= s.max_concurrent:
                return self._throttled_locked(s.retry_after_s)
            self._in_flight += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._in_flight)
        return None

    def _throttled(self, retry_after: float) -> _Answer:
        with self._lock:
            return self._throttled_locked(retry_after)

    def _throttled_locked(self, retry_after: float) -> _Answer:
        self._statuses[429] += 1
        text = f"{retry_after:g}"
        return _Answer(429, {"error": "rate limit exceeded (leaky bucket)"}, {"Retry-After": text})

    def _count_call(self, n_records: int, n_bytes: int, status: int | None) -> None:
        with self._lock:
            self._stats["write_calls"] += 1
            self._stats["records_received"] += n_records
            self._stats["bytes_received"] += n_bytes
            if n_records:
                self._batch_sizes.append(n_records)
                self._call_bytes.append(n_bytes)
            if status is not None:
                self._statuses[status] += 1

    def _count_status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def _schema(self, kind: str) -> _Answer:
        if kind not in KINDS:
            return _Answer(404, {"error": f"unknown kind {kind!r}"})
        with self._lock:
            groups = {g: {n: dict(a) for n, a in fs.items()} for g, fs in self._fields[kind].items()}
        return _Answer(200, {"auto": {}, **groups})

    def _get_record(self, kind: str, record_id: str) -> _Answer:
        with self._lock:
            record = self._records[kind].get(record_id)
            if record is None:
                return _Answer(404, {"error": f"{kind} {record_id!r} not found"})
            metadata = {"auto": {"id": record_id}, **{g: dict(v) for g, v in record.items()}}
        return _Answer(200, {ID_KEYS[kind]: record_id, "metadata": metadata})

    def _aggregate(self, body: bytes) -> _Answer:
        """The subset of the aggregation pipeline used to list ids: source, filter, select, sort, limit."""
        try:
            pipeline = json.loads(body)["request"]["pipeline"]
            rows = self._run_pipeline(pipeline)
        except (ValueError, KeyError, TypeError) as exc:
            return _Answer(400, {"error": f"bad aggregation: {exc}"})
        return _Answer(200, {"results": rows})

    def _run_pipeline(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        source = pipeline[0]["source"]
        (name,) = source.keys()
        kind = {"visitors": "visitor", "accounts": "account"}[name]
        id_key = ID_KEYS[kind]
        with self._lock:
            rows: list[dict[str, Any]] = [
                {id_key: rid, "metadata": json.loads(json.dumps(r))} for rid, r in self._records[kind].items()
            ]
        for stage in pipeline[1:]:
            ((op, arg),) = stage.items()
            if op == "filter":
                rows = [r for r in rows if self._matches(str(arg), r)]
            elif op == "select":
                rows = [{out: r.get(src) for out, src in arg.items()} for r in rows]
            elif op == "sort":
                for key in reversed(arg):
                    rows.sort(key=partial(_sort_value, key.lstrip("-")), reverse=key.startswith("-"))
            elif op == "limit":
                rows = rows[: int(arg)]
            else:
                raise ValueError(f"unsupported pipeline stage {op!r}")
        return rows

    @staticmethod
    def _matches(expression: str, row: dict[str, Any]) -> bool:
        for clause in expression.split("&&"):
            m = _CLAUSE.match(clause)
            if m is None:
                raise ValueError(f"unsupported filter {clause.strip()!r}")
            if m["len_key"]:
                if not _OPS[m["len_op"]](len(str(row.get(m["len_key"], ""))), int(m["len"])):
                    return False
            elif not _OPS[m["op"]](str(row.get(m["key"], "")), json.loads(m["value"])):
                return False
        return True

    def _admin(self, method: str, parts: list[str], body: bytes) -> _Answer:
        if parts == ["stats"] and method == "GET":
            return _Answer(200, self.stats())
        if parts == ["stats"] and method == "DELETE":
            self.reset_stats()
            return _Answer(200, {})
        if parts == ["faults"] and method == "POST":
            try:
                self.inject_faults([Fault(**f) for f in json.loads(body)])
            except (ValueError, TypeError) as exc:
                return _Answer(400, {"error": str(exc)})
            return _Answer(200, {"queued": len(self._faults)})
        if parts == ["faults"] and method == "DELETE":
            self.clear_faults()
            return _Answer(200, {})
        if len(parts) == 2 and parts[0] == "records" and parts[1] in KINDS and method == "GET":
            return _Answer(200, self.records(parts[1]))
        if parts == ["settings"] and method == "GET":
            return _Answer(200, {k: v for k, v in asdict(self.settings).items() if k != "integration_key"})
        return _Answer(404, {"error": "unknown emulator admin endpoint"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's pooled connections expect
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            answer = self.server.emulator.handle(self.command, self.path, headers, body)
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status, HTTPStatus(answer.status).phrase if answer.status < 600 else "")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the stats endpoint tells all
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class EmulatorServer:
    """The emulator on a real port in a background thread; `with EmulatorServer(emulator) as server:`."""

    def __init__(self, emulator: Emulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator or Emulator()
        self._host = host
        self._server = _Server((host, port), self.emulator)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pendo-emulator", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str, port: int, seed: str | None, settings: EmulatorSettings) -> None:
    """`pendo-sync emulator`: serve until interrupted."""
    emulator = Emulator(settings)
    if seed:
        emulator.seed_from_file(seed)
    server = _Server((host, port), emulator)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
