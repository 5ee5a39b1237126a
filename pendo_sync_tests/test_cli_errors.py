"""Every failure reaches a person as one line naming the sync, the place and the fix, with a documented exit
code: never a traceback. `run` makes the same preflight as `check` before it sends anything."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pendo_sync.pendo.client import EMULATOR_URL
from pendo_sync.pendo.emulator import Fault
from pendo_sync_tests.world import World, write_config


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def only_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_pendo_unreachable_is_one_line_naming_the_url_and_the_fix(cli, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("PENDO_BASE_URL", f"http://127.0.0.1:{port}")
    code, _, err = cli("check")
    assert code == 4
    assert only_line(err) == (
        f"pendo-sync: sync 'accounts': cannot reach Pendo at http://127.0.0.1:{port} (connection refused); check "
        "PENDO_BASE_URL (a region: us, us1, eu, jpn, au; or a URL) and that this machine can reach it"
    )
    code, _, err = cli("run", "accounts")
    assert code == 4
    assert only_line(err).startswith(
        f"pendo-sync: sync 'accounts': cannot reach Pendo at http://127.0.0.1:{port} "
    )


def test_the_default_pendo_url_says_how_to_start_the_emulator(cli, monkeypatch):
    monkeypatch.delenv("PENDO_BASE_URL")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8765)) == 0:
            pytest.skip("something listens on 127.0.0.1:8765 (make dev?)")
    code, _, err = cli("check")
    assert code == 4
    assert only_line(err) == (
        f"pendo-sync: sync 'accounts': cannot reach Pendo at {EMULATOR_URL} (connection refused): that is the local Pendo "
        "emulator, which is not running; start it with `pendo-sync emulator` (or `make dev`), or set "
        "PENDO_BASE_URL to your Pendo region"
    )


def test_run_preflights_a_missing_table_a_missing_column_and_a_field_of_another_type(
    cli, duckdb_world: World, tmp_path: Path
):
    def table(raw):
        raw["syncs"]["accounts"]["table"] = "no_such_table"

    code, _, err = cli("--config", str(write_config(tmp_path, table)), "run", "accounts")
    assert code == 1
    assert only_line(err) == (
        "pendo-sync: sync 'accounts': table 'no_such_table' does not exist in the warehouse; check 'table' "
        "(schema.table) or run pendo-sync discover to list tables"
    )
    duckdb_world.sql("ALTER TABLE accounts DROP COLUMN health_score")
    code, _, err = cli("run", "accounts")
    assert code == 1
    assert only_line(err).startswith(
        "pendo-sync: sync 'accounts': column 'health_score' is not in accounts; fix the key under 'fields'"
    )
    duckdb_world.sql("ALTER TABLE accounts ADD COLUMN health_score DOUBLE")
    duckdb_world.emulator.add_field("account", "custom", "seats", "string")
    code, _, err = cli("run", "accounts")
    assert code == 1
    assert only_line(err) == (
        "pendo-sync: sync 'accounts', column 'seats': Pendo field 'seats' has type 'string' but the mapping "
        "says 'integer'; set type: string in the config or change the field in Pendo"
    )
    assert duckdb_world.emulator.stats()["write_calls"] == 0  # nothing sent


def query_config(tmp_path: Path, query: str) -> Path:
    def by_query(raw):
        accounts = raw["syncs"].pop("accounts")
        accounts.pop("table")
        raw["syncs"] = {"by_query": {**accounts, "query": query}}

    return write_config(tmp_path, by_query)


def test_a_query_source_the_warehouse_refuses_is_one_line(cli, duckdb_world: World, tmp_path: Path):
    unknown = query_config(tmp_path, "SELECT account_id, nosuch FROM accounts")
    code, _, err = cli("--config", str(unknown), "run", "by_query")
    assert code == 1
    line = only_line(err)
    assert line.startswith("pendo-sync: sync 'by_query': the warehouse refused the source query: ")
    assert '"nosuch"' in line and line.endswith("; fix 'query' in the config")

    columns = "account_id, CAST(plan AS INTEGER) AS plan, seats, arr, health_score, is_paying, renewal_date, updated_at"
    failing = query_config(tmp_path, f"SELECT {columns} FROM accounts")
    code, _, err = cli("--config", str(failing), "run", "by_query")
    assert code == 4
    line = only_line(err)
    assert re.fullmatch(
        r"pendo-sync: sync 'by_query': the warehouse refused the source query: Conversion Error: .*; "
        r"fix 'query' in the config",
        line,
    ), line
    (version,) = duckdb_world.store.versions.all("by_query")
    assert version.status == "failed" and "Conversion Error" in version.note


def start_run(world: World, config: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PENDO_BASE_URL=world.server.base_url, PENDO_INTEGRATION_KEY="emulator-key")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pendo_sync.cli",
            "--config",
            str(config),
            "--warehouse-url",
            world.url,
            "run",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
def test_a_warehouse_connection_killed_mid_read_is_one_line(pg_world: World, tmp_path: Path):
    world = pg_world
    world.emulator.settings.fixed_latency_s = 0.05
    config = write_config(tmp_path, concurrency=1, batch_records=20, max_batch_records=20, chunk_rows=50)
    run = start_run(world, config, "visitors", "--mode", "full")
    deadline = time.monotonic() + 60
    while world.emulator.stats()["records_received"] < 100:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with world.engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'FETCH%' AND pid <> pg_backend_pid()"
            )
        ).all()
    assert killed, "no reading connection found"
    _, err = run.communicate(timeout=60)
    assert run.returncode == 4, err
    assert re.fullmatch(
        r"pendo-sync: sync 'visitors': the warehouse connection failed while reading the change set "
        r"\(.*\); check that the database is up and reachable, then run again: nothing unconfirmed was "
        r"recorded",
        only_line(err),
    ), err
    (version,) = world.store.versions.all("visitors")
    assert version.status == "failed"


def test_a_fatal_answer_is_one_line_without_task_noise(duckdb_world: World, tmp_path: Path):
    world = duckdb_world
    world.emulator.settings.fixed_latency_s = 0.05
    world.emulator.inject_faults([Fault("status", status=400, count=100)])
    config = write_config(tmp_path, concurrency=4, batch_records=10, max_batch_records=10)
    run = start_run(world, config, "accounts")
    _, err = run.communicate(timeout=60)
    assert run.returncode == 4
    assert only_line(err) == (
        "pendo-sync: sync 'accounts': Pendo refused the account custom write (HTTP 400: injected fault: HTTP "
        "400); check that every mapped field exists in Pendo under account / custom (pendo-sync check)"
    )


@pytest.fixture
def not_pendo() -> Iterator[str]:
    """A web server that is not Pendo: 404 and a page of HTML for everything."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(404)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>Not Found</html>")

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_that_is_not_pendo_is_one_line_and_verify_blames_no_id(
    cli, duckdb_world: World, not_pendo, monkeypatch
):
    """It was an internal error (JSONDecodeError) for check and run, and verify said every id was missing
    from Pendo (and --repair marked them all drifted)."""
    assert duckdb_world.run("accounts").status == "complete"
    monkeypatch.setenv("PENDO_BASE_URL", not_pendo)
    expected = (
        f"{not_pendo} answered HTTP 404 on reading the account field schema: it does not serve Pendo's "
        "Integration API; check PENDO_BASE_URL (a region: us, us1, eu, jpn, au; or the URL of Pendo or of the "
        "emulator)"
    )
    for argv in (["check"], ["run", "accounts"], ["verify", "accounts", "--repair"]):
        code, _, err = cli(*argv)
        assert code == 4, (argv, err)
        assert only_line(err).endswith(expected), (argv, err)
    assert duckdb_world.sql("SELECT count(*) FROM pendo_sync.rejects WHERE kind = 'drift'") == [(0,)]


