"""`pendo-sync`: demo, discover, emulator, check, run, and state (list, show, revert, import-singer, unlock)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from pendo_sync.config import ProjectConfig, load_config
from pendo_sync.errors import EXIT_BUG, EXIT_FAILED, EXIT_OK, EXIT_REJECTS, PendoSyncError
from pendo_sync.pendo.client import EMULATOR_KEY, PendoClient
from pendo_sync.settings import Settings
from pendo_sync.state.store import StateStore
from pendo_sync.state.versions import StateError
from pendo_sync.variables import TRACEBACK


def _settings(args: argparse.Namespace) -> Settings:
    """The environment, read once (secrets included); --warehouse-url wins over PENDO_SYNC_WAREHOUSE_URL."""
    return Settings.from_env(getattr(args, "warehouse_url", None))


def _connect(
    args: argparse.Namespace, config: ProjectConfig
) -> tuple[Engine, StateStore, Callable[[], PendoClient]]:
    """The warehouse, the state store and a Pendo client factory, as Dagster's resources make them."""
    settings = _settings(args)
    warehouse = settings.warehouse()
    return warehouse, settings.state(warehouse, config.state_schema), lambda: settings.pendo(config.delivery)


def cmd_discover(args: argparse.Namespace) -> int:
    from pendo_sync.warehouse.catalog import discover, to_singer_catalog

    engine = _settings(args).warehouse()
    catalog = discover(engine, schemas=args.schema or None)
    print(json.dumps(to_singer_catalog(catalog, engine.url.database or ""), indent=2, default=str))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config against the warehouse and Pendo; print problems, or what each sync would send."""
    from pendo_sync.engine.preflight import PreflightError
    from pendo_sync.engine.run import RunOptions, run_sync

    config = load_config(args.config)
    engine, state, pendo = _connect(args, config)
    specs = [config.sync(n) for n in args.syncs] if args.syncs else list(config.syncs)
    problems: list[str] = []
    for spec in specs:
        mode = "incremental" if spec.replication_key else "full"
        try:
            plan = run_sync(spec, engine, state, pendo, config.delivery, RunOptions(mode=mode, dry_run=True))
        except PreflightError as exc:
            problems += exc.problems
            continue
        duplicated = plan.counts.duplicate
        print(
            f"{spec.name}: OK; {'an' if mode == 'incremental' else 'a'} {mode} run would send {plan.counts.rows_read:,} records "
            f"({plan.slice}) to Pendo {spec.kind} {spec.group} fields "
            f"{', '.join(m.field for m in spec.fields)}"
            + (
                f"; {duplicated:,} {'id is' if duplicated == 1 else 'ids are'} carried by more than one row "
                f"and will be rejected until one row carries each (make {spec.id_column} unique)"
                if duplicated
                else ""
            )
        )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one sync outside Dagster (scripts, the kill test, a terminal with a progress bar)."""
    from pendo_sync.engine.run import RunOptions, run_sync
    from pendo_sync.engine.runner import Progress

    config = load_config(args.config)
    spec = config.sync(args.sync)
    engine, state, pendo = _connect(args, config)
    tty = sys.stderr.isatty()

    def show(progress: Progress) -> None:
        end = "" if tty else "\n"
        print(("\r" if tty else "") + f"{spec.name}: {progress.line()}", end=end, file=sys.stderr, flush=True)

    mode = args.mode or ("incremental" if spec.replication_key else "full")
    options = RunOptions(mode=mode, full_refresh=args.full_refresh, progress=show)
    if args.window:
        options.mode, options.window = "backfill", tuple(args.window)
    outcome = run_sync(spec, engine, state, pendo, config.delivery, options)
    if tty:
        print(file=sys.stderr)
    print(
        json.dumps(
            {
                "sync": spec.name,
                "status": outcome.status,
                "version": outcome.version,
                "counts": outcome.counts.as_dict(),
                "seconds": round(outcome.duration_seconds, 3),
                "records_per_second": round(outcome.records_per_second, 1),
            },
            default=str,
        )
    )
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
        kinds = ", ".join(
            f"{n:,} {kind}"
            for kind, n in (
                ("invalid", counts.invalid),
                ("duplicate", counts.duplicate),
                ("errors", counts.errors),
            )
            if n
        )
        rows = "1 row was" if counts.rejected == 1 else f"{counts.rejected:,} rows were"
        print(
            f"pendo-sync: sync {spec.name!r}: {rows} not applied ({kinds}); each is retried by every later run "
            f"(pendo-sync state show {spec.name} lists the reasons); pass --accept-rejects to exit 0 on rejects",
            file=sys.stderr,
        )
        return EXIT_REJECTS
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    config.sync(args.sync)
    warehouse, state, _ = _connect(args, config)
    state.ensure_schema()
    if args.state_cmd == "list":
        for v in state.versions.all(args.sync):
            c = v.counts
            print(
                f"{v.version:>4}  {v.started_at:%Y-%m-%d %H:%M:%S}  {v.mode:<11} {v.status:<8} cursor={v.cursor}  "
                f"sent={c['sent']} missing={c['missing']} rejected={c['rejected']} cleared={c['cleared']}"
            )
    elif args.state_cmd == "show":
        found = state.versions.get(args.sync, args.version)
        if found is None:
            raise StateError(f"sync {args.sync!r} has no state version {args.version or '(none yet)'}")
        print(
            json.dumps(
                {
                    **found.as_dict(),
                    "ledger_rows": state.ledger.count(args.sync),
                    "outstanding_rejects": sum(state.rejects.count_by_kind(args.sync).values()),
                },
                indent=2,
            )
        )
    elif args.state_cmd == "revert":
        forgotten = state.versions.revert_plan(args.sync, args.to)
        print(
            f"Reverting {args.sync} to version {args.to} forgets {forgotten:,} confirmed rows; "
            f"the next run resends them (and anything changed since)."
        )
        if not args.yes and (not sys.stdin.isatty() or input("Proceed? [y/N] ").strip().lower() != "y"):
            print("Nothing changed. Pass --yes to revert without asking.")
            return 1
        reverted = state.versions.revert(args.sync, args.to)
        print(f"Done: state version {reverted.version} records the revert; cursor is now {reverted.cursor}.")
    elif args.state_cmd == "import-singer":
        from pendo_sync.engine.singer_import import import_singer_state

        version, rows = import_singer_state(
            config.sync(args.sync), warehouse, state, args.state_file, args.stream
        )
        print(
            f"Imported: state version {version}; {rows:,} rows up to the bookmark marked as already in Pendo."
        )
    elif args.state_cmd == "unlock":
        state.locks.release(args.sync)
        print(f"Released the lock of {args.sync}.")
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from pendo_sync.pendo.emulator import Emulator, EmulatorSettings, serve

    settings = EmulatorSettings(
        integration_key=args.key,
        fixed_latency_s=args.latency_ms / 1000,
        per_record_latency_s=args.per_record_us / 1e6,
        call_time_limit_s=args.time_limit,
        max_concurrent=args.max_concurrent,
        retry_after_s=args.retry_after,
    )
    print(
        f"Pendo emulator on http://{args.host}:{args.port} (key: set PENDO_INTEGRATION_KEY to the --key value)",
        file=sys.stderr,
    )
    if not args.seed:
        from pendo_sync.demo.run import serve_demo_emulator

        serve_demo_emulator(settings, args.host, args.port)
        return 0
    emulator = Emulator(settings)
    emulator.seed_from_file(args.seed)
    serve(emulator, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pendo_sync.demo.run import run_demo

    return run_demo(accounts=args.accounts, visitors=args.visitors, fresh=args.fresh)


def cmd_dev(args: argparse.Namespace) -> int:
    from pendo_sync.demo.run import run_dev

    return run_dev(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pendo-sync", description=__doc__)
    parser.add_argument(
        "--config", help="sync config YAML (default: $PENDO_SYNC_CONFIG, else the demo config)"
    )
    parser.add_argument(
        "--warehouse-url", help="SQLAlchemy URL (default: $PENDO_SYNC_WAREHOUSE_URL, else DuckDB)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="sample warehouse + local emulator + both syncs through Dagster")
    demo.add_argument("--accounts", type=int, default=5_000)
    demo.add_argument("--visitors", type=int, default=50_000)
    demo.add_argument("--fresh", action="store_true", help="recreate the sample data, state and emulator")
    demo.set_defaults(func=cmd_demo)

    dev = sub.add_parser("dev", help="the Dagster UI on the embedded defaults, with the emulator running")
    dev.add_argument("--port", type=int, default=8765, help="emulator port")
    dev.set_defaults(func=cmd_dev)

    disc = sub.add_parser("discover", help="print the warehouse catalog as a Singer catalog (JSON)")
    disc.add_argument("--schema", action="append", help="limit to a schema (repeatable)")
    disc.set_defaults(func=cmd_discover)

    check = sub.add_parser("check", help="validate the config against the warehouse and Pendo; print a plan")
    check.add_argument("syncs", nargs="*")
    check.set_defaults(func=cmd_check)

    run = sub.add_parser("run", help="run one sync now, outside Dagster")
    run.add_argument("sync")
    run.add_argument("--mode", choices=["full", "incremental"])
    run.add_argument("--full-refresh", action="store_true", help="ignore the ledger and resend every row")
    run.add_argument("--window", nargs=2, metavar=("START", "END"), help="backfill [START, END) of the key")
    run.add_argument(
        "--accept-rejects",
        action="store_true",
        help="exit 0 when rows were rejected (they are retried by later runs)",
    )
    run.set_defaults(func=cmd_run)

    emu = sub.add_parser("emulator", help="run the local Pendo emulator")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8765)
    emu.add_argument("--seed", help="seed JSON (fields and ids); default: the demo's fields, ids and records")
    emu.add_argument("--key", default=EMULATOR_KEY)
    emu.add_argument("--latency-ms", type=float, default=0.0)
    emu.add_argument("--per-record-us", type=float, default=0.0)
    emu.add_argument("--time-limit", type=float, default=300.0)
    emu.add_argument("--max-concurrent", type=int, default=0)
    emu.add_argument("--retry-after", type=float, default=1.0)
    emu.set_defaults(func=cmd_emulator)

    state = sub.add_parser("state", help="inspect and move a sync's state")
    state_sub = state.add_subparsers(dest="state_cmd", required=True)
    for name, text in (
        ("list", "every state version"),
        ("show", "one version (default: newest)"),
        ("revert", "step back to a version"),
        ("import-singer", "start from a Singer state file"),
        ("unlock", "release a dead run's lock"),
    ):
        cmd = state_sub.add_parser(name, help=text)
        cmd.add_argument("sync")
        if name == "show":
            cmd.add_argument("version", nargs="?", type=int)
        if name == "revert":
            cmd.add_argument("--to", type=int, required=True)
            cmd.add_argument("--yes", action="store_true")
        if name == "import-singer":
            cmd.add_argument("state_file")
            cmd.add_argument(
                "--stream", help="bookmark key (default: the one ending in the sync's table name)"
            )
        cmd.set_defaults(func=cmd_state)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PendoSyncError as exc:
        for line in exc.lines():
            print(f"pendo-sync: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pendo-sync: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, and how to see the traceback
        if TRACEBACK.value():
            raise
        print(
            f"pendo-sync: internal error: {type(exc).__name__}: {exc}; this is a bug in pendo_sync: rerun with "
            "PENDO_SYNC_TRACEBACK=1 to see where, and report it",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
