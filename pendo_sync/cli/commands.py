"""The commands that talk to the warehouse and Pendo: check, run, verify, discover."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from sqlalchemy.engine import Engine

from pendo_sync.cli.output import ProgressDisplay, as_json, summary
from pendo_sync.config import ProjectConfig, load_config
from pendo_sync.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_PROBLEMS, EXIT_REJECTS
from pendo_sync.pendo.client import PendoClient
from pendo_sync.settings import Settings
from pendo_sync.state.store import StateStore


def settings_of(args: argparse.Namespace) -> Settings:
    """The environment, read once (secrets included); --warehouse-url wins over PENDO_SYNC_WAREHOUSE_URL."""
    return Settings.from_env(getattr(args, "warehouse_url", None))


def connect(
    args: argparse.Namespace, config: ProjectConfig
) -> tuple[Engine, StateStore, Callable[[], PendoClient]]:
    """The warehouse, the state store and a Pendo client factory, as Dagster's resources make them."""
    settings = settings_of(args)
    warehouse = settings.warehouse()
    return warehouse, settings.state(warehouse, config.state_schema), lambda: settings.pendo(config.delivery)


def cmd_discover(args: argparse.Namespace) -> int:
    from pendo_sync.warehouse.catalog import discover, to_singer_catalog

    engine = settings_of(args).warehouse()
    catalog = discover(engine, schemas=args.schema or None)
    print(json.dumps(to_singer_catalog(catalog, engine.url.database or ""), indent=2, default=str))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Every problem of the config, the warehouse and Pendo in one round (`error:` lines, on stderr), the
    columns whose type does not fit (`warning:`), or what each sync would send."""
    from pendo_sync.engine.preflight import PreflightError, describe_source, type_warnings_seen
    from pendo_sync.engine.run import RunOptions, run_sync

    config = load_config(args.config, lenient=True)
    engine, state, pendo = connect(args, config)
    names = set(args.syncs or [s.name for s in config.syncs])
    unknown = names - {s.name for s in config.syncs}
    problems = list(config.problems) + [
        f"no sync named {n!r}; the config has: {', '.join(s.name for s in config.syncs)}"
        for n in sorted(unknown)
    ]
    warnings: list[str] = []
    for spec in [s for s in config.syncs if s.name in names]:
        mode = "incremental" if spec.replication_key else "full"
        try:
            plan = run_sync(spec, engine, state, pendo, config.delivery, RunOptions(mode=mode, dry_run=True))
        except PreflightError as exc:
            problems += exc.problems
            continue
        warnings += type_warnings_seen(spec, describe_source(engine, spec).columns or {}, state)
        duplicated = plan.counts.duplicate
        own = sum(p.startswith(f"sync {spec.name!r}") for p in config.problems)
        verdict = (
            f"{own} config problem{'s' if own > 1 else ''} (below); with {'them' if own > 1 else 'it'} fixed,"
            if own
            else "OK;"
        )
        print(
            f"{spec.name}: {verdict} {'an' if mode == 'incremental' else 'a'} {mode} run would send "
            f"{plan.counts.rows_read:,} records ({plan.slice}) to Pendo {spec.kind} {spec.group} fields "
            f"{', '.join(m.field for m in spec.fields)}"
            + (
                f"; {duplicated:,} {'id is' if duplicated == 1 else 'ids are'} carried by more than one row "
                f"and will be rejected until one row carries each (make {spec.id_column} unique)"
                if duplicated
                else ""
            )
        )
    for line in [f"error: {p}" for p in problems] + [f"warning: {w}" for w in warnings]:
        print(line, file=sys.stderr)
    if config.problems:
        return EXIT_CONFIG
    return EXIT_PROBLEMS if problems else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run one sync outside Dagster (scripts, the kill test, a terminal with a progress bar)."""
    from pendo_sync.engine.run import RunOptions, run_sync

    config = load_config(args.config)
    spec = config.sync(args.sync)
    engine, state, pendo = connect(args, config)
    display = ProgressDisplay(spec.name)
    mode = args.mode or ("incremental" if spec.replication_key else "full")
    options = RunOptions(
        mode=mode,
        full_refresh=args.full_refresh,
        progress=display,
        progress_every_seconds=display.every_seconds,
    )
    if args.window:
        options.mode, options.window = "backfill", tuple(args.window)
    try:
        outcome = run_sync(spec, engine, state, pendo, config.delivery, options)
    finally:
        display.finish()
    print(as_json(outcome) if args.json else summary(outcome))
    counts = outcome.counts
    if outcome.status == "failed":
        first = next((r.reason for r in outcome.reject_sample.get("error", [])), "")
        print(
            f"pendo-sync: sync {spec.name!r} failed: Pendo refused or failed every row it was sent "
            f"({counts.errors:,} errors, the first: {first}); every row is retried by the next run",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if counts.rejected and not args.accept_rejects:
        kinds = [("invalid", counts.invalid), ("duplicate", counts.duplicate), ("errors", counts.errors)]
        rows = "1 row was" if counts.rejected == 1 else f"{counts.rejected:,} rows were"
        print(
            f"pendo-sync: sync {spec.name!r}: {rows} not applied ({', '.join(f'{n:,} {k}' for k, n in kinds if n)}); "
            f"each is retried by every later run (pendo-sync rejects {spec.name} lists the reasons); pass "
            "--accept-rejects to exit 0 on rejects",
            file=sys.stderr,
        )
        return EXIT_REJECTS
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Read Pendo back and compare it with the source; exit 3 when Pendo differs."""
    from pendo_sync.engine.verify import verify

    config = load_config(args.config)
    spec = config.sync(args.sync)
    engine, state, pendo = connect(args, config)

    async def read_back():  # type: ignore[no-untyped-def]
        async with pendo() as client:
            return await verify(spec, engine, state, client, None if args.all else args.sample, args.repair)

    result = asyncio.run(read_back())
    print(result.summary())
    if result.repaired:
        print(f"  the next run of {spec.name} resends these {result.repaired:,} ids (drift rejects)")
    return EXIT_OK if result.ok else EXIT_REJECTS