def test_an_unreachable_state_database_and_a_negative_count_are_one_line(cli, monkeypatch):
    """Every command but check and run showed an unreachable database as an internal error, and a negative
    --limit or --sample reached the SQL (LIMIT must not be negative) as one."""
    port = closed_port()
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nowhere"
    for argv in (["state", "list", "accounts"], ["rejects", "accounts"], ["verify", "accounts"]):
        code, _, err = cli("--warehouse-url", url, *argv)
        assert code == 4, (argv, err)
        line = only_line(err)
        assert line.startswith(f"pendo-sync: {argv[0]}: the database could not be reached or refused: "), line
        assert line.endswith(
            "; check the warehouse URL (--warehouse-url, PENDO_SYNC_WAREHOUSE_URL) or PENDO_SYNC_STATE_URL, "
            "that the database is up and that the user may read it and write the state schema"
        ), line
    for argv in (["rejects", "accounts", "--limit", "-1"], ["verify", "accounts", "--sample", "-5"]):
        with pytest.raises(SystemExit) as exited:
            cli(*argv)
        assert exited.value.code == 2


def test_a_file_that_is_not_duckdb_is_named_by_the_sync_that_read_it(cli, tmp_path: Path):
    """A run holds its DuckDB file open from its start (engines.held_open); a file that will not open is
    reported where the run reads it, naming the sync and DuckDB's own words, not as the CLI's catch-all."""
    notes = tmp_path / "notes.duckdb"
    notes.write_text("these are notes, not a database\n" * 200)
    code, _, err = cli("--warehouse-url", f"duckdb:///{notes}", "run", "accounts")
    assert code == 4
    assert only_line(err) == (
        "pendo-sync: sync 'accounts': the warehouse connection failed while reading the source's columns (IO "
        f'Error: The file "{notes}" exists, but it is not a valid DuckDB database file!); check that the '
        "database is up and reachable, then run again: nothing unconfirmed was recorded"
    )
    assert notes.read_text().startswith("these are notes")


