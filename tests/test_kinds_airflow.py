"""Real Airflow reads back the variables and pools dconn writes, and dconn sees Airflow's own edits.

Airflow 2.11 and 3.3 from the environments `make compat` installs (~/.cache/dconn-compat), on
SQLite, PostgreSQL and MariaDB: dconn applies a document, Airflow's CLI (`airflow variables
get`, `airflow pools get -o json`, `airflow variables export`) reads what it wrote, then edits
through the same CLI, and dconn's plan reports exactly those edits as drift. Outside CI a
missing environment or server skips, naming the cause; with CI=true they fail.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.airflow_processes import airflow_env, free_port
from tests.airflow_servers import airflow_venv
from tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _server_unavailable
from tests.helpers import run_dconn
from tests.test_state_table_airflow import airflow, migrated_airflow

CANARY = "canary-airflow-kinds-31c9"
DOC = """
[variables.analytics_bucket]
value = "s3://analytics-prod"
description = "Where the ETL writes"

[variables.feature_flags]
value = { enabled = true, max_rows = 5000, regions = ["eu", "us"] }

[variables.slack_token]
value = { from_env = "KINDS_SLACK_TOKEN" }

[pools.etl]
slots = 8
description = "ETL tasks"
include_deferred = true

[pools.default_pool]
slots = 64
"""


def dconn(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """Run dconn against the Airflow database of `env`; return its exit code and all its output."""
    done = run_dconn(
        *args,
        cwd=cwd,
        env={
            "DCONN_DB_URL": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            "DCONN_FERNET_KEY": env["AIRFLOW__CORE__FERNET_KEY"],
            "KINDS_SLACK_TOKEN": CANARY,
        },
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def server_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Create an empty PostgreSQL or MariaDB database for Airflow (None on SQLite); yield its URL as Airflow spells it."""
    backend = request.param
    if backend == "sqlite":
        yield None
        return
    admin_url = PG_ADMIN_URL if backend == "postgres" else MYSQL_ADMIN_URL
    _server_unavailable(admin_url, backend)
    name = f"dconn_afk_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        charset = "" if backend == "postgres" else " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        conn.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
    driver = "postgresql+psycopg2" if backend == "postgres" else "mysql+mysqldb"
    yield sa.make_url(admin_url).set(drivername=driver, database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        force = " WITH (FORCE)" if backend == "postgres" else ""
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    admin.dispose()


def airflow_database(version: str, work: Path, url: str | None) -> tuple[Path, dict[str, str]]:
    """Return an Airflow environment and the settings of its migrated metadata database."""
    if url is None:
        return migrated_airflow(version, work)
    venv = airflow_venv(version)
    env = airflow_env(venv, work / "home", free_port())
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
    airflow(venv, env, "db", "migrate")
    return venv, env


# Each version on SQLite, and each server backend with one version (pairwise: every version and
# every backend is read back by real Airflow; `make compat` runs connections on all six).
MATRIX = [
    pytest.param(version, backend, id=f"{version}-{backend}", marks=marks)
    for version, backend, marks in (
        ("2.11", "sqlite", ()),
        ("3.3", "sqlite", ()),
        ("3.3", "postgres", (pytest.mark.postgres,)),
        ("2.11", "mysql", (pytest.mark.mysql,)),
    )
]


@pytest.mark.parametrize(
    ("version", "server_database"),
    [p.values for p in MATRIX],
    indirect=["server_database"],
    ids=[p.id for p in MATRIX],
)
def test_airflow_reads_back_what_dconn_wrote_and_dconn_sees_airflows_edits(
    tmp_path: Path, version: str, server_database: str | None
) -> None:
    """Airflow's CLI reads dconn's variables and pools as declared; its own edits are drift, key order is not."""
    venv, env = airflow_database(version, tmp_path, server_database)
    (tmp_path / "connections.toml").write_text(DOC)
    code, out = dconn(env, tmp_path, "apply", "--auto-approve")
    assert code == 0, out
    assert "Apply complete! Resources: 4 added, 1 changed, 0 destroyed" in out
    assert CANARY not in out

    def read(*args: str) -> str:
        return airflow(venv, env, *args).stdout

    assert read("variables", "get", "analytics_bucket").strip().endswith("s3://analytics-prod")
    assert read("variables", "get", "slack_token").strip().endswith(CANARY)
    exported = tmp_path / "variables.json"
    read("variables", "export", str(exported))
    # Airflow 3 exports {"value": ..., "description": ...} for a variable with a description.
    variables = {
        k: v["value"] if "description" in v else v for k, v in json.loads(exported.read_text()).items()
    }
    assert variables["analytics_bucket"] == "s3://analytics-prod"
    assert variables["feature_flags"] == {"enabled": True, "max_rows": 5000, "regions": ["eu", "us"]}
    assert variables["slack_token"] == CANARY
    (etl,) = json.loads(_json_of(read("pools", "get", "etl", "-o", "json")))
    assert (int(etl["slots"]), etl["description"], str(etl["include_deferred"])) == (8, "ETL tasks", "True")
    (default,) = json.loads(_json_of(read("pools", "get", "default_pool", "-o", "json")))
    assert int(default["slots"]) == 64

    # Edits through Airflow's own CLI: a new value, a pool resized, the same JSON in another order.
    read("variables", "set", "analytics_bucket", "s3://edited-in-airflow")
    read("variables", "set", "feature_flags", '{"regions": ["eu", "us"], "max_rows": 5000, "enabled": true}')
    read("pools", "set", "etl", "3", "ETL tasks", *(["--include-deferred"]))
    code, out = dconn(env, tmp_path, "plan", "--detailed-exitcode")
    assert code == 2, out
    drift, actions = out.split("dconn will perform the following actions:")
    assert drift.index('# variable "analytics_bucket" was changed in the database') < drift.index(
        '# pool "etl" was changed in the database'
    )
    assert '"s3://analytics-prod" -> "s3://edited-in-airflow"' in drift
    assert "~ slots = 8 -> 3" in drift
    assert '"s3://edited-in-airflow" -> "s3://analytics-prod"' in actions
    assert "~ slots = 3 -> 8" in actions
    assert "feature_flags" not in out
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in out
    code, out = dconn(env, tmp_path, "apply", "--auto-approve")
    assert code == 0, out
    assert read("variables", "get", "analytics_bucket").strip().endswith("s3://analytics-prod")

    # A variable Airflow wrote itself (encrypted with the same key) declared as it is: no change.
    read("variables", "set", "made_in_airflow", "hello")
    with (tmp_path / "connections.toml").open("a") as doc:
        doc.write('\n[variables.made_in_airflow]\nvalue = "hello"\n')
    code, out = dconn(env, tmp_path, "plan", "--detailed-exitcode")
    assert code == 0, out


def _json_of(output: str) -> str:
    """Return the JSON document in a CLI's output (Airflow may print log lines before it)."""
    return output[output.index("[") :]


@pytest.mark.parametrize("version", ["2.11", "3.3"])
def test_airflows_own_exports_convert_to_a_document_that_plans_no_changes(
    tmp_path: Path, version: str
) -> None:
    """Files of `airflow variables export` and `airflow pools export` convert to a document dconn plans as No changes; so does dconn export."""
    venv, env = migrated_airflow(version, tmp_path)
    airflow(
        venv,
        env,
        "variables",
        "set",
        "bucket",
        "s3://b",
        *(["--description", "d"] if version == "3.3" else []),
    )
    airflow(venv, env, "variables", "set", "flags", '{"b": [1, 2], "a": {"x": 1.5}}')
    airflow(venv, env, "variables", "set", "number", "5000")
    airflow(venv, env, "variables", "set", "api_secret", CANARY)
    airflow(venv, env, "pools", "set", "etl", "4", "ETL tasks")
    airflow(venv, env, "variables", "export", str(tmp_path / "variables.json"))
    airflow(venv, env, "pools", "export", str(tmp_path / "pools.json"))
    (tmp_path / "conf").mkdir()

    def plan_read_only(config: str) -> subprocess.CompletedProcess[str]:
        """Plan a document against Airflow's database, writing nothing."""
        return run_dconn(
            "plan",
            "-c",
            config,
            "--detailed-exitcode",
            "--read-only",
            cwd=tmp_path,
            env={
                "DCONN_DB_URL": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                "DCONN_FERNET_KEY": env["AIRFLOW__CORE__FERNET_KEY"],
                "API_SECRET": CANARY,
            },
        )

    code, out = dconn(env, tmp_path, "convert", "--kind", "variables", "variables.json", "-o", "conf/v.toml")
    assert code == 0, out
    code, out = dconn(env, tmp_path, "convert", "pools.json", "-o", "conf/p.toml")
    assert code == 0, out
    done = plan_read_only("conf")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 variables unchanged." in done.stdout and "2 pools unchanged." in done.stdout
    # JSON that TOML cannot hold (a null) is exported as its exact text: still no changes.
    airflow(venv, env, "variables", "set", "with_null", '{"b": null,  "a": 1}')
    code, out = dconn(env, tmp_path, "export", "--kinds", "variables,pools", "-o", "exported.toml")
    assert code == 0, out
    assert CANARY not in (tmp_path / "exported.toml").read_text() + out
    done = plan_read_only("exported.toml")
    assert done.returncode == 0, done.stdout + done.stderr
