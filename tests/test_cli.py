"""The dconn command as users run it: real subprocesses, exit codes and the lines they read."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import declarative_conns as dc
from declarative_conns.config.resources import load_schema
from tests.airflow_tables import insert_raw
from tests.helpers import run_dconn

CANARY = "canary-cli-9d2e"
DOC = """
[settings]
ignore = ["*_default"]

[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
password = { from_env = "WH_PASSWORD" }
port = 5432

[connections.slack]
conn_type = "http"
host = "hooks.slack.com"
extra = { webhook_token = { from_env = "WH_PASSWORD" }, timeout = 5 }
"""


def dconn(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run dconn in a subprocess with a clean environment and the canary password set."""
    return run_dconn(*args, cwd=cwd, env={"WH_PASSWORD": CANARY, **(env or {})}, stdin=stdin, timeout=60)


@pytest.fixture
def project(make_db: Any, tmp_path: Path) -> tuple[Path, dict[str, str], Any]:
    """A folder with connections.toml and an Airflow 2.x SQLite database holding legacy rows."""
    db = make_db("sqlite", "2.x-nounique")
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "warehouse", "conn_type": "postgres", "host": "old.internal", "port": 5432},
            {"conn_id": "warehouse", "conn_type": "postgres", "host": "dupe"},
            {"conn_id": "aws_default", "conn_type": "aws"},
            {"conn_id": "old_ftp", "conn_type": "ftp", "host": "ftp.example.com"},
        ],
    )
    (tmp_path / "connections.toml").write_text(DOC)
    return tmp_path, {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}, db


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """No secret and no traceback in anything printed."""
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help(tmp_path: Path) -> None:
    """--version prints the version; every command has --help; all exit 0."""
    result = dconn("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("dconn ")
    for command in ("validate", "plan", "apply"):
        assert dconn(command, "--help", cwd=tmp_path).returncode == 0


def test_version_alone_loads_no_command_line() -> None:
    """`dconn --version` is answered before typer, the commands or SQLAlchemy are imported."""
    code = (
        "import sys\nfrom declarative_conns.console import main\nsys.argv = ['dconn', '--version']\nmain()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('typer', 'declarative_conns.cli', 'sqlalchemy'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [f"dconn {dc.__version__}", "[]"]


def test_plan_prints_the_plan(project: Any) -> None:
    """plan shows target, actions with Terraform symbols, duplicates and the summary line."""
    cwd, env, _ = project
    result = dconn("plan", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"Target: sqlite:///{cwd}")
    assert '  # connection "slack" will be created\n  + conn_type           = "http"\n' in out
    assert "  + extra.webhook_token = (sensitive value)\n" in out
    assert '  ~ host     = "old.internal" -> "wh.internal"\n' in out
    assert "  + password = (sensitive value)\n" in out
    assert (
        '  # connection "warehouse" has 2 rows: row 1 is kept, duplicate row 2 will be destroyed\n  - row 2\n'
        in out
    )
    assert "0 connections unchanged, 1 unmanaged (-v lists them), 1 ignored.\n" in out
    assert out.endswith("Plan: 1 to add, 1 to change, 1 to destroy (1 duplicate row).\n")
    assert_clean(result)
    assert (cwd / ".dconn" / "state.json").exists()


def test_detailed_exitcode_and_full_cycle(project: Any) -> None:
    """--detailed-exitcode gives 2 with changes; after apply, 0 and 'No changes.'."""
    cwd, env, _ = project
    assert dconn("plan", "--detailed-exitcode", cwd=cwd, env=env).returncode == 2
    applied = dconn("apply", "--auto-approve", cwd=cwd, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete! Resources: 1 added, 1 changed, 1 destroyed (3 rows).\n" in applied.stdout
    again = dconn("plan", "--detailed-exitcode", cwd=cwd, env=env)
    assert again.returncode == 0
    assert again.stdout.endswith("No changes. The connections match the configuration.\n")
    assert "Unmanaged: old_ftp\n" in dconn("plan", "-v", cwd=cwd, env=env).stdout
    assert_clean(applied)


def test_json_plan_is_one_valid_document(project: Any) -> None:
    """--format json prints one JSON document, valid against schemas/plan.schema.json."""
    cwd, env, _ = project
    result = dconn("plan", "--format", "json", cwd=cwd, env=env)
    document = json.loads(result.stdout)
    Draft202012Validator(load_schema("plan.schema.json")).validate(document)
    assert document["summary"] == {
        "add": 1,
        "change": 1,
        "destroy": 1,
        "duplicates": 1,
        "unchanged": 0,
        "unmanaged": 1,
        "ignored": 1,
        "has_changes": True,
    }
    assert_clean(result)


def test_markdown_plan(project: Any) -> None:
    """--format markdown gives a report with the summary and a table of actions."""
    cwd, env, _ = project
    result = dconn("plan", "--format", "markdown", cwd=cwd, env=env)
    assert result.stdout.startswith(
        "### dconn plan\n\n**Plan: 1 to add, 1 to change, 1 to destroy (1 duplicate row).**\n"
    )
    assert (
        "| + | connection `slack` | create |  | `conn_type`, `host`, `extra.timeout`, `extra.webhook_token` (sensitive) |"
        in result.stdout
    )
    assert_clean(result)


def test_apply_without_terminal_refuses(project: Any) -> None:
    """Without a terminal and without --auto-approve apply refuses, exit 1, nothing changed."""
    cwd, env, db = project
    before = db.rows()
    result = dconn("apply", cwd=cwd, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: no terminal to ask for approval: pass --auto-approve"
    )
    assert db.rows() == before


@pytest.mark.parametrize(("answer", "code"), [("yes", 0), ("y", 1)])
def test_apply_asks_and_only_yes_proceeds(project: Any, answer: str, code: int) -> None:
    """On a terminal apply asks; only 'yes' applies, anything else cancels."""
    cwd, env, db = project
    before = db.rows()
    leader, follower = pty.openpty()
    os.write(leader, f"{answer}\n".encode())
    result = dconn("apply", cwd=cwd, env=env, stdin=follower)
    os.close(leader)
    os.close(follower)
    assert result.returncode == code, result.stderr
    assert "Only 'yes' will be accepted to approve." in result.stderr
    if code:
        assert "Error: apply cancelled; nothing was changed" in result.stderr
        assert db.rows() == before
    else:
        assert db.rows() != before


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"connections.toml": "[connections.a\n"}, ["plan"], "Error: connections.toml: invalid TOML: "),
        (
            {"connections.toml": '[connections.a]\nconn_type = "http"\n'},
            ["plan", "--db-url", "sqlite:///missing.db"],
            "Error: database file ",
        ),
        (
            {"connections.toml": '[connections.a]\nconn_type = "http"\n'},
            ["plan", "--fernet-key", "not-a-key"],
            "Error: Fernet key #1 is not a valid Fernet key",
        ),
        (
            {
                "connections.toml": '[connections.a]\nconn_type = "http"\npassword = { from_env = "NOPE_UNSET" }\n'
            },
            ["plan"],
            'Error: could not resolve connection "a" field password: environment variable NOPE_UNSET is not set',
        ),
        ({}, ["validate"], "Error: connections.toml: no such file"),
        (
            {"connections.toml": '[connections.a]\nconn_type = "http"\n'},
            ["plan", "--format", "yaml"],
            "Error: --format must be text, json or markdown",
        ),
        (
            {"connections.toml": '[connections.a]\nconn_type = "http"\n'},
            ["plan", "--db-url", "postgresql://u:" + CANARY + "@127.0.0.1:1/x"],
            "Error: cannot read postgresql://u:***@127.0.0.1:1/x: ",
        ),
    ],
)
def test_errors_are_one_line_exit_1(
    project: Any, files: dict[str, str], args: list[str], message: str
) -> None:
    """Bad input of every kind: one Error line on stderr, exit 1, nothing on stdout, no traceback."""
    cwd, env, db = project
    (cwd / "connections.toml").unlink()
    for name, text in files.items():
        (cwd / name).write_text(text)
    before = db.rows()
    result = dconn(*args, cwd=cwd, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""
    assert_clean(result)
    assert db.rows() == before
    assert not (cwd / ".dconn" / "state.json").exists()


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    """validate lists each problem with file and path and exits 1; a valid file exits 0."""
    (tmp_path / "connections.toml").write_text(
        '[connections.a]\nport = "abc"\nconn_type = "http"\n[connections.b]\nconn_type = 1\n'
    )
    result = dconn("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: the configuration has 2 problems:",
        "  connections.toml: connections.a.port: 'abc' is not of type 'integer'",
        "  connections.toml: connections.b.conn_type: 1 is not of type 'string'",
    ]
    (tmp_path / "connections.toml").write_text(
        '[connections.a]\nconn_type = "http"\npassword = { from_env = "UNSET_IN_PR_CI" }\n'
    )
    ok = dconn("validate", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == "Valid: 1 connection in 1 file.\n"


def test_debug_shows_traceback_without_secrets(project: Any) -> None:
    """--debug adds the traceback, still without any secret."""
    cwd, env, _ = project
    result = dconn("plan", "--debug", "--db-url", f"postgresql://u:{CANARY}@127.0.0.1:1/x", cwd=cwd, env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert CANARY not in result.stderr + result.stdout


def test_core_imports_no_adapters() -> None:
    """The pure core (model, diff, render) imports no SQLAlchemy, typer or rich."""
    code = (
        "import sys; import declarative_conns.core.model, declarative_conns.core.diff, declarative_conns.output.text;"
        "bad = [m for m in ('sqlalchemy', 'typer', 'rich') if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["plan", "--formt", "json"],
            "Error: No such option: --formt (Possible options: --format, --out) (see `dconn plan --help`)",
        ),
        (["restore"], "Error: Missing argument 'backup'. (see `dconn restore --help`)"),
        (["plna"], "Error: No such command 'plna'. Did you mean 'plan'? (see `dconn --help`)"),
        (
            ["plan", "--lock-timeout", "soon"],
            "Error: Invalid value for '--lock-timeout': 'soon' is not a valid float. (see `dconn plan --help`)",
        ),
    ],
)
def test_usage_errors_are_one_error_line(tmp_path: Path, args: list[str], line: str) -> None:
    """A mistyped option, command or value: one Error line with click's suggestion, exit 1."""
    result = dconn(*args, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [line]


def test_dconn_without_arguments_prints_its_help(tmp_path: Path) -> None:
    """`dconn` alone still prints the help listing the commands."""
    result = dconn(cwd=tmp_path, env={"COLUMNS": "200"})
    assert "Usage: dconn [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "validate" in result.stdout and "restore" in result.stdout
    assert "Error" not in result.stderr


@pytest.mark.parametrize("given", ["connections.toml", "conf"])
def test_apply_of_a_configuration_suggests_dash_c(project: Any, given: str) -> None:
    """`dconn apply connections.toml` (or a folder) says it is no plan file and suggests -c."""
    cwd, env, db = project
    (cwd / "conf").mkdir()
    before = db.rows()
    result = dconn("apply", given, cwd=cwd, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: {given} is a configuration, not a plan saved with `dconn plan --out`: "
        f"to plan it and apply, run `dconn apply -c {given}`"
    ]
    assert db.rows() == before


def test_restore_without_terminal_does_not_suggest_a_plan(project: Any) -> None:
    """restore without a terminal asks for --auto-approve; apply's `plan --out` is not its advice."""
    cwd, env, db = project
    assert dconn("apply", "--auto-approve", cwd=cwd, env=env).returncode == 0
    (backup,) = (cwd / ".dconn" / "backups").iterdir()
    before = db.rows()
    result = dconn("restore", str(backup), cwd=cwd, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: no terminal to ask for approval: pass --auto-approve; nothing was changed"
    )
    assert db.rows() == before


def _help_texts() -> list[tuple[str, str]]:
    """Return (command, help text) of every option and argument of every command."""
    import typer

    from declarative_conns.cli import app

    group = typer.main.get_command(app)
    return [
        (name, param.help)
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        if getattr(param, "help", None)
    ]


@pytest.mark.parametrize(
    ("command", "text"), [(c, t) for c, t in _help_texts() if "[" in t], ids=lambda v: str(v)[:30]
)
def test_bracketed_words_in_help_are_printed(tmp_path: Path, command: str, text: str) -> None:
    """A help text with [brackets] (`[settings]`) prints them; rich markup does not eat them."""
    shown = text.replace("\\[", "[")
    result = dconn(command, "--help", cwd=tmp_path, env={"COLUMNS": "300"})
    printed = " ".join(result.stdout.replace("│", " ").split())
    assert " ".join(shown.split()) in printed


def test_strict_help_names_the_settings_table(tmp_path: Path) -> None:
    """--strict's help says `strict = true in [settings]`, brackets included."""
    result = dconn("validate", "--help", cwd=tmp_path, env={"COLUMNS": "300"})
    assert "strict = true in [settings]." in result.stdout


def test_counts_agree_with_their_nouns(make_db: Any, tmp_path: Path) -> None:
    """One row, one connection, one file: singular; never '1 rows'."""
    db = make_db("sqlite", "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": "aws_default", "conn_type": "aws"}])
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}
    (tmp_path / "connections.toml").write_text('[connections.aws_default]\nconn_type = "aws"\nhost = "x"\n')
    applied = dconn("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed (1 row).\n" in applied.stdout
    assert dconn("validate", cwd=tmp_path).stdout == "Valid: 1 connection in 1 file.\n"
    (backup,) = (tmp_path / ".dconn" / "backups").iterdir()
    restored = dconn("restore", str(backup), "--auto-approve", cwd=tmp_path, env=env)
    assert "Restore complete: 1 row written." in restored.stdout
    assert db.rows()[0]["host"] in (None, "")