def test_a_pendo_that_never_answers_a_read_is_named_within_the_read_timeout(cli, monkeypatch):
    """check read the field schema with the write calls' timeout (300 s): five silent minutes."""
    import pendo_sync.pendo.client as client_module

    monkeypatch.setattr(client_module, "READ_TIMEOUT_SECONDS", 1.0)
    with socket.socket() as silent:  # accepts (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("PENDO_BASE_URL", url)
        started = time.monotonic()
        code, _, err = cli("check")
        waited = time.monotonic() - started
    assert code == 4
    assert only_line(err).startswith(
        f"pendo-sync: sync 'accounts': cannot reach Pendo at {url} (timed out); "
    )
    assert waited < 60, waited


def test_the_emulator_names_a_port_in_use_and_a_bad_seed(cli, tmp_path: Path):
    """A port in use printed the emulator's banner, then an internal error (OSError); a seed file that is
    missing, not JSON or names an unknown type was an internal error or accepted."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        code, _, err = cli("emulator", "--port", str(port))
    assert code == 2
    assert only_line(err).startswith(f"pendo-sync: cannot serve the emulator on 127.0.0.1:{port}: ")
    assert err.strip().endswith("; pick another --port, or stop what listens there")
    seed = tmp_path / "seed.json"
    cases = {
        "": f"--seed {seed}: not JSON (Expecting value: line 1 column 1 (char 0))",
        "[]": f"--seed {seed}: must be a JSON object with 'fields' and 'ids'",
        '{"fields": {"visitor": {"custom": {"plan": "nosuchtype"}}}}': (
            f"--seed {seed}: visitor custom field 'plan' has type 'nosuchtype'; use one of string, boolean, "
            "integer, float, time, list"
        ),
    }
    for text, message in cases.items():
        seed.write_text(text)
        code, _, err = cli("emulator", "--port", "0", "--seed", str(seed))
        assert (code, only_line(err)) == (2, f"pendo-sync: {message}")
    code, _, err = cli("emulator", "--port", "0", "--seed", str(tmp_path / "none.json"))
    assert (code, only_line(err)) == (2, f"pendo-sync: --seed {tmp_path / 'none.json'}: no such file")


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_a_port_that_is_not_one_is_a_usage_error(cli, port, capsys):
    with pytest.raises(SystemExit) as exited:
        cli("emulator", "--port", port)
    assert exited.value.code == 2


@pytest.mark.parametrize("padding", [("", "\n"), ("", " "), ("\t", "\r\n"), (" ", "")])
def test_an_integration_key_read_with_surrounding_whitespace_is_used_without_it(
    cli, duckdb_world: World, monkeypatch, padding
):
    """A key read from a file or a secret store often ends in a newline: httpx refused the header, and the
    message showed the key in full and blamed PENDO_BASE_URL."""
    before, after = padding
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", f"{before}emulator-key{after}")
    for argv in (["check"], ["run", "accounts"], ["verify", "accounts"]):
        code, _, err = cli(*argv)
        assert code == 0, (argv, err)
    assert duckdb_world.emulator.stats()["records_updated"] > 0


CONTROL = "a control character (a line break, a tab)"
NON_ASCII = "a character outside ASCII (a typographic dash or quote)"


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("Zq7-secret-part\r\nX-Other: Wv9-tail", CONTROL),
        ("Zq7-secret-part\tWv9-tail", CONTROL),
        ("Zq7-secret-part\x7fWv9-tail", CONTROL),
        ("Zq7-secret-part–Wv9-tail", NON_ASCII),
        ("Zq7-secret-partéWv9-tail", NON_ASCII),
    ],
)
def test_an_integration_key_a_header_cannot_carry_is_refused_before_any_call_without_showing_it(
    cli, duckdb_world: World, monkeypatch, key, what
):
    """It was sent as it was: httpx's refusal printed the key and blamed PENDO_BASE_URL, or, for a character
    outside ASCII, an internal error printed part of it."""
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", key)
    for argv in (["check"], ["run", "accounts"], ["verify", "accounts"]):
        code, _, err = cli(*argv)
        assert (code, only_line(err)) == (
            2,
            f"pendo-sync: PENDO_INTEGRATION_KEY holds {what}, which an HTTP header cannot carry; set it "
            "to the key alone, as Pendo shows it (Settings > Integrations > Integration Keys)",
        ), argv
        assert not {"Zq7", "secret-part", "Wv9", "X-Other"} & set(re.findall(r"[\w-]+", err)), err
    assert duckdb_world.emulator.stats()["statuses"] == {}


def url_message(variable: str) -> str:
    return (
        f"pendo-sync: {variable} has an '@' after the one that ends user:password, so part of the password "
        "would be taken for the host; percent-encode the password's reserved characters: '@' as %40 (and '%' "
        "as %25, '/' as %2F, ':' as %3A, '?' as %3F, '#' as %23)"
    )


@pytest.mark.parametrize("variable", ["PENDO_SYNC_WAREHOUSE_URL", "PENDO_SYNC_STATE_URL"])
@pytest.mark.parametrize("after", ["Zq7secret", "Zq7secret/Wv9", "Zq7secret?Wv9", "Zq7secret:Wv9", "Zq7#Wv9"])
def test_a_url_password_holding_an_unencoded_at_is_refused_before_connecting_without_showing_it(
    duckdb_world: World, monkeypatch, capsys, variable, after
):
    """SQLAlchemy ends the password at its first '@': the driver was given the rest as the host (or the
    database) and its error showed it: could not translate host name "Zq7secret@127.0.0.1"."""
    from pendo_sync.cli import main

    url = f"postgresql+psycopg2://postgres:p@ss{after}@127.0.0.1:{closed_port()}/nowhere"
    monkeypatch.setenv("PENDO_BASE_URL", duckdb_world.server.base_url)
    monkeypatch.delenv("PENDO_SYNC_CONFIG", raising=False)
    monkeypatch.setenv("PENDO_SYNC_WAREHOUSE_URL", duckdb_world.url)
    monkeypatch.setenv(variable, url)
    for argv in (["check"], ["run", "accounts"], ["state", "list", "accounts"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert (code, only_line(err)) == (2, url_message(variable)), argv
        assert "Zq7" not in err and "Wv9" not in err and "ss" not in err.replace("password", "")


def test_a_user_name_holding_an_at_is_still_read_as_one(cli, monkeypatch):
    """Azure's PostgreSQL names its users user@server: SQLAlchemy reads that, before the ':', as the user."""
    port = closed_port()
    monkeypatch.setenv("PENDO_SYNC_STATE_URL", f"postgresql+psycopg2://me@server:pw@127.0.0.1:{port}/nowhere")
    code, _, err = cli("state", "list", "accounts")
    assert code == 4
    assert only_line(err).startswith("pendo-sync: state: the database could not be reached or refused: ")


