"""The sync spec: load the YAML file, validate it, and explain every error with its place and its fix.

A file looks like (see README for every key):

    syncs:
      accounts:
        kind: account
        group: custom
        table: public.accounts
        id_column: account_id
        replication_key: updated_at
        fields:
          plan: {type: string}
          seats: {field: seat_count, type: integer}
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pendo_sync.config_values import DELIVERY_OPTIONS, SYNC_OPTIONS
from pendo_sync.errors import UsageError
from pendo_sync.pendo.types import PENDO_TYPES, canonical_type
from pendo_sync.variables import CONFIG

DEMO_CONFIG = Path(__file__).parent / "demo" / "syncs.yaml"
KINDS = ("visitor", "account")
GROUPS = ("custom", "agent")
ON_DELETE = ("clear", "ignore")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SYNC_NAME = 100  # the state tables keep 128 characters; Dagster's names add to it (_daily, pools)


class ConfigError(UsageError):
    """The config cannot be used; `problems` lists each with its place and its fix."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"{len(problems)} problem(s){where}:\n" + "\n".join(f"  - {p}" for p in problems))

    def lines(self) -> list[str]:
        """As `pendo-sync check` prints problems: one `error:` line each, under a header naming the file."""
        where = f" in {self.source}" if self.source else ""
        count = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        return [f"the config has {count}{where}:", *(f"error: {p}" for p in self.problems)]


@dataclass(frozen=True)
class FieldMapping:
    """One warehouse column written to one Pendo field of a declared type."""

    column: str
    field: str
    type: str
    element_type: str = ""


@dataclass(frozen=True)
class DeliverySettings:
    """How records reach Pendo; defaults suit Pendo's documented limits (README: Delivery settings)."""

    concurrency: int = 8
    min_concurrency: int = 1
    batch_records: int = 1000
    max_batch_records: int = 5000
    max_batch_bytes: int = 4_000_000
    target_call_seconds: float = 60.0
    request_timeout_seconds: float = 300.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    runtime_budget_seconds: float = 0.0  # 0 = no budget
    chunk_rows: int = 10_000
    progress_every_seconds: float = 10.0


@dataclass(frozen=True)
class SyncSpec:
    """One source (table or SELECT) with one id column, mapped onto one Pendo kind and group."""

    name: str
    kind: str
    group: str
    id_column: str
    fields: tuple[FieldMapping, ...]
    table: str | None = None
    query: str | None = None
    replication_key: str | None = None
    on_delete: str = "ignore"
    lookback_seconds: int = 3600
    missing_retry_seconds: int = 86_400
    create_missing: bool = False
    existing_ids_only: bool = False
    existing_id_length: int | None = None
    incremental_cron: str = "*/15 * * * *"
    full_cron: str = "0 3 * * *"
    partition_start: str | None = None
    max_reject_share: float = 0.05
    blocking_reject_check: bool = False
    description: str = ""
    upstream: tuple[str, ...] | None = None  # the asset key of the source in the team's graph (a dbt model)
    automation: tuple[str, str | None] | None = (
        None  # ("eager", None) or ("cron", expr): declarative automation
    )
    freshness: tuple[float, float | None] | None = None  # (fail_after, warn_after) seconds
    time_format: str = "epoch_ms"  # how a time is sent: epoch_ms or iso8601 (Pendo's form is not confirmed)
    clear_with: str = "null"  # how a field is cleared: null or empty_string (not confirmed either)
    verify_sample: int = 200  # ids the pendo_matches_source check reads back from Pendo
    change_log_retention_days: int | None = None  # change_log: {retention_days: N}; None: no change log

    @property
    def logs_changes(self) -> bool:
        return self.change_log_retention_days is not None

    @property
    def id_key(self) -> str:
        """The JSON key Pendo uses for this kind's id."""
        return "visitorId" if self.kind == "visitor" else "accountId"

    @property
    def source_label(self) -> str:
        return self.table or "query"

    @property
    def columns(self) -> list[str]:
        return [m.column for m in self.fields]


@dataclass(frozen=True)
class ProjectConfig:
    """Everything in one config file."""

    syncs: tuple[SyncSpec, ...]
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    state_schema: str = "pendo_sync"
    source: str = ""
    problems: tuple[str, ...] = ()  # with parse_config(lenient=True): what is wrong, each with its fix

    def sync(self, name: str) -> SyncSpec:
        for spec in self.syncs:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.syncs)
        raise ConfigError([f"no sync named {name!r}; the config has: {known}"], self.source)


