"""`pendo-sync`: demo, dev, discover, emulator, check, run, verify, rejects, and state (list, show, revert,
import-singer, unlock). Every failure ends as one line naming the sync, the place and the fix, with the
exit code of pendo_sync/errors.py."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

import sqlalchemy as sa

from pendo_sync.cli.commands import cmd_check, cmd_discover, cmd_run, cmd_verify
from pendo_sync.cli.state_commands import cmd_rejects, cmd_state
from pendo_sync.errors import EXIT_BUG, EXIT_FAILED, PendoSyncError, UsageError
from pendo_sync.outcome import REJECT_KINDS
from pendo_sync.pendo.client import EMULATOR_KEY
from pendo_sync.secrets import redact
from pendo_sync.variables import TRACEBACK
from pendo_sync.warehouse.errors import first_line, lost_connection


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
    key = "the --key value" if args.key != EMULATOR_KEY else f"{EMULATOR_KEY} (the default)"

    def banner(port: int) -> None:  # once the port is bound
        print(
            f"Pendo emulator on http://{args.host}:{port} (key: set PENDO_INTEGRATION_KEY to {key})",
            file=sys.stderr,
        )

    try:
        if not args.seed:
            from pendo_sync.demo.run import serve_demo_emulator

            serve_demo_emulator(settings, args.host, args.port, banner)
            return 0
        emulator = Emulator(settings)
        emulator.seed_from_file(args.seed)
        serve(emulator, args.host, args.port, banner)
    except OSError as exc:
        raise UsageError(
            f"cannot serve the emulator on {args.host}:{args.port}: {exc.strerror or exc}; pick another --port, "
            "or stop what listens there"
        ) from None
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
    dev.add_argument("--port", type=_port, default=8765, help="emulator port")
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
    run.add_argument("--json", action="store_true", help="the outcome as one line of JSON, for scripts")
    run.set_defaults(func=cmd_run)

    verify = sub.add_parser("verify", help="read Pendo back and compare it with the source")
    verify.add_argument("sync")
    how_many = verify.add_mutually_exclusive_group()
    how_many.add_argument(
        "--sample", type=_count, default=200, help="confirmed ids read back at random (200)"
    )
    how_many.add_argument("--all", action="store_true", help="every record, through the aggregation API")
    verify.add_argument("--repair", action="store_true", help="the next run resends the ids that differ")
    verify.set_defaults(func=cmd_verify)

    rejects = sub.add_parser("rejects", help="the outstanding rejects of a sync, with their reasons")
    rejects.add_argument("sync")
    rejects.add_argument("--kind", choices=sorted(REJECT_KINDS))
    rejects.add_argument("--limit", type=_count, default=50, help="rows shown (50; 0: all)")
    rejects.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rejects.set_defaults(func=cmd_rejects)

    emu = sub.add_parser("emulator", help="run the local Pendo emulator")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=_port, default=8765)
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


def _unreachable_or_refused(exc: sa.exc.DBAPIError) -> bool:
    """A database that is down, unreachable or refuses this user (PostgreSQL's insufficient privilege), as
    opposed to a statement of ours it refused (a bug: the internal-error line)."""
    refused = getattr(getattr(exc, "orig", None), "pgcode", None) == "42501"
    return lost_connection(exc) or refused


def _count(text: str) -> int:
    """A count on the command line: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def _port(text: str) -> int:
    """A TCP port on the command line: 0 (any free one) to 65535."""
    port = _count(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{port} is past 65535, the last TCP port")
    return port


class Terminated(KeyboardInterrupt):
    """SIGTERM (how ECS, Kubernetes and Dagster stop a process), raised where Ctrl-C would be: a run closes
    its version and releases its lock on the way out, as it does for Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Commands that write state; `dev` and `demo` leave SIGTERM to their children (dg dev and its daemon).
    in_main_thread = threading.current_thread() is threading.main_thread()
    handles = in_main_thread and args.command in ("run", "check", "verify")
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handles else None
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except PendoSyncError as exc:
        for line in exc.lines():  # one line, or a header and its `error:` lines
            print(line if line.startswith("error: ") else f"pendo-sync: {line}", file=sys.stderr)
        return exc.exit_code
    except sa.exc.DBAPIError as exc:  # check and run name the sync and the step; the other commands, this
        if not _unreachable_or_refused(exc):
            return _bug(exc)  # a statement of ours refused
        print(
            f"pendo-sync: {args.command}: the database could not be reached or refused: {first_line(exc)}; check "
            "the warehouse URL (--warehouse-url, PENDO_SYNC_WAREHOUSE_URL) or PENDO_SYNC_STATE_URL, that the "
            "database is up and that the user may read it and write the state schema",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Terminated:
        print("pendo-sync: stopped by SIGTERM; the next run resumes where this one stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("pendo-sync: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        return _bug(exc)


def _bug(exc: Exception) -> int:
    """A bug: one line, and how to see the traceback (or the traceback, with PENDO_SYNC_TRACEBACK=1)."""
    if TRACEBACK.value():
        raise exc
    print(
        f"pendo-sync: internal error: {type(exc).__name__}: {redact(str(exc))}; this is a bug in pendo_sync: "
        "rerun with PENDO_SYNC_TRACEBACK=1 to see where, and report it",
        file=sys.stderr,
    )
    return EXIT_BUG
