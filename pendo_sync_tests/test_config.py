"""Config errors: each names the sync, the key and the fix, with the exact text users see."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pendo_sync.config import DEMO_CONFIG, ConfigError, DeliverySettings, load_config, parse_config
from pendo_sync.config_values import DELIVERY_OPTIONS

GOOD = {
    "syncs": {
        "accounts": {
            "kind": "account",
            "table": "public.accounts",
            "id_column": "account_id",
            "fields": {"plan": {"type": "string"}, "seats": {"field": "seat_count", "type": "integer"}},
        }
    }
}


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def with_sync(**changes: object) -> dict:
    sync = {**GOOD["syncs"]["accounts"], **changes}
    return {"syncs": {"accounts": {k: v for k, v in sync.items() if v is not None}}}


def test_demo_config_loads() -> None:
    config = load_config(DEMO_CONFIG)
    assert [s.name for s in config.syncs] == ["accounts", "visitors"]
    accounts = config.sync("accounts")
    assert accounts.id_key == "accountId" and accounts.group == "custom" and accounts.on_delete == "clear"
    assert [(m.column, m.field, m.type) for m in accounts.fields][2] == ("arr", "annual_revenue", "float")


def test_good_config_parses_with_defaults() -> None:
    spec = parse_config(GOOD).sync("accounts")
    assert spec.group == "custom" and spec.on_delete == "ignore" and spec.replication_key is None
    assert [(m.column, m.field, m.type) for m in spec.fields] == [
        ("plan", "plan", "string"),
        ("seats", "seat_count", "integer"),
    ]


def test_unknown_key_names_sync_key_and_suggestion() -> None:
    assert problems_of(with_sync(replication_ky="updated_at")) == [
        "sync 'accounts': unknown key 'replication_ky' (did you mean 'replication_key'?); allowed keys are "
        "automation, blocking_reject_check, change_log, clear_with, create_missing, description, "
        "existing_id_length, existing_ids_only, fields, freshness, full_cron, group, id_column, "
        "incremental_cron, kind, lookback_seconds, max_reject_share, missing_retry_seconds, on_delete, "
        "partition_start, query, replication_key, table, time_format, upstream, verify_sample"
    ]


def test_missing_id_column() -> None:
    assert problems_of(with_sync(id_column=None)) == [
        "sync 'accounts': 'id_column' is required; name the column that holds the Pendo account id"
    ]


def test_unknown_pendo_type() -> None:
    raw = with_sync(fields={"seats": {"type": "int"}})
    assert problems_of(raw) == [
        "sync 'accounts', column 'seats': unknown Pendo type 'int'; use one of string, boolean, integer, "
        "float, time, list"
    ]


def test_two_columns_one_field() -> None:
    raw = with_sync(fields={"plan": "string", "tier": {"field": "plan", "type": "string"}})
    assert problems_of(raw) == [
        "sync 'accounts': columns 'plan' and 'tier' both map to Pendo field 'plan'; map each field from one column"
    ]


def test_kind_group_and_source_errors_together() -> None:
    raw = with_sync(kind="user", group="auto", table=None)
    assert problems_of(raw) == [
        "sync 'accounts': kind 'user' is not one of visitor, account; set kind: visitor or kind: account",
        "sync 'accounts': group 'auto' is not one of custom, agent; set group: custom or group: agent",
        "sync 'accounts': give exactly one of 'table' (schema.table) or 'query' (a SELECT)",
    ]


def test_aliases_and_delivery_settings() -> None:
    raw = {**with_sync(fields={"arr": "number", "renews": "date"}), "delivery": {"concurrency": 3}}
    config = parse_config(raw)
    assert [m.type for m in config.sync("accounts").fields] == ["float", "time"]
    assert config.delivery.concurrency == 3 and config.delivery.batch_records == 1000


def test_bad_delivery_setting() -> None:
    assert problems_of({**GOOD, "delivery": {"concurency": 3}})[0].startswith(
        "delivery: unknown key 'concurency' (did you mean 'concurrency'?)"
    )


@pytest.mark.parametrize(
    ("delivery", "problems"),
    [
        (
            {"concurrency": 0, "chunk_rows": 0, "max_batch_records": 0, "max_attempts": 0},
            [
                "delivery.concurrency: 0 is not a whole number from 1 to 100",
                "delivery.chunk_rows: 0 is not a whole number from 1 to 1,000,000",
                "delivery.max_batch_records: 0 is not a whole number from 1 to 100,000",
                "delivery.max_attempts: 0 is not a whole number from 1 to 100",
            ],
        ),
        (
            {"min_concurrency": 0, "batch_records": 2.5, "max_batch_bytes": 10, "concurrency": True},
            [
                "delivery.min_concurrency: 0 is not a whole number from 1 to 100",
                "delivery.batch_records: 2.5 is not a whole number from 1 to 100,000",
                "delivery.max_batch_bytes: 10 is not a whole number from 1,000 to 100,000,000",
                "delivery.concurrency: True is not a whole number from 1 to 100",
            ],
        ),
        (
            {
                "target_call_seconds": 0,
                "request_timeout_seconds": float("nan"),
                "progress_every_seconds": -1,
                "backoff_max_seconds": float("inf"),
                "runtime_budget_seconds": "1h",
                "backoff_base_seconds": 3601,
            },
            [
                "delivery.target_call_seconds: 0 is not a number of seconds above 0, up to 300",
                "delivery.request_timeout_seconds: nan is not a number of seconds above 0, up to 3,600",
                "delivery.progress_every_seconds: -1 is not a number of seconds above 0, up to 3,600",
                "delivery.backoff_max_seconds: inf is not a number of seconds from 0 (no wait) to 3,600",
                "delivery.runtime_budget_seconds: '1h' is not a number of seconds from 0 (no budget) to 604,800",
                "delivery.backoff_base_seconds: 3601 is not a number of seconds from 0 (no wait) to 3,600",
            ],
        ),
    ],
)
def test_every_delivery_setting_is_checked_against_its_bounds(delivery: dict, problems: list[str]) -> None:
    """concurrency: 0 made a run wait forever for a connection, and chunk_rows: 0 was an internal error
    (range() arg 3 must not be zero): each was taken as it was, as anything from 0 up was."""
    assert problems_of({**GOOD, "delivery": delivery}) == problems


def test_delivery_settings_at_their_bounds_are_taken() -> None:
    assert set(DELIVERY_OPTIONS) == set(DeliverySettings.__dataclass_fields__)  # each setting has its bounds
    least = {
        "concurrency": 1,
        "max_batch_bytes": 1000,
        "backoff_base_seconds": 0,
        "runtime_budget_seconds": 0,
    }
    most = {"chunk_rows": 1_000_000, "target_call_seconds": 300, "request_timeout_seconds": 3600.0}
    delivery = parse_config({**GOOD, "delivery": {**least, **most, "progress_every_seconds": 0.05}}).delivery
    assert (delivery.concurrency, delivery.max_batch_bytes, delivery.chunk_rows) == (1, 1000, 1_000_000)
    assert (delivery.target_call_seconds, delivery.backoff_base_seconds) == (300.0, 0.0)
    assert isinstance(delivery.target_call_seconds, float) and delivery.progress_every_seconds == 0.05


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; set PENDO_SYNC_CONFIG to your file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("syncs: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_env_var_points_at_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    monkeypatch.setenv("PENDO_SYNC_CONFIG", str(path))
    assert load_config().source == str(path)


def test_a_change_log_takes_at_most_the_fields_the_ledger_has_room_for() -> None:
    fields = {f"c{n}": {"type": "integer"} for n in range(114)}
    assert problems_of(with_sync(fields=fields, change_log={"retention_days": 30})) == [
        "sync 'accounts': change_log: the ledger keeps the fingerprints of at most 113 mapped fields, and this "
        "sync maps 114; split it into two syncs (each maps part of the fields) or leave the change log off"
    ]
    del fields["c0"]
    assert parse_config(with_sync(fields=fields, change_log={"retention_days": 30})).syncs[0].logs_changes


def test_a_sync_named_as_another_syncs_daily_asset_is_refused() -> None:
    raw = with_sync(replication_key="updated_at")
    raw["syncs"]["accounts_daily"] = raw["syncs"]["accounts"]
    assert problems_of(raw) == [
        "sync 'accounts_daily': its Dagster asset pendo/accounts_daily is the day-partitioned asset of sync "
        "'accounts'; rename it (for example accounts_by_day)"
    ]


def test_a_key_given_twice_a_directory_and_bytes_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys without a word: a second sync of the same name replaced the
    first, a second `table:` the first. A directory or a file that is not UTF-8 was an internal error."""
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "syncs:\n  accounts:\n    kind: account\n    table: a\n  accounts:\n    kind: account\n    table: b\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(twice)
    assert (raised.value.source, raised.value.problems) == (
        str(twice),
        [
            "line 5, column 3: key 'accounts' appears twice in one mapping (YAML would keep only the last); keep one"
        ],
    )
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert raised.value.problems == [
        f"config file {tmp_path} is a directory; set PENDO_SYNC_CONFIG (or --config) to the YAML file"
    ]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"syncs:\n  caf\xe9:\n    kind: account\n")
    with pytest.raises(ConfigError) as raised:
        load_config(latin)
    assert raised.value.problems == ["not UTF-8 text (byte 0xe9 at offset 12); save the file as UTF-8"]


