"""SQLAlchemy engines for Redshift, PostgreSQL and DuckDB, and the few places their dialects differ."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from pendo_sync.errors import UsageError
from pendo_sync.secrets import register_secret
from pendo_sync.variables import WAREHOUSE_URL
from pendo_sync.warehouse.errors import WarehouseBusy
from pendo_sync.warehouse.pg_casts import register_casts

log = logging.getLogger("pendo_sync")

# DuckDB's buffer pool for the embedded warehouse. 64 MB against 128 MB: a full sync's peak RSS 362 against
# 430 MiB at 1,000,000 rows, the whole-table diff 3.0 against 2.6 s (its ledger join spills to disk).
DUCKDB_MEMORY_LIMIT = "64MB"
# DuckDB lets one process at a time open a database file; a second gets "Could not set lock on file". Under
# Dagster a run's steps, other runs and the daemon's sensor ticks are processes of their own on the same
# file: each waits its turn, up to this long, then fails naming the process that holds the file.
DUCKDB_LOCK_WAIT_SECONDS = 600.0
# A sensor tick waits less: Dagster fails a tick that takes over 60 s, and the next tick tries again.
SENSOR_DUCKDB_LOCK_WAIT_SECONDS = 20.0
_DUCKDB_HOLDER = re.compile(r"\(PID (\d+)\)")


class WarehouseUrlError(UsageError):
    """A warehouse URL this project cannot use; the message says which form to use instead."""


def normalize_url(url: str, variable: str = WAREHOUSE_URL.name) -> URL:
    """Name the driver explicitly: in SQLAlchemy 2.1 a bare postgresql:// means psycopg 3, which we do not ship.
    `variable` is where the URL came from, for the messages."""
    if _password_runs_on(url):
        raise WarehouseUrlError(
            f"{variable} has an '@' after the one that ends user:password, so part of the password would be "
            "taken for the host; percent-encode the password's reserved characters: '@' as %40 (and '%' as "
            "%25, '/' as %2F, ':' as %3A, '?' as %3F, '#' as %23)"
        )
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL (and password) inside
        raise WarehouseUrlError(
            f"{variable} is not an SQLAlchemy URL; use redshift+psycopg2://user:pass@host:5439/db, "
            "postgresql+psycopg2://user@host:5432/db or duckdb:///path/to/file.duckdb"
        ) from exc.__class__(type(exc).__name__)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    elif parsed.drivername == "redshift":
        parsed = parsed.set(drivername="redshift+psycopg2")
    if parsed.get_backend_name() not in ("postgresql", "redshift", "duckdb"):
        raise WarehouseUrlError(
            f"warehouse backend {parsed.get_backend_name()!r} is not supported; "
            "use redshift+psycopg2://, postgresql+psycopg2:// or duckdb:///"
        )
    return parsed


def _password_runs_on(url: str) -> bool:
    """An '@' after the one that ends user:password. SQLAlchemy ends a password at its first '@' (a user
    name may hold one: Azure's user@server), so the rest of a password holding '@' becomes the host, the
    database or the query, and the driver's errors would show it."""
    user, colon, rest = url.partition("://")[2].partition(":")
    return bool(colon) and "/" not in user and "@" in rest.partition("@")[2]


def make_engine(
    url: str, password: str | None = None, for_sensor: bool = False, variable: str = WAREHOUSE_URL.name
) -> Engine:
    """An engine for the URL, ready for chunked reads. `password` (from a secret store) replaces the URL's
    own, so the URL can stay free of it; either is hidden from every message from now on (`redact`).
    `for_sensor`: a DuckDB file another process holds is waited for SENSOR_DUCKDB_LOCK_WAIT_SECONDS, not
    DUCKDB_LOCK_WAIT_SECONDS. `variable` names where the URL came from in messages."""
    parsed = normalize_url(url, variable)
    if password:
        parsed = parsed.set(password=password)
    register_secret(parsed.password or "")
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise UsageError(
                    f"cannot make the directory {parent} for the DuckDB file {database} (a file is in the "
                    "way); point PENDO_SYNC_HOME, or the duckdb:/// URL, at a directory"
                ) from None
        # DuckDB caches every block it scans, up to 80% of RAM by default: a sync's memory would grow with
        # the table (invariant 3). Cap it; joins past the cap spill to disk. ?memory_limit= overrides, and
        # ?threads= sets DuckDB's worker threads (default: one per core).
        config = {"memory_limit": parsed.query.get("memory_limit", DUCKDB_MEMORY_LIMIT)}
        if "threads" in parsed.query:
            config["threads"] = parsed.query["threads"]
        parsed = parsed.difference_update_query(["memory_limit", "threads"])
        engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool, connect_args={"config": config})
        sa.event.listen(engine, "do_connect", _duckdb_connect_in_turn(for_sensor))
        return engine
    settings = connection_settings(parsed)
    engine = sa.create_engine(settings.url, pool_pre_ping=True, connect_args=settings.connect_args)
    settings.attach(engine)
    return engine


