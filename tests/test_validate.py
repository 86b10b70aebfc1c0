"""dconn validate as one report: every problem of every file at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import declarative_conns as dc
from declarative_conns.config.conn_types import check_connection, load_type_rules
from declarative_conns.config.findings import Finding
from declarative_conns.config.validation import validate_config
from tests.helpers import run_dconn

CANARY = "canary-validate-7c35"
# One document with a problem of each kind: schema, extra_json, conn_type error, conn_type
# warning (unknown extra key), a note (unknown conn_type), and a declared ignored conn_id.
MIXED = f"""
[settings]
ignore = ["*_default"]

[connections.schema_error]
conn_type = "http"
port = "abc"
extra = {{ timeout = 5, verfy = true }}

[connections.bad_json]
conn_type = "http"
extra_json = '{{"password": "{CANARY}"'

[connections.wrong_type]
conn_type = "postgres"
extra = {{ iam = "yes" }}

[connections.mine]
conn_type = "acme_crm"

[connections.aws_default]
conn_type = "aws"
"""


def dconn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run dconn in a subprocess with a clean environment."""
    return run_dconn(*args, cwd=cwd, timeout=60)


def test_every_problem_in_one_report(tmp_path: Path) -> None:
    """Schema, extra_json and conn_type problems of a document come together, each once."""
    (tmp_path / "c.toml").write_text(MIXED)
    result = dconn("validate", "-c", "c.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'Warning: connection "aws_default" matches an ignore pattern but is declared, so dconn manages it',
        "Warning: c.toml: connections.schema_error.extra.verfy: unknown for http (sent as an HTTP header); did you mean 'verify'?",
        "Note: c.toml: connections.mine.conn_type: unknown connection type 'acme_crm'; "
        "its fields and extras are not checked",
        "Error: the configuration has 3 problems:",
        "  c.toml: connections.bad_json.extra_json: not valid JSON (Expecting ',' delimiter at line 1, column 36)",
        "  c.toml: connections.schema_error.port: 'abc' is not of type 'integer'",
        "  c.toml: connections.wrong_type.extra.iam: expected a boolean (true or false, not text)",
    ]
    assert result.stdout == ""
    assert CANARY not in result.stderr


def test_plan_reports_every_problem_before_the_database(tmp_path: Path) -> None:
    """plan gives the same one report as validate and never opens the database."""
    (tmp_path / "c.toml").write_text(MIXED)
    result = dconn("plan", "-c", "c.toml", "--db-url", "sqlite:///missing.db", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-4:] == [
        "Error: the configuration has 3 problems:",
        "  c.toml: connections.bad_json.extra_json: not valid JSON (Expecting ',' delimiter at line 1, column 36)",
        "  c.toml: connections.schema_error.port: 'abc' is not of type 'integer'",
        "  c.toml: connections.wrong_type.extra.iam: expected a boolean (true or false, not text)",
    ]


def test_a_faulted_field_is_not_reported_again_by_the_type_check(tmp_path: Path) -> None:
    """A field the schema faults gets no conn_type finding; the connection's other fields still do."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[connections.w]\nconn_type = "postgres"\nport = "5432"\nbogus = 1\nextra = { ssl_mode = "x" }\n'
    )
    validation = validate_config(path)
    assert [(f.path, f.severity) for f in validation.findings] == [
        ("connections.w", "error"),
        ("connections.w.port", "error"),
        ("connections.w.extra.ssl_mode", "warning"),
    ]


def test_one_finding_type_for_every_problem(tmp_path: Path) -> None:
    """Schema problems, conn_type findings and ValidationFailed share one public Finding type."""
    path = tmp_path / "c.toml"
    path.write_text('[connections.w]\nconn_type = "postgres"\nport = "x"\n')
    with pytest.raises(dc.ValidationFailed) as info:
        dc.load(path)
    assert info.value.findings == (
        Finding(path, "connections.w.port", "'x' is not of type 'integer'", "error"),
    )
    found = check_connection(load_type_rules(), "w", {"conn_type": "postgres", "extra": {"x": 1}}, file=path)
    assert found == [Finding(path, "connections.w.extra.x", "unknown for postgres", "warning")]
    assert dc.Finding is Finding