_TOP_KEYS = {
    "syncs": "the syncs, by name",
    "delivery": "delivery settings",
    "state_schema": "schema for state",
}
# The ledger's field_hashes column (state/tables.py) holds 1,024 characters: 8 hex digits a field and a comma.
MAX_LOGGED_FIELDS = 113
_SPEC_FIELD = {"change_log": "change_log_retention_days"}  # an option's name in SyncSpec, where it differs
_CORE_SYNC_KEYS = {"kind", "group", "table", "query", "id_column", "fields", "on_delete"}
_SYNC_KEYS = _CORE_SYNC_KEYS | set(SYNC_OPTIONS)
_FIELD_KEYS = {"field", "type", "element_type"}


def _unknown(key: str, allowed: set[str] | dict[str, str], place: str) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{place}: unknown key {key!r}{hint}; allowed keys are {', '.join(sorted(allowed))}"


def config_path() -> Path:
    """PENDO_SYNC_CONFIG, or the shipped demo config."""
    return Path(CONFIG.value() or DEMO_CONFIG)


def load_config(path: str | Path | None = None, lenient: bool = False) -> ProjectConfig:
    """Read and validate a config file; raise ConfigError listing every problem found (see parse_config)."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError as exc:
        raise ConfigError([f"config file {path} does not exist; set PENDO_SYNC_CONFIG to your file"]) from exc
    except IsADirectoryError as exc:
        raise ConfigError(
            [f"config file {path} is a directory; set PENDO_SYNC_CONFIG (or --config) to the YAML file"]
        ) from exc
    except PermissionError as exc:
        raise ConfigError([f"config file {path} cannot be read (permission denied)"]) from exc
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        problem = f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start}); save the file as UTF-8"
        raise ConfigError([problem], str(path)) from exc
    except _DuplicateKey as exc:
        raise ConfigError([str(exc)], str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from exc
    return parse_config(raw, str(path), lenient)


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML itself keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                continue  # `<<: *anchor` merges; the keys it brings may be overridden, as YAML allows
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                twice = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader refuses it itself
                continue
            if twice:
                mark = key_node.start_mark
                raise _DuplicateKey(
                    f"line {mark.line + 1}, column {mark.column + 1}: key {key!r} appears twice in one mapping "
                    "(YAML would keep only the last); keep one"
                )
        return super().construct_mapping(node, deep)


def parse_config(raw: Any, source: str = "", lenient: bool = False) -> ProjectConfig:
    """Validate a parsed YAML document into a ProjectConfig; ConfigError lists every problem. With
    `lenient` the problems are kept in the config's `problems` instead, and each sync whose kind, source
    and id are sound is kept with the fields and options that are (so `check` can also check those
    against the warehouse and Pendo, in the same round)."""
    problems: list[str] = []
    if not isinstance(raw, dict) or not isinstance(raw.get("syncs"), dict) or not raw["syncs"]:
        raise ConfigError(["the file must have a top-level 'syncs:' mapping of sync name to sync"], source)
    problems += [_unknown(k, _TOP_KEYS, "top level") for k in raw if k not in _TOP_KEYS]
    delivery = _parse_delivery(raw.get("delivery") or {}, problems)
    state_schema = str(raw.get("state_schema", "pendo_sync"))
    if not _NAME.match(state_schema):
        problems.append(
            f"state_schema: {state_schema!r} is not a plain identifier; use letters, digits and _"
        )
    syncs = [_parse_sync(name, body, problems, lenient) for name, body in raw["syncs"].items()]
    problems += [
        f"sync '{s.name}_daily': its Dagster asset pendo/{s.name}_daily is the day-partitioned asset of sync "
        f"{s.name!r}; rename it (for example {s.name}_by_day)"
        for s in syncs
        if s and s.replication_key and f"{s.name}_daily" in raw["syncs"]
    ]
    if problems and not lenient:
        raise ConfigError(problems, source)
    return ProjectConfig(tuple(s for s in syncs if s), delivery, state_schema, source, tuple(problems))


def _parse_delivery(raw: Any, problems: list[str]) -> DeliverySettings:
    if not isinstance(raw, dict):
        problems.append("delivery: must be a mapping of setting to value")
        return DeliverySettings()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in DELIVERY_OPTIONS:
            problems.append(_unknown(key, set(DELIVERY_OPTIONS), "delivery"))
            continue
        try:
            values[key] = DELIVERY_OPTIONS[key](value)
        except ValueError as exc:
            problems.append(f"delivery.{key}: {exc}")
    return DeliverySettings(**values)


def _parse_sync(name: str, body: Any, problems: list[str], lenient: bool = False) -> SyncSpec | None:
    place = f"sync {name!r}"
    if not _NAME.match(str(name)):
        problems.append(
            f"{place}: the name must be a plain identifier (letters, digits, _) as it names Dagster assets"
        )
    elif len(str(name)) > MAX_SYNC_NAME:
        problems.append(
            f"{place}: the name is {len(str(name))} characters; use at most {MAX_SYNC_NAME} (it names the "
            "sync's state rows and its Dagster assets)"
        )
    if not isinstance(body, dict):
        problems.append(f"{place}: must be a mapping with kind, group, table or query, id_column and fields")
        return None
    start = len(problems)
    problems += [_unknown(k, _SYNC_KEYS, place) for k in body if k not in _SYNC_KEYS]
    kind, group = body.get("kind"), body.get("group", "custom")
    if kind not in KINDS:
        problems.append(
            f"{place}: kind {kind!r} is not one of visitor, account; set kind: visitor or kind: account"
        )
    if group not in GROUPS:
        problems.append(
            f"{place}: group {group!r} is not one of custom, agent; set group: custom or group: agent"
        )
    table, query = body.get("table"), body.get("query")
    if bool(table) == bool(query):
        problems.append(f"{place}: give exactly one of 'table' (schema.table) or 'query' (a SELECT)")
    query_ok = not query or _without_leading_comments(str(query)).lower().startswith(("select", "with"))
    if not query_ok:
        problems.append(f"{place}: query must be a SELECT (or WITH ... SELECT) statement")
    id_column = body.get("id_column")
    if not id_column:
        problems.append(
            f"{place}: 'id_column' is required; name the column that holds the Pendo {kind or 'record'} id"
        )
    on_delete = body.get("on_delete", "ignore")
    if on_delete not in ON_DELETE:
        problems.append(f"{place}: on_delete {on_delete!r} is not one of clear, ignore")
    fields = _parse_fields(place, body.get("fields"), problems)
    options: dict[str, Any] = {}
    for key, parse in SYNC_OPTIONS.items():
        if key in body:
            try:
                options[_SPEC_FIELD.get(key, key)] = parse(body[key])
            except ValueError as exc:
                problems.append(f"{place}: {key}: {exc}")
    if "change_log_retention_days" in options and len(fields) > MAX_LOGGED_FIELDS:
        problems.append(
            f"{place}: change_log: the ledger keeps the fingerprints of at most {MAX_LOGGED_FIELDS} mapped "
            f"fields, and this sync maps {len(fields)}; split it into two syncs (each maps part of the "
            "fields) or leave the change log off"
        )
    if on_delete in ON_DELETE:
        options["on_delete"] = on_delete
    sound = kind in KINDS and group in GROUPS and bool(table) != bool(query) and query_ok and bool(id_column)
    sound = sound and bool(fields)
    if len(problems) > start and not (lenient and sound and _NAME.match(str(name))):
        return None
    return SyncSpec(
        name=name,
        kind=str(kind),
        group=str(group),
        id_column=str(id_column),
        fields=tuple(fields),
        table=str(table) if table else None,
        query=_without_final_semicolon(str(query)) if query else None,
        **options,
    )


_LEADING_COMMENT = re.compile(r"\s*(?:--[^\n]*(?:\n|$)|/\*.*?\*/)", re.S)
_FINAL_SEMICOLON = re.compile(r";(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*$", re.S)


def _without_leading_comments(query: str) -> str:
    while match := _LEADING_COMMENT.match(query):
        if not match.group(0):
            break
        query = query[match.end() :]
    return query.lstrip()


def _without_final_semicolon(query: str) -> str:
    """The query as it can be wrapped in a subquery: a final ';' goes (with any comment after it)."""
    return _FINAL_SEMICOLON.sub("", query.strip())


def _parse_fields(place: str, raw: Any, problems: list[str]) -> list[FieldMapping]:
    if not isinstance(raw, dict) or not raw:
        problems.append(
            f"{place}: 'fields' must map each source column to {{field: <pendo field>, type: <type>}}"
        )
        return []
    mappings: list[FieldMapping] = []
    by_field: dict[str, str] = {}
    for column, spec in raw.items():
        where = f"{place}, column {column!r}"
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a type name or {{field: <pendo field>, type: <type>}}")
            continue
        problems += [_unknown(k, _FIELD_KEYS, where) for k in spec if k not in _FIELD_KEYS]
        pendo_type = canonical_type(str(spec.get("type", "")))
        if pendo_type is None:
            problems.append(
                f"{where}: unknown Pendo type {spec.get('type')!r}; use one of {', '.join(PENDO_TYPES)}"
            )
            continue
        element_type = canonical_type(str(spec["element_type"])) if spec.get("element_type") else ""
        if element_type is None or element_type == "list":
            problems.append(f"{where}: element_type {spec.get('element_type')!r} must be a scalar Pendo type")
            continue
        target = str(spec.get("field") or column)
        if target in by_field:
            problems.append(
                f"{place}: columns {by_field[target]!r} and {column!r} both map to Pendo field {target!r}; "
                "map each field from one column"
            )
            continue
        by_field[target] = column
        mappings.append(FieldMapping(str(column), target, pendo_type, element_type))
    return mappings
