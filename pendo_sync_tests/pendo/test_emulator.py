"""The emulator keeps Pendo's contract: key, fields, types, missing ids, time limit, 429, faults."""

from __future__ import annotations

import json

import httpx
import pytest

from pendo_sync.pendo.emulator import Emulator, EmulatorServer, EmulatorSettings, Fault

KEY = {"x-pendo-integration-key": "emulator-key", "content-type": "application/json"}


@pytest.fixture
def emulator() -> Emulator:
    emu = Emulator(EmulatorSettings(retry_after_s=2))
    emu.add_field("visitor", "custom", "plan", "string")
    emu.add_field("visitor", "custom", "seats", "integer")
    emu.add_field("visitor", "custom", "renewal", "time")
    emu.add_field("visitor", "custom", "tags", "list", "string")
    emu.add_ids("visitor", ["v-1", "v-2", "v-3"])
    return emu


@pytest.fixture
def http(emulator: Emulator):
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.base_url, headers=KEY) as client:
        yield client


def write(http: httpx.Client, items: list[dict], **params: str) -> httpx.Response:
    return http.post("/api/v1/metadata/visitor/custom/value", content=json.dumps(items), params=params)


def test_write_updates_existing_and_reports_missing_and_type_errors(http, emulator):
    response = write(
        http,
        [
            {"visitorId": "v-1", "values": {"plan": "pro", "seats": 12, "tags": ["a", "b"]}},
            {"visitorId": "v-2", "values": {"seats": "twelve"}},
            {"visitorId": "nobody", "values": {"plan": "free"}},
        ],
    )
    assert response.status_code == 200
    assert response.json() == {
        "total": 3,
        "updated": 1,
        "failed": 2,
        "missing": ["nobody"],
        "errors": [{"id": "v-2", "field": "seats", "error": 'value "twelve" is not an integer'}],
    }
    assert emulator.values_of("visitor", "v-1") == {"plan": "pro", "seats": 12, "tags": ["a", "b"]}
    assert emulator.values_of("visitor", "v-2") == {}
    assert emulator.values_of("visitor", "nobody") is None


def test_null_clears_a_field_and_create_adds_ids(http, emulator):
    write(http, [{"visitorId": "v-1", "values": {"plan": "pro", "seats": 3}}])
    write(http, [{"visitorId": "v-1", "values": {"plan": None}}])
    assert emulator.values_of("visitor", "v-1") == {"seats": 3}
    response = write(http, [{"visitorId": "new", "values": {"plan": "x"}}], create="true")
    assert response.json()["updated"] == 1
    assert emulator.values_of("visitor", "new") == {"plan": "x"}


def test_time_is_epoch_milliseconds_or_iso_8601_text(http, emulator):
    answer = write(http, [{"visitorId": "v-1", "values": {"renewal": "next week"}}]).json()
    assert answer["errors"] == [
        {
            "id": "v-1",
            "field": "renewal",
            "error": 'value "next week" is not a date-time (epoch milliseconds, or ISO 8601 text)',
        }
    ]
    write(http, [{"visitorId": "v-2", "values": {"renewal": "2026-01-01T10:00:00.000Z"}}])
    write(http, [{"visitorId": "v-3", "values": {"renewal": 1767261600000}}])
    assert emulator.values_of("visitor", "v-2") == {"renewal": "2026-01-01T10:00:00.000Z"}
    assert emulator.values_of("visitor", "v-3") == {"renewal": 1767261600000}


def test_wrong_key_unmapped_field_and_malformed_body_are_refused(http, emulator):
    bad_key = http.post(
        "/api/v1/metadata/visitor/custom/value",
        content=b"[]",
        headers={"x-pendo-integration-key": "wrong"},
    )
    assert bad_key.status_code == 401
    unmapped = write(http, [{"visitorId": "v-1", "values": {"plan": "pro", "colour": "red"}}])
    assert unmapped.status_code == 400
    assert unmapped.json() == {"error": "field 'colour' is not mapped for visitor custom"}
    assert emulator.values_of("visitor", "v-1") == {}  # nothing of a refused call is applied
    malformed = http.post("/api/v1/metadata/visitor/custom/value", content=b"[{")
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("malformed JSON")


def test_call_past_time_limit_is_408_and_applies_nothing(emulator):
    emulator.settings.per_record_latency_s = 0.01
    emulator.settings.call_time_limit_s = 0.025
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.base_url, headers=KEY) as http:
        items = [{"visitorId": f"v-{i}", "values": {"plan": "p"}} for i in (1, 2, 3)]
        assert write(http, items).status_code == 408
        assert emulator.values_of("visitor", "v-1") == {}
        assert write(http, items[:2]).status_code == 200
    assert emulator.stats()["statuses"] == {408: 1, 200: 1}


def test_rate_limit_answers_429_with_retry_after(emulator):
    emulator.settings.max_calls_per_s = 2
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.base_url, headers=KEY) as http:
        statuses = [write(http, [{"visitorId": "v-1", "values": {"seats": n}}]) for n in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].headers["retry-after"] == "2"
    assert emulator.values_of("visitor", "v-1") == {"seats": 1}


