"""What can stop pendo_sync, as exceptions a person can act on: each message names the sync, the place and
the fix, in one line, and carries the exit code `pendo-sync` ends with. Dagster shows the same message
as the failure of the step. No message ever holds the integration key or a password (invariant 6).

| exit | meaning |
|------|---------|
| 0 | done: every row applied, or the runtime budget reached (the next run resumes) |
| 1 | `check` or a run's preflight found the config at odds with the warehouse or Pendo |
| 2 | the config, the command line or the state is not usable as given |
| 3 | the run went through and rejected rows (invalid values, duplicate ids, refused by Pendo) |
| 4 | the run failed: Pendo or the warehouse unreachable or refusing, or every row refused |
| 70 | a bug in pendo_sync: the message says how to report it |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_REJECTS = 3
EXIT_FAILED = 4
EXIT_BUG = 70


class PendoSyncError(Exception):
    """Base of every error pendo_sync explains; `exit_code` is what `pendo-sync` exits with."""

    exit_code = EXIT_FAILED

    def lines(self) -> list[str]:
        """The message as `pendo-sync` prints it, one line each (several for a list of problems)."""
        return [str(self)]


class UsageError(PendoSyncError, ValueError):
    """The config, the command line or the state cannot be used as given."""

    exit_code = EXIT_CONFIG


class SyncFailed(PendoSyncError, RuntimeError):
    """A run or a check could not go on: the warehouse or Pendo is unreachable or refused it."""

    exit_code = EXIT_FAILED
