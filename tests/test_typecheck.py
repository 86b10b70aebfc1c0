"""conn_type checks as users meet them: validate, plan and apply in real subprocesses (issue 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from declarative_conns.api import load
from declarative_conns.config.typecheck import Finding, check_types, raise_for_errors
from declarative_conns.errors import ValidationFailed
from tests.airflow_tables import insert_raw
from tests.helpers import run_dconn

CANARY = "canary-typecheck-51c7"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "connections.toml"

TYPO = """
[connections.warehouse]
conn_type = "postgres"
host = "db.internal"
port = 5432
password = { from_env = "WH_PASSWORD" }
extra = { ssl_mode = "require" }
"""
TYPO_WARNING = (
    "Warning: c.toml: connections.warehouse.extra.ssl_mode: unknown for postgres; did you mean 'sslmode'?"
)
TYPO_PROBLEM = "  c.toml: connections.warehouse.extra.ssl_mode: unknown for postgres; did you mean 'sslmode'?"


def dconn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run dconn in a subprocess with no Airflow or dconn settings from the outer environment."""
    return run_dconn(*args, cwd=cwd, env={"WH_PASSWORD": CANARY, **(env or {})}, timeout=60)


def lines(text: str) -> list[str]:
    """Split output into lines."""
    return text.splitlines()


@pytest.fixture
def airflow_db(make_db: Any) -> Any:
    """An Airflow 2.x SQLite database holding one row dconn would change."""
    db = make_db("sqlite", "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": "warehouse", "conn_type": "postgres", "host": "old"}])
    return db


def db_env(db: Any) -> dict[str, str]:
    """Point dconn at a test database."""
    return {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}


