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
