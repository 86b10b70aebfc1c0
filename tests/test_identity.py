"""A state, plan or backup recorded for one database is never used on another (CONTRACT §7)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import AirflowDb
from tests.helpers import run_dconn

CANARY = "canary-id-5e2c"
DOC = '[connections.web]\nconn_type = "http"\nhost = "web.internal"\n'


def hash_url(db: AirflowDb) -> str:
    """Return the database's URL with a password holding an unescaped '#', as users write it."""
    url = sa.make_url(db.url)
    return f"postgresql://{url.username}:p#x{CANARY}@{url.host}:{url.port}/{url.database}"


def dconn(cwd: Path, url: str, *args: str, **env: str) -> Any:
    """Run dconn against `url`, with the TOML of the test in cwd."""
    (cwd / "connections.toml").write_text(DOC, encoding="utf-8")
    result = run_dconn(*args, cwd=cwd, env={"DCONN_DB_URL": url, "DCONN_PLAN_KEY": "shared-ci-secret", **env})
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def targets_named(stderr: str) -> tuple[str, str]:
    """Return the two targets an identity mismatch names: (recorded for, used against)."""
    found = re.search(
        r"(?:belongs to|planned for|taken from) (.+?), not (?:to|for|from) (.+?)(?:;|$)", stderr
    )
    assert found, stderr
    return found.group(1), found.group(2)


@pytest.fixture
def staging_and_production(make_db: Any) -> tuple[AirflowDb, AirflowDb]:
    """Return two PostgreSQL databases on one server: staging and production."""
    return make_db("postgres", "2.x"), make_db("postgres", "2.x")


@pytest.mark.postgres
def test_staging_state_is_refused_against_production(
    staging_and_production: tuple[AirflowDb, AirflowDb], tmp_path: Path
) -> None:
    """A password with '#' no longer makes two databases look alike: the state is refused, unchanged."""
    staging, production = staging_and_production
    assert dconn(tmp_path, hash_url(staging), "plan").returncode == 0
    state = tmp_path / ".dconn" / "state.json"
    before = state.read_bytes()
    for command in (["plan"], ["apply", "--auto-approve"]):
        result = dconn(tmp_path, hash_url(production), *command)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: state file ")
        recorded, used = targets_named(result.stderr)
        assert recorded == f"postgresql://127.0.0.1:5432/{sa.make_url(staging.url).database}"
        assert used == f"postgresql://127.0.0.1:5432/{sa.make_url(production.url).database}"
        assert state.read_bytes() == before
    assert production.rows() == []


@pytest.mark.postgres
def test_schema_mismatch_names_two_different_targets(make_db: Any, tmp_path: Path) -> None:
    """A state recorded without a schema, used with sql_alchemy_schema=public, names both targets apart."""
    db = make_db("postgres", "2.x")
    assert dconn(tmp_path, db.url, "plan").returncode == 0
    state = tmp_path / ".dconn" / "state.json"
    before = state.read_bytes()
    result = dconn(tmp_path, db.url, "plan", AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA="public")
    assert result.returncode == 1
    recorded, used = targets_named(result.stderr)
    assert recorded != used
    assert used == f"{recorded} (schema public)"
    assert state.read_bytes() == before


@pytest.mark.postgres
def test_saved_plan_is_refused_against_another_database(
    staging_and_production: tuple[AirflowDb, AirflowDb], tmp_path: Path
) -> None:
    """A plan saved against staging is refused against production, naming both; nothing is written."""
    staging, production = staging_and_production
    assert dconn(tmp_path, hash_url(staging), "plan", "--out", "plan.json").returncode == 0
    (tmp_path / ".dconn" / "state.json").unlink()  # a fresh CI checkout has no state
    result = dconn(tmp_path, hash_url(production), "apply", "plan.json")
    assert result.returncode == 1 and "was planned for" in result.stderr
    recorded, used = targets_named(result.stderr)
    assert recorded != used and sa.make_url(production.url).database in used
    assert production.rows() == []


@pytest.mark.postgres
def test_backup_is_refused_against_another_database(
    staging_and_production: tuple[AirflowDb, AirflowDb], tmp_path: Path
) -> None:
    """A backup of staging is not restored into production; production keeps its rows."""
    staging, production = staging_and_production
    assert dconn(tmp_path, hash_url(staging), "apply", "--auto-approve").returncode == 0
    with production.engine.begin() as conn:
        conn.execute(production.table.insert(), {"conn_id": "web", "conn_type": "ftp"})
    backup = next((tmp_path / ".dconn" / "backups").glob("*.json"))
    assert json.loads(backup.read_text())["created"] == [{"kind": "connection", "key": "web"}]
    result = dconn(tmp_path, hash_url(production), "restore", str(backup), "--auto-approve")
    assert result.returncode == 1 and "was taken from" in result.stderr
    recorded, used = targets_named(result.stderr)
    assert recorded != used
    assert [r["conn_type"] for r in production.rows()] == ["ftp"]