def test_a_state_url_that_is_not_one_names_the_state_variable(cli, monkeypatch):
    monkeypatch.setenv("PENDO_SYNC_STATE_URL", "not a url")
    code, _, err = cli("state", "list", "accounts")
    assert (code, only_line(err)) == (
        2,
        "pendo-sync: PENDO_SYNC_STATE_URL is not an SQLAlchemy URL; use redshift+psycopg2://user:pass@host:5439/db, "
        "postgresql+psycopg2://user@host:5432/db or duckdb:///path/to/file.duckdb",
    )


@pytest.mark.postgres
def test_a_password_the_database_echoes_is_hidden(cli, pg_admin, monkeypatch):
    """The driver's own words can hold what the URL holds (a host, a database name, a user): the password,
    wherever it appears in them, is shown as ***."""
    monkeypatch.setenv(
        "PENDO_SYNC_STATE_URL", "postgresql+psycopg2://postgres:Zq7-same-as-db@127.0.0.1:5432/Zq7-same-as-db"
    )
    code, _, err = cli("state", "list", "accounts")
    assert code == 4
    assert 'database "***" does not exist' in only_line(err)
    assert "Zq7" not in err


def test_an_internal_error_never_shows_a_secret(cli, monkeypatch):
    def fails(_args: object) -> int:
        raise RuntimeError(f"unexpected, with {os.environ['PENDO_INTEGRATION_KEY']} inside")

    monkeypatch.setenv("PENDO_INTEGRATION_KEY", "Zq7-the-real-key")
    monkeypatch.setattr("pendo_sync.cli.cmd_check", fails)
    code, _, err = cli("check")
    assert (code, only_line(err)) == (
        70,
        "pendo-sync: internal error: RuntimeError: unexpected, with *** inside; this is a bug in pendo_sync: "
        "rerun with PENDO_SYNC_TRACEBACK=1 to see where, and report it",
    )


def test_delivery_settings_out_of_bounds_are_config_problems(cli, tmp_path: Path):
    """chunk_rows: 0 was an internal error (range() arg 3 must not be zero) and concurrency: 0 made a run
    wait forever."""
    config = write_config(tmp_path, chunk_rows=0, max_batch_records=0)
    code, _, err = cli("--config", str(config), "run", "accounts")
    assert (code, err.splitlines()) == (
        2,
        [
            f"pendo-sync: the config has 2 problems in {config}:",
            "error: delivery.chunk_rows: 0 is not a whole number from 1 to 1,000,000",
            "error: delivery.max_batch_records: 0 is not a whole number from 1 to 100,000",
        ],
    )


def test_a_short_password_is_not_starred_inside_ordinary_words():
    """A password of one letter was starred wherever the letter stood ("***ync 'account***'"), garbling
    every message and telling the password (found by a review); it is still hidden in a URL."""
    from pendo_sync.secrets import redact, register_secret

    register_secret("s")
    assert redact("sync 'accounts': status") == "sync 'accounts': status"
    assert (
        redact("postgresql+psycopg2://postgres:s@db:5432/x") == "postgresql+psycopg2://postgres:***@db:5432/x"
    )
