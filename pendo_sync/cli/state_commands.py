"""The commands that read and move a sync's state: state (list, show, revert, import-singer, unlock) and
rejects."""

from __future__ import annotations

import argparse
import json
import sys

from pendo_sync.cli.commands import connect
from pendo_sync.cli.output import rejects as format_rejects
from pendo_sync.config import load_config
from pendo_sync.errors import EXIT_OK, EXIT_PROBLEMS
from pendo_sync.state.versions import StateError


def cmd_rejects(args: argparse.Namespace) -> int:
    """The outstanding rejects of a sync: id, kind, reason, first and last seen, attempts."""
    config = load_config(args.config)
    config.sync(args.sync)
    _, state, _ = connect(args, config)
    state.ensure_schema()
    rows = state.rejects.outstanding(args.sync, kind=args.kind, limit=args.limit)
    print(format_rejects(rows, args.format))
    if args.format == "table":
        counts = state.rejects.count_by_kind(args.sync)
        total = sum(counts.values())
        shown = f"{len(rows):,} of {total:,}" if len(rows) < total else f"{total:,}"
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items()))
        print(f"{shown} outstanding rejects of {args.sync} ({kinds or 'none'})", file=sys.stderr)
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    config.sync(args.sync)
    warehouse, state, _ = connect(args, config)
    state.ensure_schema()
    if args.state_cmd == "list":
        for v in state.versions.all(args.sync):
            c = v.counts
            print(
                f"{v.version:>4}  {v.started_at:%Y-%m-%d %H:%M:%S}  {v.mode:<11} {v.status:<12} cursor={v.cursor}  "
                f"sent={c.sent} missing={c.missing} rejected={c.rejected} cleared={c.cleared}"
            )
    elif args.state_cmd == "show":
        found = state.versions.get(args.sync, args.version)
        if found is None:
            raise StateError(f"sync {args.sync!r} has no state version {args.version or '(none yet)'}")
        by_kind = state.rejects.count_by_kind(args.sync)
        shown = {
            **found.as_dict(),
            "ledger_rows": state.ledger.count(args.sync),
            "outstanding_rejects": sum(by_kind.values()),
            "rejects_by_kind": dict(sorted(by_kind.items())),
            "common_reasons": state.rejects.reasons(args.sync, limit=5),
        }
        print(json.dumps(shown, indent=2, default=str))
    elif args.state_cmd == "revert":
        forgotten = state.versions.revert_plan(args.sync, args.to)
        print(
            f"Reverting {args.sync} to version {args.to} forgets {forgotten:,} confirmed rows; "
            f"the next run resends them (and anything changed since)."
        )
        if not args.yes and (not sys.stdin.isatty() or input("Proceed? [y/N] ").strip().lower() != "y"):
            print("Nothing changed. Pass --yes to revert without asking.")
            return EXIT_PROBLEMS
        reverted = state.versions.revert(args.sync, args.to)
        print(f"Done: state version {reverted.version} records the revert; cursor is now {reverted.cursor}.")
    elif args.state_cmd == "import-singer":
        from pendo_sync.engine.singer_import import import_singer_state

        version, rows = import_singer_state(
            config.sync(args.sync), warehouse, state, args.state_file, args.stream
        )
        if version is None:
            print(
                "Nothing imported: the Singer bookmark holds no replication_key_value, so the old pipeline "
                f"synced none of the rows; the first run of {args.sync} sends every row."
            )
        else:
            print(
                f"Imported: state version {version}; {rows:,} rows up to the bookmark marked as already in Pendo."
            )
    elif args.state_cmd == "unlock":
        state.locks.release(args.sync)
        print(f"Released the lock of {args.sync}.")
    return EXIT_OK
