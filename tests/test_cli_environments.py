"""`--env` / `DCONN_ENV` and `--all-envs`: each environment's target, key, state, layers and vars.

Two real deployments at once: two Airflow-shaped SQLite databases (and PostgreSQL with MariaDB),
each with its own Fernet key, declared in one dconn.toml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from declarative_conns.cli import app
from tests.conftest import AirflowDb
from tests.helpers import run_dconn

CANARY = "canary-env-pw-5f1c"

LAYER = """\
[connections.warehouse]
conn_type = "postgres"
host = "${vars.host}"
port = "${vars.port}"
password = { from_env = "WH_PASSWORD" }

[connections.wh_sandbox]
conn_type = "postgres"
host = "sandbox.internal"
"""

PROD_OVERLAY = """\
[connections.warehouse]
login = "etl_prod"
"""


def invoke(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """Run dconn in-process; return exit code, stdout and stderr."""
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def write_project(folder: Path, staging: AirflowDb, prod: AirflowDb, *, prod_state: str = '"db"') -> Path:
    """Write a dconn.toml with two environments on two databases, their layers beside it."""
    (folder / "connections").mkdir(parents=True, exist_ok=True)
    (folder / "overlays" / "prod").mkdir(parents=True, exist_ok=True)
    (folder / "connections" / "warehouse.toml").write_text(LAYER)
    (folder / "overlays" / "prod" / "warehouse.toml").write_text(PROD_OVERLAY)
    (folder / "dconn.toml").write_text(
        f"""\
[environments.staging]
db_url = "{staging.url}"
fernet_key = {{ from_env = "STAGING_KEY" }}
config = ["connections/"]
vars = {{ host = "wh-staging.internal", port = 5433 }}

[environments.prod]
db_url = {{ from_env = "PROD_DB_URL" }}
fernet_key = {{ from_env = "PROD_KEY" }}
state = {prod_state}
config = ["connections/", "overlays/prod/"]
vars = {{ host = "wh.internal", port = 5432 }}
exclude = ["*_sandbox"]
db_timeout = 20
"""
    )
    return folder / "dconn.toml"


@pytest.fixture
def two(make_db: Any, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AirflowDb, AirflowDb]:
    """Two SQLite deployments, each with its own key, declared in ./dconn.toml; secrets in the env."""
    staging, prod = make_db("sqlite", "2.x"), make_db("sqlite", "3.1")
    write_project(clean_env, staging, prod)
    monkeypatch.setenv("STAGING_KEY", staging.fernet_key)
    monkeypatch.setenv("PROD_KEY", prod.fernet_key)
    monkeypatch.setenv("PROD_DB_URL", prod.url)
    monkeypatch.setenv("WH_PASSWORD", CANARY)
    return staging, prod


def decrypt(db: AirflowDb, conn_id: str) -> tuple[dict[str, Any], str]:
    """Return a stored row and its password decrypted with the database's own key."""
    row = next(r for r in db.rows() if r["conn_id"] == conn_id)
    return row, Fernet(db.fernet_key.encode()).decrypt(str(row["password"]).encode()).decode()


# --- picking an environment ---------------------------------------------------------------


def test_several_environments_and_none_picked_lists_them(two: Any) -> None:
    """plan, apply, export, validate and state pull refuse to guess: one Error line naming every environment."""
    for command in (["plan"], ["apply", "--auto-approve"], ["export"], ["validate"], ["state", "pull"]):
        code, out, err = invoke(*command)
        assert code == 1, command
        assert err.startswith("Error: ") and err.count("\n") == 1, err
        assert "has several environments (prod, staging): pick one with --env NAME or DCONN_ENV" in err
        assert out == ""
    assert [r for db in two for r in db.rows()] == []


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_unknown_environment_lists_the_known_ones(two: Any, how: str) -> None:
    """--env or DCONN_ENV naming no environment is one Error line with the names; nothing is written."""
    args, env = (["--env", "qa"], {}) if how == "flag" else ([], {"DCONN_ENV": "qa"})
    code, out, err = invoke("plan", *args, env=env)
    assert code == 1 and out == ""
    spelled = "--env" if how == "flag" else "DCONN_ENV"
    assert (
        err
        == f'Error: {spelled} names environment "qa", which {Path.cwd() / "dconn.toml"} lacks; it has: prod, staging\n'
    )
    assert not Path(".dconn").exists()


