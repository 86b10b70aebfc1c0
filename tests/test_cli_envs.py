"""`dconn envs`: every environment with its masked target, state and layers; --project either side."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from declarative_conns.cli import app
from tests.helpers import run_dconn

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "environments"
CANARY = "canary-envs-0b7e"

EXAMPLE_TEXT = """\

staging
  target:     database from_env STAGING_DB_URL
  fernet key: from_env STAGING_FERNET_KEY
  state:      .dconn/staging.json
  layers:     connections/, overlays/staging/
  vars:       env = "staging", warehouse_host = "wh-staging.internal", warehouse_port = 5433, data_bucket = "s3://analytics-staging"
  timeouts:   db 30 s

production
  target:     API https://airflow.example.com (token: from_env PROD_AIRFLOW_TOKEN)
  state:      .dconn/production.json
  layers:     connections/, overlays/production/
  vars:       env = "production", warehouse_host = "wh.internal", warehouse_port = 5432, data_bucket = "s3://analytics-prod"
  exclude:    *_sandbox
  timeouts:   api 60 s
"""


def invoke(*args: str) -> tuple[int, str, str]:
    """Run dconn in-process; return exit code, stdout and stderr."""
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "DCONN_ENV": None})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of examples/environments (so nothing in the repository is touched)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "project"))


def test_lists_the_example_project(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a project folder, `dconn envs` prints each environment's target, key, state, layers, vars."""
    monkeypatch.chdir(example / "overlays")  # found in a parent
    code, out, err = invoke("envs")
    assert (code, err) == (0, "")
    assert out == f"Project {example / 'dconn.toml'}: 2 environments\n" + EXAMPLE_TEXT


@pytest.mark.parametrize("before", [True, False])
def test_project_works_before_or_after_the_command(example: Path, before: bool) -> None:
    """`dconn --project X envs` and `dconn envs --project X` are the same."""
    args = (
        ["--project", str(example), "envs"] if before else ["envs", "--project", str(example / "dconn.toml")]
    )
    code, out, _ = invoke(*args)
    assert code == 0 and out.endswith(EXAMPLE_TEXT)


def test_project_given_twice_differently_is_an_error(example: Path, tmp_path: Path) -> None:
    """--project before and after the command naming two files is an error, not a silent choice."""
    code, out, err = invoke("--project", str(example), "envs", "--project", str(tmp_path / "other.toml"))
    assert (code, out) == (1, "")
    assert (
        err
        == f"Error: --project is given twice, as {example} and as {tmp_path / 'other.toml'}: give it once\n"
    )


