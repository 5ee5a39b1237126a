"""The async Pendo client: one httpx.AsyncClient with keep-alive for every call a run makes.

It speaks HTTP and nothing more: deciding what a status means for a batch is the engine's delivery.
The integration key goes in a header and nowhere else: never in a message, a log line or an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx

from pendo_sync.errors import SyncFailed, UsageError

# The local Pendo emulator (pendo_sync/pendo/emulator.py): where the demo, `make dev` and the default
# resources expect it, and the key it accepts.
EMULATOR_URL = "http://127.0.0.1:8765"
EMULATOR_KEY = "emulator-key"

REGIONS = {
    "us": "https://app.pendo.io",
    "us1": "https://us1.app.pendo.io",
    "eu": "https://app.eu.pendo.io",
    "jpn": "https://app.jpn.pendo.io",
    "jp": "https://app.jpn.pendo.io",
    "au": "https://app.au.pendo.io",
}


class PendoError(SyncFailed):
    """A Pendo call that cannot succeed as configured; the message says what to change."""


class PendoAuthError(PendoError):
    """Pendo refused the integration key."""


class PendoUnreachable(PendoError):
    """No answer from Pendo at all: the URL, the network, or (at the default URL) the emulator is not up."""


# The field schema and a record answer in seconds; a Pendo that takes longer is not answering. Writes and
# the aggregation's pages (a sort over every record) keep the sync's request_timeout_seconds.
READ_TIMEOUT_SECONDS = 60.0


def unreachable(base_url: str, exc: httpx.TransportError) -> PendoUnreachable:
    """The one message for a Pendo that does not answer."""
    causes = [exc]
    while causes[-1].__cause__ is not None or causes[-1].__context__ is not None:
        causes.append(causes[-1].__cause__ or causes[-1].__context__)  # type: ignore[arg-type]
    if isinstance(exc, httpx.TimeoutException):
        why = "timed out"
    elif any(isinstance(c, ConnectionRefusedError) or "refused" in str(c).lower() for c in causes):
        why = "connection refused"
    else:
        why = str(causes[-1]) or str(exc) or type(exc).__name__
    if base_url == EMULATOR_URL:
        return PendoUnreachable(
            f"cannot reach Pendo at {base_url} ({why}): that is the local Pendo emulator, which is not "
            "running; start it with `pendo-sync emulator` (or `make dev`), or set PENDO_BASE_URL to your "
            "Pendo region"
        )
    return PendoUnreachable(
        f"cannot reach Pendo at {base_url} ({why}); check PENDO_BASE_URL (a region: us, us1, eu, jpn, au; "
        "or a URL) and that this machine can reach it"
    )


def resolve_base_url(value: str | None, integration_key: str = "") -> str:
    """A region name or URL; with none given, the EU host for keys ending in '.eu', else the US host."""
    if not value:
        return REGIONS["eu"] if integration_key.endswith(".eu") else REGIONS["us"]
    if value.lower() in REGIONS:
        return REGIONS[value.lower()]
    if not value.startswith(("http://", "https://")):
        raise UsageError(
            f"PENDO_BASE_URL {value!r} is neither a region ({', '.join(REGIONS)}) nor an http(s) URL"
        )
    return value.rstrip("/")


def _raise_for_auth(response: httpx.Response, what: str) -> None:
    if response.status_code in (401, 403):
        raise PendoAuthError(
            f"Pendo refused the integration key (HTTP {response.status_code}) on {what}; check "
            "PENDO_INTEGRATION_KEY and that PENDO_BASE_URL is the key's region"
        )


def id_segment(record_id: str) -> str:
    """An id as one path segment: every character but the unreserved percent-encoded ('/', '?', '#',
    '%', a tab...), and the dots of a dot segment too ('.' and '..' would be resolved away)."""
    segment = quote(record_id, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


class PendoClient:
    """Calls to Pendo's Integration API over one pooled AsyncClient; use as `async with PendoClient(...)`."""

    def __init__(
        self, base_url: str, integration_key: str, timeout_seconds: float = 300.0, max_connections: int = 64
    ) -> None:
        self.base_url = resolve_base_url(base_url, integration_key)
        self._key = integration_key
        self._timeout = httpx.Timeout(timeout_seconds, connect=30.0)
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never show the key
        return f"PendoClient({self.base_url!r})"

    async def __aenter__(self) -> PendoClient:
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"x-pendo-integration-key": self._key, "content-type": "application/json"},
            timeout=self._timeout,
            limits=self._limits,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use PendoClient inside 'async with'")
        return self._http

    async def post_values(self, kind: str, group: str, body: bytes, create: bool = False) -> httpx.Response:
        """The bulk write: body is the already-serialized JSON array (its size is what batching measured)."""
        params = {"create": "true"} if create else None
        return await self.http.post(f"/api/v1/metadata/{kind}/{group}/value", content=body, params=params)

    async def _read(
        self, method: str, path: str, what: str, missing_ok: bool = False, quick: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """A read call (schema, record, aggregation): unreachable, refused key and errors as PendoErrors.
        A 404 passes only where it means a missing record. A `quick` read (schema, record) waits at most
        READ_TIMEOUT_SECONDS; a page of the aggregation, the sync's request timeout."""
        limit = self._timeout.read or READ_TIMEOUT_SECONDS
        timeout = httpx.Timeout(min(READ_TIMEOUT_SECONDS, limit) if quick else limit, connect=30.0)
        try:
            response = await self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from None
        _raise_for_auth(response, what)
        if response.status_code == 404 and not missing_ok:
            raise self._not_pendo(f"answered HTTP 404 on {what}")
        if response.status_code >= 400 and response.status_code != 404:
            raise PendoError(f"Pendo answered HTTP {response.status_code} on {what}: {response.text[:200]}")
        return response

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._not_pendo(f"answered {what} with something that is not JSON") from None

    def _not_pendo(self, how: str) -> PendoError:
        return PendoError(
            f"{self.base_url} {how}: it does not serve Pendo's Integration API; check PENDO_BASE_URL (a "
            "region: us, us1, eu, jpn, au; or the URL of Pendo or of the emulator)"
        )

    async def field_schema(self, kind: str) -> dict[str, dict[str, dict[str, Any]]]:
        """group -> field -> attributes ({"Type": ..., "ElementType": ..., "isDeleted": ...})."""
        what = f"reading the {kind} field schema"
        result = self._json(await self._read("GET", f"/api/v1/metadata/schema/{kind}", what), what)
        if not isinstance(result, dict):
            raise self._not_pendo(f"answered {what} with something that is not a field schema")
        return result

    async def field_schemas(self, kinds: set[str]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
        """kind -> field_schema(kind), for each kind."""
        return {kind: await self.field_schema(kind) for kind in sorted(kinds)}

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        path = f"/api/v1/{kind}/{id_segment(record_id)}"
        what = f"reading {kind} {record_id}"
        response = await self._read("GET", path, what, missing_ok=True)
        if response.status_code == 404:
            return None
        record = self._json(response, what)
        if not isinstance(record, dict):
            raise self._not_pendo(f"answered {what} with something that is not a record")
        return record

    async def existing_ids(
        self, kind: str, id_length: int | None = None, page_size: int = 5000
    ) -> AsyncIterator[list[str]]:
        """Ids that exist in Pendo, page by page, sorted (optionally only ids of one length)."""
        id_key = "visitorId" if kind == "visitor" else "accountId"
        where = [f"len({id_key}) == {int(id_length)}"] if id_length else []
        async for rows in self._pages(kind, {id_key: id_key}, where, page_size):
            yield [str(r[id_key]) for r in rows]

    async def field_values(
        self, kind: str, group: str, fields: list[str], page_size: int = 1000
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """(id, {field: value}) of every record of a kind, the fields of one group selected, page by page."""
        id_key = "visitorId" if kind == "visitor" else "accountId"
        select = {id_key: id_key, **{f: f"metadata.{group}.{f}" for f in fields}}
        async for rows in self._pages(kind, select, [], page_size):
            yield [(str(r[id_key]), {f: r.get(f) for f in fields if r.get(f) is not None}) for r in rows]

    async def _pages(
        self, kind: str, select: dict[str, str], where: list[str], page_size: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """An aggregation over a kind's records, sorted by id and paged on `id > last` as Pendo advises."""
        id_key = "visitorId" if kind == "visitor" else "accountId"
        last: str | None = None
        while True:
            clauses = where + ([f"{id_key} > {json.dumps(last)}"] if last is not None else [])
            pipeline: list[dict[str, Any]] = [{"source": {f"{kind}s": None}}]
            if clauses:
                pipeline.append({"filter": " && ".join(clauses)})
            pipeline += [{"select": select}, {"sort": [id_key]}, {"limit": page_size}]
            body = {"response": {"mimeType": "application/json"}, "request": {"pipeline": pipeline}}
            what = "the aggregation API"
            page = await self._read("POST", "/api/v1/aggregation", what, quick=False, json=body)
            answer = self._json(page, what)
            if not isinstance(answer, dict):
                raise self._not_pendo(f"answered {what} with something that is not its result")
            rows: list[dict[str, Any]] = answer.get("results", [])
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            last = str(rows[-1][id_key])


def read_field_schemas(
    client: Callable[[], PendoClient], kinds: set[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """kind -> group -> field -> attributes, from synchronous code (a sensor, a check), on a loop of its own."""

    async def read() -> dict[str, dict[str, dict[str, Any]]]:
        async with client() as pendo:
            return await pendo.field_schemas(kinds)

    return asyncio.run(read())
