"""The client's pure pieces: which host a region or key means."""

from __future__ import annotations

import pytest

from pendo_sync.errors import UsageError
from pendo_sync.pendo.client import resolve_base_url


@pytest.mark.parametrize(
    ("value", "key", "url"),
    [
        ("us", "", "https://app.pendo.io"),
        ("EU", "", "https://app.eu.pendo.io"),
        ("jpn", "", "https://app.jpn.pendo.io"),
        ("au", "", "https://app.au.pendo.io"),
        ("us1", "", "https://us1.app.pendo.io"),
        (None, "abc.eu", "https://app.eu.pendo.io"),
        (None, "abc", "https://app.pendo.io"),
        ("http://127.0.0.1:8765/", "", "http://127.0.0.1:8765"),
    ],
)
def test_a_region_name_or_url_resolves_to_its_host(value: str | None, key: str, url: str) -> None:
    assert resolve_base_url(value, key) == url


def test_anything_else_says_what_it_must_be() -> None:
    with pytest.raises(
        UsageError,
        match=r"PENDO_BASE_URL 'mars' is neither a region \(us, us1, eu, jpn, jp, au\) nor an http\(s\) URL",
    ):
        resolve_base_url("mars")


HOSTILE_IDS = ["sl/ash", "qm?x", "pct%2F", "..", ".", "hash#x", "tab\there", "sp ace", "é/ü", "a+b&c=d"]


def test_a_record_is_read_back_whatever_its_id_holds() -> None:
    """verify's single-record read: an id is one path segment, percent-encoded whole ('/' '?' '#' '%'
    and dot segments included); it read 'sl/ash' as two segments and found no record."""
    import asyncio

    from pendo_sync.pendo.client import PendoClient
    from pendo_sync.pendo.emulator import Emulator, EmulatorServer

    emulator = Emulator()
    emulator.add_field("visitor", "custom", "plan", "string")
    emulator.add_ids("visitor", HOSTILE_IDS)
    for rid in HOSTILE_IDS:
        emulator.alter("visitor", rid, {"plan": f"plan of {rid}"})

    async def read_all(base_url: str) -> dict[str, object]:
        async with PendoClient(base_url, emulator.settings.integration_key, timeout_seconds=10) as client:
            return {rid: await client.get_record("visitor", rid) for rid in HOSTILE_IDS}

    with EmulatorServer(emulator) as server:
        found = asyncio.run(read_all(server.base_url))
    plans = {
        rid: (record or {}).get("metadata", {}).get("custom", {}).get("plan") for rid, record in found.items()
    }
    assert plans == {rid: f"plan of {rid}" for rid in HOSTILE_IDS}