def test_env_without_a_project_file_is_an_error(clean_env: Path) -> None:
    """--env where no dconn.toml is found says so and how to name one."""
    (clean_env / "connections.toml").write_text('[connections.a]\nconn_type = "http"\n')
    code, _, err = invoke("plan", "--env", "staging")
    assert code == 1
    assert err.startswith('Error: --env names environment "staging", but there is no dconn.toml in ')
    assert "pass --project FILE" in err


def test_without_a_project_file_nothing_changes(make_db: Any, clean_env: Path) -> None:
    """No dconn.toml: connections.toml, .dconn/state.json and the flags, as always."""
    db = make_db("sqlite", "2.x")
    (clean_env / "connections.toml").write_text('[connections.a]\nconn_type = "http"\n')
    code, _out, err = invoke("apply", "--auto-approve", "--db-url", db.url, "--fernet-key", db.fernet_key)
    assert code == 0, err
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    assert Path(".dconn/state.json").is_file()


# --- one environment: target, key, state, layers, vars --------------------------------------


def test_each_environment_plans_and_applies_its_own_deployment(two: Any) -> None:
    """--env and DCONN_ENV pick target, key, state, layers, vars and exclude; the other deployment is untouched."""
    staging, prod = two
    code, out, err = invoke("apply", "--env", "staging", "--auto-approve")
    assert code == 0, err
    assert prod.rows() == []
    row, password = decrypt(staging, "warehouse")
    assert (row["host"], row["port"], row["login"], password) == ("wh-staging.internal", 5433, None, CANARY)
    assert sorted(r["conn_id"] for r in staging.rows()) == ["warehouse", "wh_sandbox"]
    assert Path(".dconn/staging.json").is_file()  # the environment's default state file

    code, out, err = invoke("apply", "--auto-approve", env={"DCONN_ENV": "prod"})
    assert code == 0, err
    row, password = decrypt(prod, "warehouse")
    assert (row["host"], row["port"], row["login"], password) == ("wh.internal", 5432, "etl_prod", CANARY)
    assert [r["conn_id"] for r in prod.rows()] == ["warehouse"]  # exclude = ["*_sandbox"]
    with prod.engine.connect() as conn:  # state = "db": a dconn_state row, no file
        assert conn.exec_driver_sql("SELECT name FROM dconn_state").scalars().all() == ["default"]
    assert not Path(".dconn/prod.json").exists()
    for command in ("staging", "prod"):
        code, out, _ = invoke("plan", "--env", command, "--detailed-exitcode")
        assert code == 0 and "No changes." in out
    assert CANARY not in out + err


def test_flags_override_the_environment(two: Any, make_db: Any, tmp_path: Path) -> None:
    """--db-url, --fernet-key, --state and -c replace the environment's values; its vars still fill -c."""
    other = make_db("sqlite", "2.x")
    (tmp_path / "alt.toml").write_text('[connections.alt]\nconn_type = "http"\nhost = "${vars.host}"\n')
    code, _out, err = invoke(
        "apply",
        "--env",
        "staging",
        "--auto-approve",
        "--db-url",
        other.url,
        "--fernet-key",
        other.fernet_key,
        "--state",
        str(tmp_path / "alt-state.json"),
        "-c",
        str(tmp_path / "alt.toml"),
    )
    assert code == 0, err
    assert [(r["conn_id"], r["host"]) for r in other.rows()] == [("alt", "wh-staging.internal")]
    assert two[0].rows() == [] and (tmp_path / "alt-state.json").is_file()
    assert not Path(".dconn/staging.json").exists()


