"""`pendo-sync` commands against a real warehouse and the emulator: discover, check, run, state."""

import json
from pathlib import Path

import yaml

from pendo_sync.config import DEMO_CONFIG
from pendo_sync_tests.world import ACCOUNTS, World


def test_discover_prints_a_singer_catalog(cli):
    code, out, _ = cli("discover")
    assert code == 0
    streams = {s["tap_stream_id"].rpartition("-")[2]: s for s in json.loads(out)["streams"]}
    accounts = streams["accounts"]
    assert accounts["schema"]["properties"]["seats"]["type"] == ["null", "integer"]
    root = next(m for m in accounts["metadata"] if m["breadcrumb"] == [])
    assert root["metadata"]["table-key-properties"] == ["account_id"]
    assert "updated_at" in root["metadata"]["valid-replication-keys"]


def test_check_prints_a_plan_or_every_problem(cli, duckdb_world: World, tmp_path: Path):
    newest = duckdb_world.sql("SELECT max(updated_at) FROM accounts")[0][0]
    code, out, err = cli("check")
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"accounts: OK; an incremental run would send {ACCOUNTS:,} records (replication key up to "
        f"{newest} (first run)) to Pendo account custom fields plan, seats, annual_revenue, "
        "health_score, is_paying, renewal_date"
    )
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["syncs"]["accounts"]["fields"]["segment"] = {"type": "string"}
    raw["syncs"]["accounts"]["fields"]["seats"] = {"type": "string"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    code, out, err = cli("--config", str(broken), "check", "accounts")
    assert code == 1
    assert err.splitlines() == [  # every problem in one round: the warehouse's and Pendo's
        "error: sync 'accounts': column 'segment' is not in accounts; fix the key under 'fields' (columns are: "
        "account_id, arr, created_at, health_score, is_paying, name, plan, renewal_date, seats, updated_at)",
        "error: sync 'accounts', column 'seats': Pendo field 'seats' has type 'integer' but the mapping says "
        "'string'; set type: integer in the config or change the field in Pendo",
    ]
    duckdb_world.sql("ALTER TABLE accounts ADD COLUMN segment VARCHAR")
    code, out, err = cli("--config", str(broken), "check", "accounts")
    assert code == 1
    assert err.splitlines() == [
        "error: sync 'accounts', column 'seats': Pendo field 'seats' has type 'integer' but the mapping says "
        "'string'; set type: integer in the config or change the field in Pendo",
        "error: sync 'accounts', column 'segment': Pendo account custom field 'segment' does not exist; create "
        "it in Pendo (Settings > Data Mappings) or map the column to an existing field",
    ]
    assert duckdb_world.emulator.stats()["write_calls"] == 0  # check never writes


def test_run_and_state_commands(cli, duckdb_world: World):
    code, out, _ = cli("run", "accounts", "--mode", "full", "--json")
    assert code == 0
    first = json.loads(out.splitlines()[-1])
    assert (first["status"], first["version"], first["counts"]["rows_read"]) == ("complete", 1, ACCOUNTS)
    duckdb_world.sql("UPDATE accounts SET plan = 'pro' WHERE plan <> 'pro'")
    code, out, _ = cli("run", "accounts", "--mode", "full", "--json")
    assert json.loads(out.splitlines()[-1])["version"] == 2

    code, out, _ = cli("state", "list", "accounts")
    lines = out.splitlines()
    assert len(lines) == 2 and " full        complete " in lines[0]
    code, out, _ = cli("state", "show", "accounts", "1")
    shown = json.loads(out)
    assert shown["version"] == 1 and shown["outstanding_rejects"] == ACCOUNTS // 50

    changed_after_1 = duckdb_world.store.versions.revert_plan("accounts", 1)
    assert changed_after_1 > 0
    code, out, _ = cli("state", "revert", "accounts", "--to", "1")
    assert code == 1 and out.splitlines()[-1] == "Nothing changed. Pass --yes to revert without asking."
    code, out, _ = cli("state", "revert", "accounts", "--to", "1", "--yes")
    assert code == 0
    assert out.splitlines()[0] == (
        f"Reverting accounts to version 1 forgets {changed_after_1:,} confirmed rows; the next run resends "
        "them (and anything changed since)."
    )
    code, _, err = cli("state", "show", "accounts", "9")
    assert (code, err.strip()) == (2, "pendo-sync: sync 'accounts' has no state version 9")


def test_import_singer_state_starts_from_the_bookmark(cli, duckdb_world: World, tmp_path: Path):
    state_file = tmp_path / "state.json"
    state_file.write_text(
        json.dumps(
            {
                "currently_syncing": None,
                "bookmarks": {
                    "analytics.public.visitors": {
                        "replication_key": "updated_at",
                        "replication_key_value": "2026-10-29T00:00:00.000Z",
                        "version": 1516304171710,
                    }
                },
            }
        )
    )
    code, out, err = cli("state", "import-singer", "visitors", str(state_file))
    assert code == 0, err
    assert out.startswith("Imported: state version 1;")
    duckdb_world.emulator.reset_stats()
    code, out, _ = cli("run", "visitors", "--json", "--accept-rejects")
    past_bookmark = duckdb_world.sql(
        "SELECT count(*) FROM visitors WHERE updated_at > '2026-10-29 00:00:00' AND (nps IS NULL OR nps <> 'n/a')"
    )[0][0]
    sent = json.loads(out.splitlines()[-1])["counts"]["sent"]
    # Rows up to the bookmark were marked as in Pendo (hashed as runs hash them), so even the run's
    # look-back window resends nothing from before it: exactly the rows past the bookmark go.
    assert 0 < sent == past_bookmark


def test_bad_config_is_refused_with_the_place_and_the_fix(cli, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("syncs:\n  accounts:\n    kind: acount\n    table: accounts\n    id_column: account_id\n")
    code, _, err = cli("--config", str(bad), "check")
    assert code == 2
    assert err.splitlines() == [
        "error: sync 'accounts': kind 'acount' is not one of visitor, account; set kind: visitor or kind: account",
        "error: sync 'accounts': 'fields' must map each source column to {field: <pendo field>, type: <type>}",
    ]
    code, _, err = cli("--config", str(bad), "run", "accounts")  # every command says it alike
    assert code == 2
    assert err.splitlines() == [
        f"pendo-sync: the config has 2 problems in {bad}:",
        "error: sync 'accounts': kind 'acount' is not one of visitor, account; set kind: visitor or kind: account",
        "error: sync 'accounts': 'fields' must map each source column to {field: <pendo field>, type: <type>}",
    ]


def test_a_config_with_one_problem_of_each_kind_gets_all_of_them_in_one_round(
    cli, duckdb_world: World, tmp_path: Path
):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    fields = raw["syncs"]["accounts"]["fields"]
    fields["seats"] = {"type": "int"}  # the config's own problem
    fields["seatz"] = {"type": "integer"}  # the warehouse's: no such column
    duckdb_world.emulator.remove_field("account", "custom", "plan")  # Pendo's: no such field
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    code, _, err = cli("--config", str(broken), "check", "accounts")
    assert code == 2
    assert err.splitlines() == [
        "error: sync 'accounts', column 'seats': unknown Pendo type 'int'; use one of string, boolean, integer, "
        "float, time, list",
        "error: sync 'accounts': column 'seatz' is not in accounts; fix the key under 'fields' (columns are: "
        "account_id, arr, created_at, health_score, is_paying, name, plan, renewal_date, seats, updated_at)",
        "error: sync 'accounts', column 'plan': Pendo account custom field 'plan' does not exist; create it in "
        "Pendo (Settings > Data Mappings) or map the column to an existing field",
    ]


def test_check_says_how_many_ids_are_duplicated(cli, duckdb_world: World, tmp_path: Path):
    duckdb_world.sql("CREATE TABLE accounts_copy AS SELECT * FROM accounts")
    duckdb_world.sql("INSERT INTO accounts_copy SELECT * FROM accounts ORDER BY account_id LIMIT 2")
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["syncs"]["accounts"]["table"] = "accounts_copy"
    config = tmp_path / "copy.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, out, err = cli("--config", str(config), "check", "accounts")
    assert code == 0, err
    assert out.splitlines()[0].endswith(
        "; 2 ids are carried by more than one row and will be rejected until one row carries each (make "
        "account_id unique)"
    )


def test_dev_points_dagster_at_the_emulator_on_the_port_it_was_given(tmp_path, monkeypatch):
    # `pendo-sync dev --port N` starts the emulator on N; Dagster's resources must call it there.
    import socket
    import subprocess

    from pendo_sync.demo import run as demo_run

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PENDO_SYNC_HOME", str(tmp_path))
    monkeypatch.delenv("PENDO_BASE_URL", raising=False)
    monkeypatch.delenv("PENDO_SYNC_WAREHOUSE_URL", raising=False)
    launched: list[dict[str, str]] = []
    monkeypatch.setattr(subprocess, "call", lambda argv, cwd, env: launched.append(env) or 0)
    assert demo_run.run_dev(port) == 0
    assert launched[0]["PENDO_BASE_URL"] == f"http://127.0.0.1:{port}"


def test_check_does_not_call_a_sync_with_config_problems_ok(cli, duckdb_world: World, tmp_path: Path):
    """It printed `accounts: OK; ...` above `error: sync 'accounts': ...`."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["syncs"]["accounts"]["fields"]["seats"] = None  # a field left empty
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    code, out, err = cli("--config", str(broken), "check")
    assert code == 2, err
    lines = {line.split(":", 1)[0]: line for line in out.splitlines()}
    assert lines["visitors"].startswith("visitors: OK; ")
    assert lines["accounts"].startswith(
        "accounts: 1 config problem (below); with it fixed, an incremental run would send "
    ), out
    assert any(line.startswith("error: sync 'accounts'") for line in err.splitlines()), err