@contextlib.contextmanager
def held_open(engine: Engine) -> Iterator[None]:
    """DuckDB: the file held open for the block (one idle connection, no transaction), so that every other
    connection of the block shares the open database instead of opening the file again: a run opens some
    twenty, at 20 ms each, a third of an incremental run with nothing to send. A no-op elsewhere. A file
    that will not open is not held: the run meets the same error where it connects, and says it in words."""
    with contextlib.ExitStack() as stack:
        if backend_of(engine) == "duckdb":
            with contextlib.suppress(sa.exc.DBAPIError):
                stack.enter_context(engine.connect())
        yield


def _duckdb_connect_in_turn(for_sensor: bool) -> Callable[..., Any]:
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        wait = SENSOR_DUCKDB_LOCK_WAIT_SECONDS if for_sensor else DUCKDB_LOCK_WAIT_SECONDS
        return _duckdb_connect_waiting(wait, dialect, cargs, cparams)

    return connect


def _duckdb_connect_waiting(wait: float, dialect: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    """Open the DuckDB file, waiting (with backoff) while another process has it open."""
    deadline = time.monotonic() + wait
    delay, waited = 0.05, False
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if "Could not set lock on file" not in str(exc):
                raise
            found = _DUCKDB_HOLDER.search(str(exc))
            holder = f"another process (PID {found.group(1)})" if found else "another process"
            path = cargs[0] if cargs else cparams.get("database", "")
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"the DuckDB file {path} stayed open in {holder} for {wait:g} s, and "
                    "DuckDB lets one process at a time open a file; let that process finish (another run, a "
                    "sensor tick) or stop it, or put the warehouse on PostgreSQL to run syncs at once"
                ) from None
            if not waited:
                log.info(
                    "waiting for the DuckDB file %s: %s has it open, and DuckDB lets one process at a time "
                    "open a file",
                    path,
                    holder,
                )
                waited = True
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


# A runaway statement (a diff on a cluster short of memory, a lock wait) ends after an hour instead of
# holding a WLM slot until the run's own limit; raise it with ?statement_timeout=<ms> for huge first loads.
DEFAULT_STATEMENT_TIMEOUT_MS = 3_600_000
APPLICATION_NAME = "pendo_sync"  # shows in pg_stat_activity and Redshift's connection log
_QUERY_GROUP = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# pendo_sync's own URL query keys: read here and removed, since the driver would refuse them.
_OWN_KEYS = ("statement_timeout", "query_group", "iam", "cluster_identifier", "region")


