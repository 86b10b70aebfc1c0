"""Real Airflow leaves dconn_state alone: `airflow db migrate` and `check-migrations` pass with it, and it survives.

Runs Airflow 2.11 and 3.3 from the environments `make compat` installs (~/.cache/dconn-compat);
outside CI a missing environment skips these tests, naming `make compat`; in CI it is built.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.airflow_processes import CLI_TIMEOUT, airflow_env, base_env, free_port, fresh_database, tail
from tests.airflow_servers import airflow_venv
from tests.conftest import PG_ADMIN_URL, _server_unavailable
from tests.helpers import run_dconn

DOC = """
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
password = "pw-warehouse"

[variables.bucket]
value = "s3://analytics"

[pools.etl]
slots = 4
"""


def airflow(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `airflow ARGS` of an environment; fail the test with the end of its output on an error."""
    done = subprocess.run(
        [str(venv / "bin" / "airflow"), *args],
        env=env,
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"airflow {' '.join(args)} exited {done.returncode}:\n{tail(done.stdout + done.stderr, 30)}"
        )
    return done


def dconn(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run dconn against the Airflow database of `env`, with its Fernet key."""
    return run_dconn(
        *args,
        cwd=cwd,
        env={
            "DCONN_DB_URL": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            "DCONN_FERNET_KEY": env["AIRFLOW__CORE__FERNET_KEY"],
        },
    )


def migrated_airflow(version: str, work: Path) -> tuple[Path, dict[str, str]]:
    """Return an Airflow environment and the settings of a fresh, migrated SQLite metadata database."""
    venv = airflow_venv(version)
    env = airflow_env(venv, work / "home", free_port())
    fresh_database(venv, env, work, users=())
    return venv, env


def apply_with_state_in_database(env: dict[str, str], work: Path) -> None:
    """Apply the document with --state db: (which creates dconn_state) and check the state row."""
    (work / "connections.toml").write_text(DOC)
    applied = dconn(env, work, "apply", "--auto-approve", "--state", "db:")
    assert applied.returncode == 0, applied.stderr
    assert "Plan: 3 to add" in applied.stdout


def assert_state_survived(env: dict[str, str], work: Path) -> None:
    """The state row is still there and still right: the next plan has nothing to do."""
    pulled = dconn(env, work, "state", "pull", "--state", "db:")
    assert pulled.returncode == 0, pulled.stderr
    state = json.loads(pulled.stdout)
    assert state["serial"] == 1
    assert state["managed"] == {"connection": ["warehouse"], "pool": ["etl"], "variable": ["bucket"]}
    plan = dconn(env, work, "plan", "--state", "db:", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


@pytest.mark.parametrize("version", ["2.11", "3.3"])
def test_airflow_migrate_and_check_migrations_pass_with_the_state_table(tmp_path: Path, version: str) -> None:
    """With dconn_state in its database, Airflow's `db migrate` and `db check-migrations` pass and keep it."""
    venv, env = migrated_airflow(version, tmp_path)
    apply_with_state_in_database(env, tmp_path)
    airflow(venv, env, "db", "migrate")
    airflow(venv, env, "db", "check-migrations", "--migration-wait-timeout", "10")
    assert_state_survived(env, tmp_path)


def test_upgrading_airflow_2_11_to_3_3_keeps_the_state_table(tmp_path: Path) -> None:
    """Airflow 3.3's `db migrate` upgrades a 2.11 database holding dconn_state; the state stays right."""
    venv2, env = migrated_airflow("2.11", tmp_path)
    venv3 = airflow_venv("3.3")
    apply_with_state_in_database(env, tmp_path)
    settings = {k: v for k, v in env.items() if k.startswith("AIRFLOW")}
    env3 = {**base_env(venv3), **settings}
    airflow(venv3, env3, "db", "migrate")
    airflow(venv3, env3, "db", "check-migrations", "--migration-wait-timeout", "10")
    assert_state_survived(env3, tmp_path)
    assert venv2 != venv3


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """Create an empty PostgreSQL database for Airflow to migrate; yield its URL as Airflow spells it."""
    _server_unavailable(PG_ADMIN_URL, "PostgreSQL")
    name = f"dconn_af_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg2", database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.mark.postgres
def test_airflow_3_3_on_postgres_migrates_with_the_state_table(tmp_path: Path, empty_postgres: str) -> None:
    """On PostgreSQL too, Airflow 3.3's `db migrate` and `check-migrations` pass with dconn_state present."""
    venv = airflow_venv("3.3")
    env = airflow_env(venv, tmp_path / "home", free_port())
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = empty_postgres
    airflow(venv, env, "db", "migrate")
    apply_with_state_in_database(env, tmp_path)
    airflow(venv, env, "db", "migrate")
    airflow(venv, env, "db", "check-migrations", "--migration-wait-timeout", "10")
    assert_state_survived(env, tmp_path)