def test_json_format(example: Path) -> None:
    """--format json prints one JSON document: project path and each environment's summary."""
    code, out, err = invoke("envs", "--project", str(example), "--format", "json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["project"] == str(example / "dconn.toml")
    staging, production = document["environments"]
    assert staging == {
        "name": "staging",
        "target": "database",
        "url": "from_env STAGING_DB_URL",
        "credentials": {},
        "fernet_key": "from_env STAGING_FERNET_KEY",
        "state": ".dconn/staging.json",
        "layers": ["connections/", "overlays/staging/"],
        "missing_layers": [],
        "vars": {
            "env": "staging",
            "warehouse_host": "wh-staging.internal",
            "warehouse_port": 5433,
            "data_bucket": "s3://analytics-staging",
        },
        "exclude": [],
        "timeouts": {"db": 30.0},
    }
    assert (production["target"], production["url"], production["credentials"]) == (
        "api",
        "https://airflow.example.com",
        {"token": "from_env PROD_AIRFLOW_TOKEN"},
    )


def test_unknown_format_is_an_error(example: Path) -> None:
    """An unknown --format is one Error: line and exit code 1."""
    code, out, err = invoke("envs", "--project", str(example), "--format", "yaml")
    assert (code, out, err) == (1, "", "Error: --format must be text or json, not 'yaml'\n")


def test_literal_secrets_are_masked_and_warned_about(tmp_path: Path) -> None:
    """Literal credentials never print: URLs masked, tokens hidden; each is a warning on stderr."""
    project = tmp_path / "dconn.toml"
    project.write_text(
        f'[environments.db]\nconfig = ["c"]\ndb_url = "postgresql://etl:{CANARY}@db:5432/airflow"\n'
        f'fernet_key = "{CANARY}"\nstate = "db:db"\n'
        f'[environments.api]\nconfig = ["c"]\napi_url = "https://airflow.example.com"\napi_username = "admin"\n'
        f'api_password = "{CANARY}"\n'
    )
    for fmt in ("text", "json"):
        code, out, err = invoke("envs", "--project", str(project), "--format", fmt)
        assert code == 0 and CANARY not in out + err
    code, out, err = invoke("envs", "--project", str(project))
    assert "  target:     database postgresql://etl:***@db:5432/airflow\n" in out
    assert "  fernet key: written in dconn.toml\n" in out
    assert "  state:      db:db (table dconn_state of the target database)\n" in out
    assert (
        "  target:     API https://airflow.example.com (username: admin, password: written in dconn.toml)\n"
        in out
    )
    assert err.count("Warning: ") == 5  # 3 literals, 2 missing layers
    assert "environments.db.db_url: the URL holds a password written in the file" in err


def test_missing_layers_are_marked_and_warned(tmp_path: Path) -> None:
    """A layer that does not exist is listed as (missing) and warned about; the listing still works."""
    (tmp_path / "base").mkdir()
    project = tmp_path / "dconn.toml"
    project.write_text('[environments.dev]\nconfig = ["base/", "overlays/dev.toml"]\n')
    code, out, err = invoke("envs", "--project", str(project))
    assert code == 0
    assert "  layers:     base/, overlays/dev.toml (missing)\n" in out
    assert (
        "  target:     not set (as without an environment: flags, DCONN_* variables, Airflow's settings)\n"
        in out
    )
    assert err == 'Warning: environment "dev": layer overlays/dev.toml does not exist\n'
    code, _, err = invoke("envs", "--project", str(project), "-q")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[environments.dev\n", r"dconn\.toml: invalid TOML: .*line 1, column \d+"),
        (
            "[environments.dev]\nconfig = []\n",
            r"the configuration has 1 problem:\n  .*dconn\.toml: environments\.dev\.config",
        ),
    ],
)
def test_bad_project_file_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    """A malformed or invalid dconn.toml exits 1 with an Error: naming the file."""
    project = tmp_path / "dconn.toml"
    project.write_text(text)
    code, out, err = invoke("envs", "--project", str(project))
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and re.search(message, err), err


def test_no_project_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a dconn.toml anywhere, envs says what to do in one line."""
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("envs")
    if "no dconn.toml" not in err:
        pytest.skip("a dconn.toml exists above the temporary directory")
    assert code == 1 and err.count("\n") == 1 and "create one, or pass --project FILE" in err


def test_help_lists_envs_after_validate() -> None:
    """`dconn --help` lists envs right after validate, and --project among the root options."""
    code, out, _ = invoke("--help")
    assert code == 0 and "--project" in out
    box = out[out.index("Commands") :]
    commands = [line.split()[1] for line in box.splitlines() if line.startswith("│ ") and line[2] != " "]
    assert commands.index("envs") == commands.index("validate") + 1


def test_real_process_both_spellings(example: Path, tmp_path: Path) -> None:
    """As users run it: both --project positions print the same listing, exit 0, no traceback."""
    before = run_dconn("--project", str(example), "envs", cwd=tmp_path)
    after = run_dconn("envs", "--project", str(example), cwd=tmp_path)
    assert before.returncode == after.returncode == 0
    assert before.stdout == after.stdout and before.stdout.endswith(EXAMPLE_TEXT)
    assert "Traceback" not in before.stderr + after.stderr