@dataclass
class ConnectionSettings:
    """How pendo_sync connects to PostgreSQL or Redshift: the URL the driver gets, its extra arguments, the
    statements run on each new session, and where temporary IAM credentials come from (Redshift)."""

    url: URL
    connect_args: dict[str, Any]
    session_sql: list[str]
    iam: RedshiftIam | None = None

    def attach(self, engine: Engine) -> None:
        """Hook the driver's casts, the session statements (and the IAM credentials) into every new
        connection of the engine."""
        if engine.dialect.driver == "psycopg2":  # the driver whose casts pg_casts.py knows
            sa.event.listen(
                engine, "connect", lambda dbapi_connection, _record: register_casts(dbapi_connection)
            )
        if self.session_sql:

            @sa.event.listens_for(engine, "connect")
            def _set_session(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    for statement in self.session_sql:
                        cursor.execute(statement)
                finally:
                    cursor.close()
                dbapi_connection.commit()  # SET inside the driver's implicit transaction must outlive it

        if self.iam is not None:
            iam = self.iam

            @sa.event.listens_for(engine, "do_connect")
            def _iam_login(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
                cparams["user"], cparams["password"] = iam.credentials()


@dataclass(frozen=True)
class RedshiftIam:
    """Temporary Redshift credentials from the IAM role (redshift:GetClusterCredentials), fetched for each
    new connection: no database password to store or rotate."""

    cluster_identifier: str
    db_user: str
    db_name: str
    region: str = ""
    duration_seconds: int = 3600

    def credentials(self) -> tuple[str, str]:
        import boto3  # here, not at the top: only IAM login needs it, and the CLI starts faster without
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = boto3.client("redshift", region_name=self.region or None).get_cluster_credentials(
                DbUser=self.db_user,
                DbName=self.db_name,
                ClusterIdentifier=self.cluster_identifier,
                DurationSeconds=self.duration_seconds,
                AutoCreate=False,
            )
        except (BotoCoreError, ClientError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            raise WarehouseUrlError(
                f"cannot get temporary Redshift credentials for user {self.db_user!r} on cluster "
                f"{self.cluster_identifier!r} ({code}); allow the task role redshift:GetClusterCredentials on "
                f"dbuser:{self.cluster_identifier}/{self.db_user} and dbname:{self.cluster_identifier}/{self.db_name}, "
                "or drop ?iam=true and give the password instead"
            ) from None
        return str(answer["DbUser"]), str(answer["DbPassword"])


def connection_settings(url: URL) -> ConnectionSettings:
    """Settings for a PostgreSQL or Redshift URL. On Redshift: TLS verified against Amazon's CA (the dialect's
    default, `sslmode=verify-full`; a URL's own ?sslmode= wins), a query group, optional IAM login.
    Everywhere: application_name and a statement timeout (URL ?statement_timeout=<ms>, 0 turns it off)."""
    query = dict(url.query)
    own = {key: str(query.pop(key)) for key in _OWN_KEYS if key in query}
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if "application_name" not in query:
        connect_args["application_name"] = APPLICATION_NAME
    timeout = own.get("statement_timeout", str(DEFAULT_STATEMENT_TIMEOUT_MS))
    if not timeout.isdigit():
        raise WarehouseUrlError(
            f"statement_timeout={timeout!r} in the warehouse URL is not a whole number of milliseconds; "
            "use e.g. ?statement_timeout=3600000 (0 turns the timeout off)"
        )
    session_sql = [f"SET statement_timeout TO {int(timeout)}"]
    iam = None
    if backend == "redshift":
        group = own.get("query_group", APPLICATION_NAME)
        if not _QUERY_GROUP.fullmatch(group):
            raise WarehouseUrlError(
                f"query_group={group!r} in the warehouse URL: use up to 64 letters, digits and _ . : -"
            )
        session_sql.append(f"SET query_group TO '{group}'")
        if own.get("iam", "").lower() in ("true", "1", "yes"):
            iam = _redshift_iam(url, own)
    else:
        if set(own) - {"statement_timeout"}:
            raise WarehouseUrlError(
                f"{', '.join(sorted(set(own) - {'statement_timeout'}))} in the warehouse URL only apply to "
                "Redshift (redshift+psycopg2://); remove them"
            )
        # Every cursor pendo_sync opens is read to its end; PostgreSQL plans a cursor for its first 10% of
        # rows, which for the change set's joins means a slow nested loop (6.0 s against 0.8 s for the
        # deleted-ids anti join over a million rows). Redshift has no such setting.
        session_sql.append("SET cursor_tuple_fraction TO 1.0")
    return ConnectionSettings(url.set(query=query), connect_args, session_sql, iam)


def _redshift_iam(url: URL, own: dict[str, str]) -> RedshiftIam:
    # A provisioned cluster's endpoint is <cluster>.<id>.<region>.redshift.amazonaws.com.
    labels = (url.host or "").split(".")
    on_aws = (url.host or "").endswith(".redshift.amazonaws.com") and len(labels) >= 6
    cluster = own.get("cluster_identifier") or (labels[0] if on_aws else "")
    if not cluster or not url.username or not url.database:
        raise WarehouseUrlError(
            "iam=true needs the database user and name in the URL and the cluster: "
            "redshift+psycopg2://<db user>@<cluster endpoint>:5439/<database>?iam=true"
            "[&cluster_identifier=<cluster>&region=<region>] (Redshift Serverless: use a password secret)"
        )
    return RedshiftIam(
        cluster, url.username, url.database, own.get("region") or (labels[2] if on_aws else "")
    )


def backend_of(engine: Engine) -> str:
    """'redshift', 'postgresql' or 'duckdb'."""
    return engine.url.get_backend_name()


def redacted(url: str | URL) -> str:
    """The URL with its password hidden, for logs and messages (invariant 6)."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)