def test_a_sync_name_longer_than_the_state_keeps_is_refused() -> None:
    """It passed the config and failed the first run (value too long for type character varying(128))."""
    name = "a" * 101
    raw = {"syncs": {name: GOOD["syncs"]["accounts"]}}
    assert problems_of(raw) == [
        f"sync {name!r}: the name is 101 characters; use at most 100 (it names the sync's state rows and its "
        "Dagster assets)"
    ]


def test_merge_keys_still_share_settings(tmp_path: Path) -> None:
    path = tmp_path / "merged.yaml"
    path.write_text(
        "defaults: &base\n  kind: account\n  id_column: account_id\n  fields: {plan: {type: string}}\n"
        "syncs:\n  accounts:\n    <<: *base\n    table: accounts\n  others:\n    <<: *base\n    table: others\n"
        "    id_column: other_id\n"
    )
    raw = yaml.load(path.read_text(), Loader=yaml.SafeLoader)
    del raw["defaults"]
    path.write_text(yaml.safe_dump(raw))  # the same document without the anchor's host key...
    assert [s.name for s in load_config(path).syncs] == ["accounts", "others"]
    anchored = tmp_path / "anchored.yaml"
    anchored.write_text(
        "syncs:\n  accounts: &base\n    kind: account\n    table: accounts\n    id_column: account_id\n"
        "    fields: {plan: {type: string}}\n  others:\n    <<: *base\n    table: others\n    id_column: other_id\n"
    )
    config = load_config(anchored)  # ...and with it: a merged key overridden is not a key given twice
    assert [(s.name, s.table, s.id_column) for s in config.syncs] == [
        ("accounts", "accounts", "account_id"),
        ("others", "others", "other_id"),
    ]