def test_validate_warns_with_file_and_path_and_passes(tmp_path: Path) -> None:
    """An unknown extra key is one Warning line naming file, path and suggestion; exit 0."""
    (tmp_path / "c.toml").write_text(TYPO)
    result = dconn("validate", "-c", "c.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr) == [TYPO_WARNING]
    assert result.stdout == "Valid: 1 connection in 1 file.\n"


@pytest.mark.parametrize(
    ("settings", "flags"),
    [("", ["--strict"]), ("[settings]\nstrict = true\n", []), ("[settings]\nstrict = true\n", ["--strict"])],
)
def test_strict_flag_or_setting_makes_warnings_errors(
    tmp_path: Path, settings: str, flags: list[str]
) -> None:
    """--strict or strict = true in [settings] turns the warning into the Error block; exit 1."""
    (tmp_path / "c.toml").write_text(settings + TYPO)
    result = dconn("validate", "-c", "c.toml", *flags, cwd=tmp_path)
    assert result.returncode == 1
    assert lines(result.stderr) == ["Error: the configuration has 1 problem:", TYPO_PROBLEM]
    assert result.stdout == ""


def test_wrong_value_types_are_errors_without_strict(tmp_path: Path) -> None:
    """A boolean given as "yes" fails validate; warnings still print; every error is listed."""
    doc = TYPO.replace('ssl_mode = "require"', 'ssl_mode = "require", iam = "yes"')
    doc += '\n[connections.lake]\nconn_type = "aws"\nextra = { verify = 3 }\n'
    (tmp_path / "c.toml").write_text(doc)
    result = dconn("validate", "-c", "c.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert lines(result.stderr) == [
        TYPO_WARNING,
        "Error: the configuration has 2 problems:",
        "  c.toml: connections.warehouse.extra.iam: expected a boolean (true or false, not text)",
        "  c.toml: connections.lake.extra.verify: expected a boolean or a CA bundle path",
    ]


def test_port_as_text_is_reported_once(tmp_path: Path) -> None:
    """A port written as text is the document schema's one problem, not repeated by the type check."""
    (tmp_path / "c.toml").write_text('[connections.w]\nconn_type = "postgres"\nport = "5432"\n')
    result = dconn("validate", "-c", "c.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert lines(result.stderr) == [
        "Error: the configuration has 1 problem:",
        "  c.toml: connections.w.port: '5432' is not of type 'integer'",
    ]


def test_s3_alias_and_unknown_type_are_notes_that_quiet_hides(tmp_path: Path) -> None:
    """s3 gets a note naming aws, an unknown type a note; both pass --strict; -q hides them."""
    doc = '[connections.old]\nconn_type = "s3"\n\n[connections.mine]\nconn_type = "acme_crm"\nport = 1\n'
    (tmp_path / "c.toml").write_text(doc)
    result = dconn("validate", "-c", "c.toml", "--strict", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr) == [
        "Note: c.toml: connections.old.conn_type: 's3' is a legacy alias; use 'aws'",
        "Note: c.toml: connections.mine.conn_type: unknown connection type 'acme_crm'; "
        "its fields and extras are not checked",
    ]
    quiet = dconn("validate", "-c", "c.toml", "-q", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_findings_name_the_file_each_connection_came_from(tmp_path: Path) -> None:
    """With a folder of files, each line names the file that declares the connection."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.toml").write_text('[connections.one]\nconn_type = "aws"\nport = 1\n')
    (tmp_path / "conf" / "b.toml").write_text(
        '[connections.two]\nconn_type = "mysql"\nextra = { charst = "x" }\n'
    )
    result = dconn("validate", "-c", "conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr) == [
        f"Warning: {Path('conf', 'a.toml')}: connections.one.port: not used by aws connections",
        f"Warning: {Path('conf', 'b.toml')}: connections.two.extra.charst: unknown for mysql; "
        "did you mean 'charset'?",
    ]


def test_user_rules_file_is_found_next_to_the_toml(tmp_path: Path) -> None:
    """type_rules is read relative to the TOML file, adds a type, and its findings apply."""
    (tmp_path / "conf").mkdir()
    rules = {
        "conn_types": {"acme": {"properties": {"extra": {"properties": {"tenant": {"type": "string"}}}}}}
    }
    (tmp_path / "conf" / "rules.json").write_text(json.dumps(rules))
    doc = '[settings]\ntype_rules = "rules.json"\n\n[connections.a]\nconn_type = "acme"\nextra = { tenent = "x" }\n'
    (tmp_path / "conf" / "c.toml").write_text(doc)
    result = dconn("validate", "-c", "conf/c.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr) == [
        "Warning: conf/c.toml: connections.a.extra.tenent: unknown for acme; did you mean 'tenant'?"
    ]


def test_missing_user_rules_file_is_one_error_naming_it(tmp_path: Path) -> None:
    """A type_rules file that does not exist is one Error line naming the resolved path."""
    (tmp_path / "c.toml").write_text('[settings]\ntype_rules = "nope.json"\n' + TYPO)
    result = dconn("validate", "-c", "c.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert lines(result.stderr) == [
        "Error: nope.json: cannot read the connection-type schema file (No such file or directory)"
    ]


def test_values_never_appear_in_any_output(tmp_path: Path) -> None:
    """No finding repeats a value: wrong types, unknown keys and literal secrets stay hidden."""
    doc = f"""
[connections.w]
conn_type = "postgres"
password = "{CANARY}"
extra = {{ iam = "{CANARY}", ssl_mode = "{CANARY}", sslmode = "{CANARY}", api_token = "{CANARY}" }}

[connections.a]
conn_type = "aws"
host = "{CANARY}"
extra_json = '{{"regin": "{CANARY}", "verify": 7}}'
"""
    (tmp_path / "c.toml").write_text(doc)
    for flags in ([], ["--strict"]):
        result = dconn("validate", "-c", "c.toml", *flags, cwd=tmp_path)
        assert result.returncode == 1
        assert "extra.ssl_mode" in result.stderr and "extra.regin" in result.stderr
        assert CANARY not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"]])
def test_plan_and_apply_stop_before_the_database(tmp_path: Path, airflow_db: Any, command: list[str]) -> None:
    """A type error stops plan and apply: exit 1, no state file, the rows untouched."""
    (tmp_path / "c.toml").write_text(TYPO)
    before = airflow_db.rows()
    result = dconn(*command, "-c", "c.toml", "--strict", cwd=tmp_path, env=db_env(airflow_db))
    assert result.returncode == 1
    assert lines(result.stderr) == ["Error: the configuration has 1 problem:", TYPO_PROBLEM]
    assert result.stdout == ""
    assert airflow_db.rows() == before
    assert not (tmp_path / ".dconn").exists()


def test_plan_does_not_open_the_database_on_a_type_error(tmp_path: Path) -> None:
    """The type error is reported, not the missing database file: the database is not opened."""
    (tmp_path / "c.toml").write_text("[settings]\nstrict = true\n" + TYPO)
    result = dconn("plan", "-c", "c.toml", "--db-url", "sqlite:///missing.db", cwd=tmp_path)
    assert lines(result.stderr) == ["Error: the configuration has 1 problem:", TYPO_PROBLEM]
    assert result.returncode == 1


def test_plan_warns_and_still_plans(tmp_path: Path, airflow_db: Any) -> None:
    """Without strict, plan prints the warning on stderr and the plan on stdout; exit 0."""
    (tmp_path / "c.toml").write_text(TYPO)
    result = dconn("plan", "-c", "c.toml", cwd=tmp_path, env=db_env(airflow_db))
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr)[0] == TYPO_WARNING
    assert '# connection "warehouse" will be updated in place' in result.stdout
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_strict_is_offered_by_each_command(tmp_path: Path, command: str) -> None:
    """validate, plan and apply document --strict in their help."""
    result = dconn(command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "--strict" in result.stdout


def test_the_example_validates_without_any_message(tmp_path: Path) -> None:
    """examples/connections.toml passes validate --strict and prints nothing on stderr."""
    result = dconn("validate", "-c", str(EXAMPLE), "--strict", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "Valid: 5 connections in 1 file.\n"


def test_the_example_covers_the_five_seed_kinds() -> None:
    """The example declares mssql, mongo, mysql, aws and postgres with their usual ports."""
    desired = load(EXAMPLE)
    kinds = {c.fields["conn_type"]: c.fields.get("port") for c in desired.connections.values()}
    assert kinds == {"postgres": 5432, "mysql": 3306, "mssql": 1433, "mongo": 27017, "aws": None}


def test_library_findings_carry_file_path_and_severity(tmp_path: Path) -> None:
    """check_types returns Findings in declaration order; raise_for_errors raises on errors only."""
    path = tmp_path / "c.toml"
    path.write_text(TYPO + '\n[connections.x]\nconn_type = "acme"\n')
    findings = check_types(load(path))
    assert findings == [
        Finding(
            path,
            "connections.warehouse.extra.ssl_mode",
            "unknown for postgres; did you mean 'sslmode'?",
            "warning",
        ),
        Finding(
            path,
            "connections.x.conn_type",
            "unknown connection type 'acme'; its fields and extras are not checked",
            "note",
        ),
    ]
    raise_for_errors(findings)
    with pytest.raises(ValidationFailed) as failed:
        raise_for_errors(check_types(load(path), strict=True))
    assert failed.value.problems == [
        f"{path}: connections.warehouse.extra.ssl_mode: unknown for postgres; did you mean 'sslmode'?"
    ]


def test_postgresql_spelling_is_checked_as_postgres(tmp_path: Path) -> None:
    """conn_type "postgresql", stored by dconn as postgres, gets the postgres rules, not a note."""
    path = tmp_path / "c.toml"
    path.write_text(TYPO.replace('"postgres"', '"postgresql"'))
    findings = check_types(load(path))
    assert [(f.path, f.message) for f in findings] == [
        ("connections.warehouse.extra.ssl_mode", "unknown for postgres; did you mean 'sslmode'?")
    ]