def test_a_missing_secret_of_the_environment_is_one_error(two: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's db_url from an unset variable: one Error line naming the variable, nothing written."""
    monkeypatch.delenv("PROD_DB_URL")
    code, out, err = invoke("plan", "--env", "prod")
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and "PROD_DB_URL" in err and err.count("\n") == 1


def test_an_empty_fernet_key_means_no_key(two: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """fernet_key = "" stores values in clear (Airflow without a key) even when DCONN_FERNET_KEY is set."""
    staging, _ = two
    text = (
        Path("dconn.toml").read_text().replace('fernet_key = { from_env = "STAGING_KEY" }', 'fernet_key = ""')
    )
    Path("dconn.toml").write_text(text)
    monkeypatch.setenv("DCONN_FERNET_KEY", staging.fernet_key)
    code, _, err = invoke("apply", "--env", "staging", "--auto-approve")
    assert code == 0, err
    assert "no Fernet key is set" in err
    row = next(r for r in staging.rows() if r["conn_id"] == "warehouse")
    assert (row["password"], row["is_encrypted"]) == (CANARY, False)


def test_an_api_environment_targets_its_api(
    clean_env: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment naming a REST API is planned through that API (here unreachable: one Error: line)."""
    (clean_env / "c.toml").write_text('[connections.a]\nconn_type = "http"\n')
    (clean_env / "dconn.toml").write_text(
        f'[environments.prod]\napi_url = "http://127.0.0.1:{closed_port}"\n'
        'api_token = { from_env = "TOKEN" }\nconfig = ["c.toml"]\n'
    )
    code, _, err = invoke("plan")
    assert code == 1
    assert err == "Error: environment variable TOKEN is not set\n"
    monkeypatch.setenv("TOKEN", "canary-token-31d7")
    code, _, err = invoke("plan")
    assert code == 1
    assert err == f"Error: cannot reach http://127.0.0.1:{closed_port}: [Errno 111] Connection refused\n"


def test_export_restore_and_state_pull_take_the_environment(two: Any) -> None:
    """export reads the environment's database, state pull its state, restore its backups' target."""
    staging, prod = two
    assert invoke("apply", "--env", "prod", "--auto-approve")[0] == 0
    code, out, err = invoke("export", "--env", "prod")
    assert code == 0, err
    assert "[connections.warehouse]" in out and 'login = "etl_prod"' in out and CANARY not in out
    code, out, err = invoke("state", "pull", "--env", "prod")
    assert code == 0, err
    assert json.loads(out)["managed"] == {"connection": ["warehouse"]}
    Path("connections/warehouse.toml").write_text(LAYER.replace("${vars.host}", "moved.internal"))
    assert invoke("apply", "--env", "prod", "--auto-approve")[0] == 0
    assert decrypt(prod, "warehouse")[0]["host"] == "moved.internal"
    backup = sorted(Path(".dconn/backups").glob("*.json"))[-1]
    code, out, err = invoke("restore", str(backup), "--env", "prod", "--auto-approve")
    assert code == 0, err
    assert decrypt(prod, "warehouse")[0]["host"] == "wh.internal"
    assert staging.rows() == []


def test_a_saved_plan_applies_to_the_environment_it_was_made_for(two: Any, tmp_path: Path) -> None:
    """plan --env X --out FILE, then apply FILE --env X; applying it with another environment is refused."""
    staging, prod = two
    plan_file = tmp_path / "plan.json"
    assert invoke("plan", "--env", "prod", "--out", str(plan_file))[0] == 0
    code, _, err = invoke("apply", str(plan_file), "--env", "staging")
    assert code == 1 and err.startswith(f"Error: {plan_file}: the plan file fails its authentication check")
    assert staging.rows() == []
    code, _, err = invoke("apply", str(plan_file), "--env", "prod")
    assert code == 0, err
    assert [r["conn_id"] for r in prod.rows()] == ["warehouse"]


# --- every environment ----------------------------------------------------------------------


def test_plan_all_envs_text(two: Any) -> None:
    """One section per environment with its own target, then one line over all; exit 2 with changes."""
    staging, prod = two
    code, out, err = invoke("plan", "--all-envs", "--detailed-exitcode")
    assert code == 2, err
    first, second = out.split('Environment "prod"')
    assert first.startswith(f'Environment "staging" (database {staging.url})\n')
    assert (
        f"Target: {staging.url} (Airflow 2.x table" in first
        and '+ host      = "wh-staging.internal"' in first
    )
    assert second.startswith(" (database from_env PROD_DB_URL)\n")
    assert f"Target: {prod.url} (Airflow 3.1 table" in second and '+ login     = "etl_prod"' in second
    assert "wh_sandbox" not in second
    assert out.endswith("\n2 environments: 2 with changes (staging, prod).\n")
    assert CANARY not in out + err
    assert staging.rows() == [] and prod.rows() == []
    for name in ("staging", "prod"):
        assert invoke("apply", "--env", name, "--auto-approve")[0] == 0
    code, out, _ = invoke("plan", "--all-envs", "--detailed-exitcode")
    assert code == 0 and out.endswith("\n2 environments: 2 without changes (staging, prod).\n")
    assert invoke("plan", "--all-envs")[0] == 0


def test_plan_all_envs_reports_every_environment_when_one_fails(
    two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing environment is exit 1 (even with changes elsewhere); the others are still planned."""
    staging, _ = two
    monkeypatch.setenv("PROD_KEY", "not-a-fernet-key")
    code, out, err = invoke("plan", "--all-envs", "--detailed-exitcode")
    assert code == 1
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in out.split('Environment "prod"')[0]
    assert 'Environment "prod" (database from_env PROD_DB_URL)' in out
    assert "\nError: " in out.split('Environment "prod"')[1]
    assert out.endswith("2 environments: 1 with changes (staging); 1 failed (prod).\n")
    assert err.startswith('Error: environment "prod": ') or '\nError: environment "prod": ' in err
    code, _, _ = invoke("plan", "--all-envs")
    assert code == 1  # failed is 1 with or without --detailed-exitcode
    assert staging.rows() == []


def test_plan_all_envs_json(two: Any) -> None:
    """--format json: one document, one entry per environment with its status and full plan, valid plans."""
    from declarative_conns.config.resources import schema_check

    staging, _ = two
    assert invoke("apply", "--env", "staging", "--auto-approve")[0] == 0
    with staging.engine.begin() as conn:  # drift in staging: changed outside dconn
        conn.exec_driver_sql("UPDATE connection SET host = 'hand-edited' WHERE conn_id = 'warehouse'")
    code, out, err = invoke("plan", "--all-envs", "--format", "json", "--detailed-exitcode")
    assert code == 2, err
    document = json.loads(out)
    assert schema_check("plans.schema.json")(document)
    by_name = {e["name"]: e for e in document["environments"]}
    assert list(by_name) == ["staging", "prod"]
    assert (by_name["staging"]["status"], by_name["staging"]["drift"]) == ("changes", True)
    assert by_name["staging"]["plan"]["changes_outside"][0]["key"] == "warehouse"
    assert (by_name["prod"]["status"], by_name["prod"]["drift"]) == ("changes", False)
    for entry in document["environments"]:
        assert schema_check("plan.schema.json")(entry["plan"])
    assert document["summary"] == {
        "environments": 2,
        "changes": 2,
        "no_changes": 0,
        "failed": 0,
        "drift": 1,
        "detailed_exitcode": 2,
    }
    assert CANARY not in out


def test_plan_all_envs_markdown(two: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """--format markdown: a table of every environment's result, then each one's report under its heading."""
    monkeypatch.delenv("PROD_DB_URL")
    code, out, _ = invoke("plan", "--all-envs", "--format", "markdown")
    assert code == 1
    assert out.startswith(
        "## dconn plan: every environment\n\n**2 environments: 1 with changes (staging); 1 failed (prod).**"
    )
    assert (
        "| `staging` | `database sqlite:///" in out
        and "| Plan: 2 to add, 0 to change, 0 to destroy. |" in out
    )
    assert "| `prod` | `database from_env PROD_DB_URL` | **failed**: " in out
    assert "## Environment `staging`\n\n### dconn plan" in out
    assert (
        "## Environment `prod`\n\n**Error:** " in out
        and "PROD_DB_URL" in out.split("## Environment `prod`")[1]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "prod"], "--all-envs plans every environment: leave out --env"),
        (["--db-url", "sqlite:///x.db"], "leave out --db-url"),
        (["-c", "x.toml", "--state", "s.json"], "leave out -c/--config, --state"),
        (["--out", "plan.json"], "--out saves one environment's plan: run dconn plan --env NAME --out FILE"),
    ],
)
def test_plan_all_envs_refuses_per_environment_flags(two: Any, args: list[str], message: str) -> None:
    """Flags that name one environment's target, state, layers or plan file are refused with --all-envs."""
    code, out, err = invoke("plan", "--all-envs", *args)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and message in err


# --- validate ---------------------------------------------------------------------------------


def test_validate_one_environment_and_all(two: Any) -> None:
    """validate --env checks that environment's merged document; --all-envs each one; no database, no secret."""
    code, out, err = invoke("validate", "--env", "prod", env={"PROD_DB_URL": None, "WH_PASSWORD": None})
    assert (code, out) == (0, 'Valid: environment "prod": 1 connection in 2 files.\n'), err
    code, out, err = invoke("validate", "--all-envs")
    assert code == 0, err
    assert out == (
        'Valid: environment "staging": 2 connections in 1 file.\n'
        'Valid: environment "prod": 1 connection in 2 files.\n'
    )


def test_validate_all_envs_reports_each_invalid_environment(two: Any) -> None:
    """A var of the wrong type in one environment: that one is invalid (file and path named), the other valid."""
    text = Path("dconn.toml").read_text().replace("port = 5432 }", 'port = "5432" }')
    Path("dconn.toml").write_text(text)
    code, out, err = invoke("validate", "--all-envs")
    assert code == 1
    assert out == 'Valid: environment "staging": 2 connections in 1 file.\n'
    assert err.startswith('Error: environment "prod": the configuration has 1 problem:\n')
    assert (
        f"{Path.cwd() / 'connections' / 'warehouse.toml'}: connections.warehouse.port: '5432' is not of type 'integer'"
        in err
    )
    code, out, _ = invoke("validate", "--all-envs", "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert document["valid"] is False
    assert document["environments"] == [{"name": "staging", "valid": True}, {"name": "prod", "valid": False}]
    assert [(p["environment"], p["path"]) for p in document["problems"]] == [
        ("prod", "connections.warehouse.port")
    ]


# --- bad input: one Error line, nothing written ------------------------------------------------


def _nothing_written(dbs: Any) -> None:
    """Assert that no database row and no state file was written."""
    assert [r for db in dbs for r in db.rows()] == []
    assert not Path(".dconn").exists()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ('"overlays/prod/"]', '"overlays/missing/"]'),
            'Error: environment "prod": layer {cwd}/overlays/missing does not exist\n',
        ),
        (
            ("port = 5432 }", 'port = "5432" }'),
            "Error: the configuration has 1 problem:\n  {cwd}/connections/warehouse.toml: "
            "connections.warehouse.port: '5432' is not of type 'integer' (the value of ${{vars.port}} of "
            'environment "prod")\n',
        ),
        (
            ('host = "wh.internal"', 'host = "${{vars.host}}"'),
            "Error: the configuration has 1 problem:\n  {cwd}/dconn.toml: environments.prod.vars.host: a var cannot "
            "use another var (${{vars.host}}): vars are plain values; write $${{ for a literal ${{\n",
        ),
    ],
    ids=["missing-layer", "wrong-type-var", "self-reference"],
)
def test_bad_environment_input_is_one_error_and_writes_nothing(
    two: Any, edit: tuple[str, str], expected: str
) -> None:
    """A missing layer, a string var for port, a var using itself: the exact Error, exit 1, nothing written."""
    text = Path("dconn.toml").read_text()
    old, new = edit[0], edit[1].replace("{{", "{").replace("}}", "}")
    assert old in text
    Path("dconn.toml").write_text(text.replace(old, new))
    for command in (["plan", "--env", "prod"], ["apply", "--env", "prod", "--auto-approve"]):
        code, out, err = invoke(*command)
        assert (code, out) == (1, ""), err
        assert err == expected.format(cwd=Path.cwd()), err
    _nothing_written(two)


