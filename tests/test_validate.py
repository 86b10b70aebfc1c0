"""dconn validate as one report: every problem of every file at once, as lines or as JSON."""

from __future__ import annotations

import json
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
BROKEN = '[connections.broken\nconn_type = "http"\n'


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


def test_json_lists_every_problem_with_file_path_message_and_severity(tmp_path: Path) -> None:
    """--format json: one document, every problem of every file (a syntax error too); exit 1."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.toml").write_text(MIXED)
    (tmp_path / "conf" / "b.toml").write_text(BROKEN)
    result = dconn("validate", "-c", "conf", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ""
    a, b = str(Path("conf", "a.toml")), str(Path("conf", "b.toml"))
    assert json.loads(result.stdout) == {
        "problems": [
            {
                "file": a,
                "path": "connections.bad_json.extra_json",
                "message": "not valid JSON (Expecting ',' delimiter at line 1, column 36)",
                "severity": "error",
            },
            {
                "file": a,
                "path": "connections.schema_error.port",
                "message": "'abc' is not of type 'integer'",
                "severity": "error",
            },
            {
                "file": b,
                "path": "",
                "message": "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 20)",
                "severity": "error",
            },
            {
                "file": a,
                "path": "connections.schema_error.extra.verfy",
                "message": "unknown for http (sent as an HTTP header); did you mean 'verify'?",
                "severity": "warning",
            },
            {
                "file": a,
                "path": "connections.wrong_type.extra.iam",
                "message": "expected a boolean (true or false, not text)",
                "severity": "error",
            },
            {
                "file": a,
                "path": "connections.mine.conn_type",
                "message": "unknown connection type 'acme_crm'; its fields and extras are not checked",
                "severity": "warning",
            },
            {
                "file": a,
                "path": "connections.aws_default",
                "message": 'connection "aws_default" matches an ignore pattern but is declared, '
                "so dconn manages it",
                "severity": "warning",
            },
        ],
        "valid": False,
    }
    assert CANARY not in result.stdout


def test_json_of_a_valid_configuration(tmp_path: Path) -> None:
    """A valid configuration: valid true, its warnings listed, exit 0; --strict makes them errors."""
    (tmp_path / "c.toml").write_text('[connections.a]\nconn_type = "postgres"\nextra = { ssl_mode = "x" }\n')
    result = dconn("validate", "-c", "c.toml", "--format", "json", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    warning = {
        "file": "c.toml",
        "path": "connections.a.extra.ssl_mode",
        "message": "unknown for postgres; did you mean 'sslmode'?",
        "severity": "warning",
    }
    assert json.loads(result.stdout) == {"problems": [warning], "valid": True}
    strict = dconn("validate", "-c", "c.toml", "--format", "json", "--strict", cwd=tmp_path)
    assert strict.returncode == 1
    assert json.loads(strict.stdout) == {"problems": [{**warning, "severity": "error"}], "valid": False}
    (tmp_path / "c.toml").write_text('[connections.a]\nconn_type = "http"\n')
    clean = dconn("validate", "-c", "c.toml", "--format", "json", cwd=tmp_path)
    assert (clean.returncode, json.loads(clean.stdout)) == (0, {"problems": [], "valid": True})


def test_json_format_is_checked_and_missing_files_are_errors(tmp_path: Path) -> None:
    """--format yaml and a missing -c path are one Error line each, nothing on stdout."""
    bad = dconn("validate", "--format", "yaml", cwd=tmp_path)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "Error: --format must be text or json, not 'yaml'\n"
    missing = dconn("validate", "--format", "json", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("Error: connections.toml: no such file")


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


def test_findings_as_json_never_name_a_note(tmp_path: Path) -> None:
    """In JSON a note is a warning (CONTRACT §13 knows error and warning); its text is kept."""
    note = Finding(tmp_path / "c.toml", "connections.a.conn_type", "unknown connection type 'x'", "note")
    assert note.to_json() == {
        "file": str(tmp_path / "c.toml"),
        "path": "connections.a.conn_type",
        "message": "unknown connection type 'x'",
        "severity": "warning",
    }
