"""examples/sync_from_secrets_manager.py, run as users run it, against an Airflow-shaped SQLite DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "sync_from_secrets_manager.py"
DUMP = EXAMPLES / "secrets_manager_dump.json"
SAMPLE_SECRETS = (
    "example-warehouse-password",
    "example-slack-token",
    "AKIAEXAMPLEEXAMPLE",
    "example-aws-secret-access-key",
)


def run_example(
    db: AirflowDb, work: Path, *args: str, source: Path = DUMP
) -> subprocess.CompletedProcess[str]:
    """Run the example in a subprocess with no Airflow or dconn settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DCONN_")) and k != "NO_COLOR"}
    env["AIRFLOW_HOME"] = str(work / "airflow-home")
    command = [sys.executable, str(SCRIPT), str(source), "--db-url", db.url, f"--fernet-key={db.fernet_key}"]
    return subprocess.run(
        [*command, "--state", str(work / ".dconn" / "state.json"), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@pytest.fixture
def legacy_db(make_db: Any) -> AirflowDb:
    """Return a table left with duplicate conn_ids (as a stopped 2.0 upgrade leaves it)."""
    db: AirflowDb = make_db("sqlite", "2.x-nounique")
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "warehouse", "conn_type": "postgres", "host": "old.internal"},
            {"conn_id": "warehouse", "conn_type": "postgres", "host": "older.internal"},
            {"conn_id": "unrelated", "conn_type": "http", "host": "example.com"},
        ],
    )
    return db


def test_sync_applies_the_dump_in_one_run(legacy_db: AirflowDb, tmp_path: Path) -> None:
    """With --yes the plan is printed masked, then creates, updates and dedupes; a rerun changes nothing."""
    done = run_example(legacy_db, tmp_path, "--yes")
    assert done.returncode == 0, done.stderr
    assert "Plan: 2 to add, 1 to change, 1 to destroy (1 duplicate row)." in done.stdout
    assert "  + password  = (sensitive value)" in done.stdout
    assert done.stderr.endswith("Applied in one transaction: 4 rows written or deleted.\n")
    for secret in SAMPLE_SECRETS:
        assert secret not in done.stdout + done.stderr
    rows = {r["conn_id"]: r for r in legacy_db.rows()}
    assert sorted(rows) == ["aws_default", "slack_alerts", "unrelated", "warehouse"]
    fernet = Fernet(legacy_db.fernet_key.encode())
    warehouse = rows["warehouse"]
    assert (warehouse["id"], warehouse["host"], warehouse["port"]) == (1, "wh.internal", 5432)
    assert fernet.decrypt(warehouse["password"].encode()).decode() == "example-warehouse-password"
    assert json.loads(fernet.decrypt(warehouse["extra"].encode())) == {"sslmode": "require"}
    slack_password = fernet.decrypt(rows["slack_alerts"]["password"].encode()).decode()
    assert slack_password == "example-slack-token"
    again = run_example(legacy_db, tmp_path, "--yes")
    assert again.returncode == 0, again.stderr
    assert "No changes. The connections match the configuration." in again.stdout


def test_bad_port_stops_before_anything_is_written(legacy_db: AirflowDb, tmp_path: Path) -> None:
    """A non-numeric port is named with its secret and field; exit 1, no row and no state written."""
    dump = json.loads(DUMP.read_text())
    dump["airflow/connections/warehouse"]["port"] = "54x2"
    source = tmp_path / "dump.json"
    source.write_text(json.dumps(dump))
    before = legacy_db.rows()
    done = run_example(legacy_db, tmp_path, "--yes", source=source)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"Error: 1 problem in {source}; nothing was changed:\n"
        f"  {source}: connections.warehouse.port: '54x2' is not a port number (1 to 65535)\n"
    )
    assert legacy_db.rows() == before
    assert not (tmp_path / ".dconn").exists()


def test_every_bad_secret_is_reported_at_once(legacy_db: AirflowDb, tmp_path: Path) -> None:
    """Bad JSON, a URI, an unknown field and a bad conn_id are all listed; no secret value is echoed."""
    source = tmp_path / "dump.json"
    source.write_text(
        json.dumps(
            {
                "airflow/connections/uri": "postgres://etl:canary-uri@db/x",
                "airflow/connections/api": {"conn_type": "http", "hostname": "x"},
                "airflow/connections/bad id": {"conn_type": "http"},
                "airflow/connections/wh": {"conn_type": "postgres", "extra": '{"password": "canary-x"'},
            }
        )
    )
    done = run_example(legacy_db, tmp_path, "--yes", source=source)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == f"Error: 4 problems in {source}; nothing was changed:"
    assert sorted(lines[1:]) == sorted(
        [
            f"  {source}: connections.uri: the secret is not a JSON object (a URI? store Airflow's JSON form)",
            f"  {source}: connections.api: unknown field 'hostname'",
            f'  {source}: connections."bad id": invalid conn_id: use 1 to 250 letters, digits and '
            "_ # ! ( ) - . : / \\ (Airflow's rule)",
            f"  {source}: connections.wh.extra: not valid JSON (Expecting ',' delimiter at column 24)",
        ]
    )
    assert "canary" not in done.stderr


def test_without_terminal_or_yes_it_refuses(legacy_db: AirflowDb, tmp_path: Path) -> None:
    """Without --yes and without a terminal to ask on, the plan is shown and nothing is applied."""
    before = legacy_db.rows()
    done = run_example(legacy_db, tmp_path)
    assert done.returncode == 1
    assert "Plan: 2 to add" in done.stdout
    assert done.stderr.splitlines()[-2:] == [
        "Error: no terminal to confirm on; pass --yes to apply without asking",
        "Nothing was changed.",
    ]
    assert legacy_db.rows() == before


def test_database_errors_are_one_line(tmp_path: Path, make_db: Any) -> None:
    """A missing database file is one `Error:` line, exit 1, no traceback, and is not created."""
    db: AirflowDb = make_db("sqlite", "2.x")
    missing = tmp_path / "missing" / "airflow.db"
    db.url = f"sqlite:///{missing}"
    done = run_example(db, tmp_path, "--yes")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not missing.exists()


def test_fernet_key_starting_with_a_dash_is_accepted(tmp_path: Path) -> None:
    """A Fernet key may begin with '-' (url-safe base64); the documented --fernet-key=KEY form takes it."""
    key = "-" + Fernet.generate_key().decode()[1:]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "missing.json"), f"--fernet-key={key}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "expected one argument" not in done.stderr