def test_an_exclude_matching_nothing_is_a_warning(two: Any) -> None:
    """exclude = ["*_nothing"]: a warning naming the environment and the pattern; the plan goes on."""
    Path("dconn.toml").write_text(Path("dconn.toml").read_text().replace("*_sandbox", "*_nothing"))
    code, out, err = invoke("plan", "--env", "prod", "--read-only")
    assert code == 0
    assert 'Warning: environment "prod": exclude pattern "*_nothing" matches no key of the layers\n' in err
    assert "wh_sandbox" in out


# --- real processes and real servers --------------------------------------------------------------


def test_real_process_plan_all_envs(two: Any, tmp_path: Path) -> None:
    """As the nightly job runs it: a real process, exit 2, both sections, no traceback, no secret."""
    staging, prod = two
    env = {
        "STAGING_KEY": staging.fernet_key,
        "PROD_KEY": prod.fernet_key,
        "PROD_DB_URL": prod.url,
        "WH_PASSWORD": CANARY,
    }
    result = run_dconn("plan", "--all-envs", "--detailed-exitcode", cwd=Path.cwd(), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout.count("Plan: ") == 2 and "Traceback" not in result.stderr
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.postgres
@pytest.mark.mysql
def test_postgres_and_mariadb_environments(
    make_db: Any, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One environment on PostgreSQL (state in the database), one on MariaDB: plan all, apply each, plan all clean."""
    staging, prod = make_db("mysql", "2.x"), make_db("postgres", "3.2")
    write_project(clean_env, staging, prod)
    monkeypatch.setenv("STAGING_KEY", staging.fernet_key)
    monkeypatch.setenv("PROD_KEY", prod.fernet_key)
    monkeypatch.setenv("PROD_DB_URL", prod.url)
    monkeypatch.setenv("WH_PASSWORD", CANARY)
    code, out, err = invoke("plan", "--all-envs", "--detailed-exitcode", "--format", "json")
    assert code == 2, err
    assert [e["plan"]["summary"]["add"] for e in json.loads(out)["environments"]] == [2, 1]
    for name in ("staging", "prod"):
        code, _, err = invoke("apply", "--env", name, "--auto-approve")
        assert code == 0, err
    assert decrypt(staging, "warehouse")[1] == decrypt(prod, "warehouse")[1] == CANARY
    assert (decrypt(staging, "warehouse")[0]["port"], decrypt(prod, "warehouse")[0]["port"]) == (5433, 5432)
    with prod.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dconn_state")).scalar() == 1
    code, out, err = invoke("plan", "--all-envs", "--detailed-exitcode")
    assert code == 0, err
    assert out.endswith("2 environments: 2 without changes (staging, prod).\n")


def test_verbose_plan_names_the_layer_of_each_field(two: Any) -> None:
    """plan -v: each planned field says which layer file set it (the overlay for login, the base for host)."""
    code, out, err = invoke("plan", "--env", "prod", "-v", "--read-only")
    assert code == 0, err
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if "# from " in line}
    assert lines["+ login"].endswith("# from overlays/prod/warehouse.toml")
    assert lines["+ host"].endswith("# from connections/warehouse.toml")
    assert lines["+ password"].endswith("# from connections/warehouse.toml") and CANARY not in out
    code, out, _ = invoke("plan", "--env", "prod", "--read-only")
    assert "# from " not in out


def test_an_api_environment_gives_the_variables_the_api_target_reads(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api_url and credentials resolve to DCONN_API_* (the --api-url route); --db-url replaces them."""
    from declarative_conns.config.selection import Flags, select

    (clean_env / "dconn.toml").write_text(
        '[environments.prod]\napi_url = "https://airflow.example.com"\n'
        'api_username = "dconn"\napi_password = { from_env = "API_PW" }\nconfig = ["c.toml"]\napi_timeout = 12\n'
    )
    monkeypatch.setenv("API_PW", CANARY)
    selection = select(None, None)
    assert selection.api_environ() == {
        "DCONN_API_URL": "https://airflow.example.com",
        "DCONN_API_USERNAME": "dconn",
        "DCONN_API_PASSWORD": CANARY,
    }
    assert selection.api_timeout == 12.0 and CANARY not in repr(selection)
    assert select(None, None, Flags(db_url="sqlite:///x.db")).api_environ() == {}


def test_validate_all_envs_reports_a_missing_layer_as_that_environments_problem(two: Any) -> None:
    """One environment's layer is missing: it is invalid with the reason; the other is still checked."""
    Path("dconn.toml").write_text(
        Path("dconn.toml").read_text().replace('"overlays/prod/"]', '"overlays/nope/"]')
    )
    code, out, err = invoke("validate", "--all-envs")
    assert code == 1
    assert out == 'Valid: environment "staging": 2 connections in 1 file.\n'
    assert f"environments.prod.config: layer {Path.cwd() / 'overlays' / 'nope'} does not exist" in err
    code, out, _ = invoke("validate", "--all-envs", "--format", "json")
    document = json.loads(out)
    assert document["environments"] == [{"name": "staging", "valid": True}, {"name": "prod", "valid": False}]
    assert document["problems"][0]["path"] == "environments.prod.config"


def test_a_password_in_an_environments_url_is_never_printed(two: Any, closed_port: int) -> None:
    """A db_url with a password (written in dconn.toml, unreachable): masked in warnings, sections, errors, JSON."""
    text = (
        Path("dconn.toml")
        .read_text()
        .replace(
            'db_url = { from_env = "PROD_DB_URL" }',
            f'db_url = "postgresql://etl:{CANARY}@127.0.0.1:{closed_port}/airflow"',
        )
    )
    Path("dconn.toml").write_text(text)
    for fmt in ("text", "json", "markdown"):
        code, out, err = invoke("plan", "--all-envs", "--format", fmt, "--db-timeout", "5")
        assert code == 1
        assert CANARY not in out + err
        assert f"postgresql://etl:***@127.0.0.1:{closed_port}/airflow" in out
    assert "the URL holds a password written in the file" in err