def test_faults_on_demand_over_http(http, emulator):
    assert (
        http.post("/_emulator/faults", json=[{"kind": "status", "status": 503, "after": 1}]).status_code
        == 200
    )
    one = write(http, [{"visitorId": "v-1", "values": {"seats": 1}}])
    two = write(http, [{"visitorId": "v-1", "values": {"seats": 2}}])
    three = write(http, [{"visitorId": "v-1", "values": {"seats": 3}}])
    assert [one.status_code, two.status_code, three.status_code] == [200, 503, 200]
    emulator.inject_faults([Fault("drop")])
    with pytest.raises(httpx.RemoteProtocolError):
        write(http, [{"visitorId": "v-1", "values": {"seats": 4}}])
    assert emulator.values_of("visitor", "v-1") == {"seats": 3}
    emulator.inject_faults([Fault("lost_answer")])
    with pytest.raises(httpx.RemoteProtocolError):
        write(http, [{"visitorId": "v-1", "values": {"seats": 5}}])
    assert emulator.values_of("visitor", "v-1") == {"seats": 5}  # applied, though nobody was told
    assert http.post("/_emulator/faults", json=[{"kind": "nonsense"}]).status_code == 400


def test_schema_record_and_aggregation_paging(http, emulator):
    schema = http.get("/api/v1/metadata/schema/visitor").json()
    assert schema["custom"]["seats"]["Type"] == "integer"
    assert schema["custom"]["tags"]["ElementType"] == "string"
    write(http, [{"visitorId": "v-2", "values": {"plan": "pro"}}])
    record = http.get("/api/v1/visitor/v-2").json()
    assert record["visitorId"] == "v-2" and record["metadata"]["custom"] == {"plan": "pro"}
    assert http.get("/api/v1/visitor/nope").status_code == 404
    emulator.add_ids("visitor", ["a-long-id-000"])
    pipeline = [
        {"source": {"visitors": None}},
        {"filter": 'len(visitorId) == 3 && visitorId > "v-1"'},
        {"select": {"visitorId": "visitorId"}},
        {"sort": ["visitorId"]},
        {"limit": 1},
    ]
    body = {"response": {"mimeType": "application/json"}, "request": {"pipeline": pipeline}}
    assert http.post("/api/v1/aggregation", json=body).json() == {"results": [{"visitorId": "v-2"}]}
    pipeline[1] = {"filter": "visitorId ~ 'x'"}
    bad = http.post("/api/v1/aggregation", json=body)
    assert bad.status_code == 400 and "unsupported filter" in bad.json()["error"]


def test_snapshot_restores_values(emulator):
    emulator.add_ids("visitor", ["v-9"])
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.base_url, headers=KEY) as http:
        write(http, [{"visitorId": "v-9", "values": {"plan": "team"}}])
    fresh = Emulator()
    fresh.restore(json.loads(json.dumps(emulator.snapshot())))
    assert fresh.values_of("visitor", "v-9") == {"plan": "team"}


def test_aggregation_selects_metadata_fields_and_pages_in_id_order(http, emulator):
    emulator.add_ids("visitor", [f"p-{n:03}" for n in range(250)])
    write(http, [{"visitorId": f"p-{n:03}", "values": {"plan": f"plan-{n}"}} for n in range(250)])
    seen, last = [], None
    while True:
        pipeline: list[dict] = [{"source": {"visitors": None}}]
        clauses = ["len(visitorId) == 5"] + ([f'visitorId > "{last}"'] if last else [])
        pipeline += [
            {"filter": " && ".join(clauses)},
            {"select": {"visitorId": "visitorId", "plan": "metadata.custom.plan"}},
            {"sort": ["visitorId"]},
            {"limit": 100},
        ]
        body = {"response": {"mimeType": "application/json"}, "request": {"pipeline": pipeline}}
        rows = http.post("/api/v1/aggregation", json=body).json()["results"]
        seen += rows
        if len(rows) < 100:
            break
        last = rows[-1]["visitorId"]
    assert [r["visitorId"] for r in seen] == [f"p-{n:03}" for n in range(250)]
    assert seen[7] == {"visitorId": "p-007", "plan": "plan-7"}


def test_values_can_be_altered_as_pendos_ui_would(http, emulator):
    write(http, [{"visitorId": "v-1", "values": {"plan": "pro", "seats": 3}}])
    assert (
        http.post(
            "/_emulator/alter", json={"kind": "visitor", "id": "v-1", "values": {"plan": "edited"}}
        ).status_code
        == 200
    )
    emulator.alter("visitor", "v-1", {"seats": None})
    assert emulator.values_of("visitor", "v-1") == {"plan": "edited"}
    assert (
        http.post("/_emulator/alter", json={"kind": "visitor", "id": "nobody", "values": {}}).status_code
        == 400
    )
