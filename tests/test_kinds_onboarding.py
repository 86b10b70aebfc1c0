"""export and convert for variables and pools: documents that plan "No changes", secrets as placeholders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from declarative_conns.errors import InputError
from declarative_conns.onboarding.export import convert_file
from tests.airflow_tables import insert_raw
from tests.helpers import run_dconn
from tests.test_kinds_db import KindsDb

CANARY = "canary-onboard-kinds-4b1d"


@pytest.fixture
def filled(make_db: Any) -> KindsDb:
    """A SQLite database holding a connection, variables of every sort (one in clear) and pools."""
    from cryptography.fernet import Fernet

    db = KindsDb(make_db("sqlite", "2.x"), "2.x")
    fernet = Fernet(db.db.fernet_key.encode())
    insert_raw(db.db.engine, db.db.table, [{"conn_id": "warehouse", "conn_type": "postgres", "host": "wh"}])
    rows = [
        ("bucket", "s3://b", "Where it goes"),
        ("flags", '{"b": [1, 2], "a": {"x": 1}}', None),
        ("with_null", '{"a": null}', None),
        ("number", "5000", None),
        ("api_token", f"{CANARY}-token", None),
        ("weird key/é", "v", None),
    ]
    for key, val, description in rows:
        encrypted = key != "bucket"  # one row as Airflow wrote it without a key
        stored = fernet.encrypt(val.encode()).decode() if encrypted else val
        db.execute(
            db.variable.insert().values(key=key, val=stored, description=description, is_encrypted=encrypted)
        )
    db.execute(db.pool.insert().values(pool="etl", slots=-1, description="ETL", include_deferred=True))
    return db


def env_of(db: KindsDb, **extra: str) -> dict[str, str]:
    """Return the environment that points dconn at the database."""
    return {"DCONN_DB_URL": db.db.url, "DCONN_FERNET_KEY": db.db.fernet_key, **extra}


def test_export_writes_every_kind_and_plans_no_changes(filled: KindsDb, tmp_path: Path) -> None:
    """export writes connections, variables and pools; with the placeholders set, plan says No changes."""
    exported = run_dconn("export", "-o", "connections.toml", cwd=tmp_path, env=env_of(filled))
    assert exported.returncode == 0, exported.stderr
    assert "Wrote 1 connection, 6 variables and 2 pools to connections.toml." in exported.stderr
    assert "API_TOKEN  variables.api_token: value" in exported.stderr
    text = (tmp_path / "connections.toml").read_text()
    assert CANARY not in text + exported.stdout + exported.stderr
    assert '[variables.api_token]\nvalue = { from_env = "API_TOKEN" }' in text
    assert "[variables.flags]\nvalue = { b = [1, 2], a = { x = 1 } }" in text
    assert "[variables.with_null]\nvalue = '{\"a\": null}'" in text or 'value = "{\\"a\\": null}"' in text
    assert '[variables.number]\nvalue = "5000"' in text
    assert '[variables."weird key/é"]' in text
    assert "[pools.default_pool]\nslots = 128\n" in text
    assert '[pools.etl]\nslots = -1\ndescription = "ETL"\ninclude_deferred = true' in text
    planned = run_dconn(
        "plan", "--detailed-exitcode", cwd=tmp_path, env=env_of(filled, API_TOKEN=f"{CANARY}-token")
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "6 variables unchanged." in planned.stdout and "2 pools unchanged." in planned.stdout


def test_export_kinds_chooses_what_is_written(filled: KindsDb, tmp_path: Path) -> None:
    """--kinds writes only the kinds named; a document of pools alone leaves connections unmanaged."""
    exported = run_dconn("export", "--kinds", "pools", cwd=tmp_path, env=env_of(filled))
    assert exported.returncode == 0, exported.stderr
    assert "[connections" not in exported.stdout and "[variables" not in exported.stdout
    assert "[pools.etl]" in exported.stdout
    assert "# 2 pools from 2 rows." in exported.stdout


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (
            "pools,queues",
            "Error: --kinds: unknown kind 'queues'; use connections, variables and pools, comma-separated",
        ),
        (",", "Error: --kinds: name at least one of connections, variables, pools"),
    ],
)
def test_export_kinds_refuses_unknown_kinds(
    filled: KindsDb, tmp_path: Path, kinds: str, message: str
) -> None:
    """An unknown kind is one Error line and exit code 1."""
    result = run_dconn("export", "--kinds", kinds, cwd=tmp_path, env=env_of(filled))
    assert (result.returncode, result.stderr.strip()) == (1, message)


def test_export_of_a_kind_the_database_lacks_is_an_error(make_db: Any, tmp_path: Path) -> None:
    """--kinds variables on a database without a variable table says so; by default only connections are written."""
    db = make_db("sqlite", "2.x")
    result = run_dconn("export", "--kinds", "variables", cwd=tmp_path, env={"DCONN_DB_URL": db.url})
    assert result.returncode == 1
    assert "has no table for variables" in result.stderr
    default = run_dconn("export", cwd=tmp_path, env={"DCONN_DB_URL": db.url})
    assert default.returncode == 0 and "[variables" not in default.stdout


AIRFLOW_3_VARIABLES = {
    "bucket": {"description": "Where it goes", "value": "s3://b"},
    "flags": {"a": {"x": 1}, "b": [1, 2]},
    "number": 5000,
    "plain": "text",
    "slack_token": f"{CANARY}-slack",
}
AIRFLOW_POOLS = {
    "default_pool": {"description": "Default pool", "include_deferred": False, "slots": 128},
    "etl": {"description": "ETL", "include_deferred": True, "slots": 4},
}


def test_convert_reads_airflow_variables_and_pools_exports(filled: KindsDb, tmp_path: Path) -> None:
    """convert --kind variables / pools reads Airflow's exports; applied, the database holds what Airflow's import would."""
    (tmp_path / "variables.json").write_text(json.dumps(AIRFLOW_3_VARIABLES, indent=4))
    (tmp_path / "pools.json").write_text(json.dumps(AIRFLOW_POOLS, indent=4))
    variables = run_dconn("convert", "--kind", "variables", "variables.json", "-o", "v.toml", cwd=tmp_path)
    pools = run_dconn("convert", "pools.json", "-o", "p.toml", cwd=tmp_path)  # recognised without --kind
    assert variables.returncode == 0 and pools.returncode == 0, variables.stderr + pools.stderr
    assert "Wrote 5 variables to v.toml." in variables.stderr and "Wrote 2 pools to p.toml." in pools.stderr
    assert CANARY not in (tmp_path / "v.toml").read_text() + variables.stderr
    (tmp_path / "conf").mkdir()
    for name in ("v.toml", "p.toml"):
        (tmp_path / name).rename(tmp_path / "conf" / name)
    env = env_of(filled, SLACK_TOKEN=f"{CANARY}-slack")
    applied = run_dconn("apply", "-c", "conf", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    values = filled.variables()
    assert (values["number"], values["plain"], values["slack_token"]) == ("5000", "text", f"{CANARY}-slack")
    assert json.loads(values["flags"]) == {"a": {"x": 1}, "b": [1, 2]}
    assert filled.pools()["etl"]["slots"] == 4
    again = run_dconn("plan", "-c", "conf", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout


def test_convert_of_a_variables_file_as_connections_points_at_kind(tmp_path: Path) -> None:
    """A variables export read as connections fails with a hint to add --kind variables."""
    (tmp_path / "variables.json").write_text(json.dumps({"plain": "text"}))
    result = run_dconn("convert", "variables.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: variables.json: connection 'plain'")
    assert "add --kind variables or --kind pools" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"etl": {"slots": -2, "description": ""}}, "pool 'etl': slots must be an integer of at least -1"),
        ({"etl": {"slots": 2}}, "pool 'etl': needs slots and description"),
        ({"etl": {"slots": "2", "description": None}}, "pool 'etl': slots must be an integer"),
    ],
)
def test_convert_refuses_bad_pools(tmp_path: Path, content: Any, message: str) -> None:
    """A pools file Airflow's import would refuse is an error naming the pool."""
    path = tmp_path / "pools.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        convert_file(path, kind="pool")


def test_convert_never_echoes_a_variable_value(tmp_path: Path) -> None:
    """A variable with a bad description is reported by key; its value stays out of the message."""
    path = tmp_path / "variables.json"
    path.write_text(json.dumps({"api_token": {"value": f"{CANARY}", "description": 5}}))
    with pytest.raises(InputError) as raised:
        convert_file(path, kind="variable")
    assert "variable 'api_token': its description must be a string" in str(raised.value)
    assert CANARY not in str(raised.value)


def test_the_all_kinds_example_is_valid(tmp_path: Path) -> None:
    """examples/all-kinds.toml validates, and validate counts every kind it declares."""
    example = Path(__file__).parent.parent / "examples" / "all-kinds.toml"
    result = run_dconn("validate", "-c", str(example), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Valid: 1 connection, 3 variables and 2 pools in 1 file.\n"
