"""examples/environments and the CI examples for several environments, run as users and CI run them.

The GitHub and GitLab files are parsed as the services do, and their shell steps are run under
`bash -eo pipefail` against two real SQLite deployments declared in one dconn.toml.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AirflowDb
from tests.helpers import run_dconn
from tests.test_cli_environments import CANARY, write_project
from tests.test_drift import load_yaml, run_ci_script

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples/ci/github-actions-environments.yml"
GITLAB = ROOT / "examples/ci/gitlab-ci-environments.yml"
EXAMPLE = ROOT / "examples/environments"


@pytest.fixture
def project(make_db: Any, tmp_path: Path) -> tuple[Path, dict[str, str], AirflowDb, AirflowDb]:
    """A checkout with dconn.toml for two SQLite deployments, and the variables CI would set."""
    staging, prod = make_db("sqlite", "2.x"), make_db("sqlite", "2.x")
    folder = tmp_path / "checkout"
    folder.mkdir()
    write_project(folder, staging, prod)
    env = {
        "STAGING_KEY": staging.fernet_key,
        "PROD_KEY": prod.fernet_key,
        "PROD_DB_URL": prod.url,
        "WH_PASSWORD": CANARY,
    }
    return folder, env, staging, prod


def github_step(job: str, name: str) -> str:
    """Return the `run:` script of a named step of the environments workflow."""
    (found,) = [s["run"] for s in load_yaml(GITHUB)["jobs"][job]["steps"] if s.get("name") == name]
    return str(found)


def gitlab_script(job: str, variables: dict[str, str] | None = None) -> str:
    """Return a GitLab job's script (a hidden template's for `.plan`/`.apply`) as one shell script."""
    return "\n".join(load_yaml(GITLAB)[job]["script"]) + "\n"


def test_github_workflow_wires_validate_plan_approved_apply_and_nightly() -> None:
    """validate --all-envs on PRs; an apply job per changed environment behind its GitHub environment; nightly --all-envs."""
    workflow = load_yaml(GITHUB)
    triggers = workflow[True]  # YAML 1.1 reads `on` as true
    assert triggers["schedule"][0]["cron"] == "23 4 * * *" and triggers["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["validate"]["steps"][-1]["run"] == "dconn validate --all-envs"
    apply = jobs["apply"]
    assert apply["needs"] == "plan" and apply["environment"] == "airflow-${{ matrix.env }}"
    assert apply["strategy"]["matrix"]["env"] == "${{ fromJSON(needs.plan.outputs.changed) }}"
    assert 'dconn apply "plan-${{ matrix.env }}.json" --env "${{ matrix.env }}"' in GITHUB.read_text()
    assert "dconn plan --all-envs --detailed-exitcode" in github_step(
        "drift", "dconn plan --all-envs --detailed-exitcode"
    )
    assert workflow["permissions"] == {"contents": "read"}


def test_gitlab_pipeline_wires_one_plan_and_manual_apply_per_environment() -> None:
    """plan:NAME and a manual apply:NAME needing it, per environment; the schedule runs --all-envs."""
    pipeline = load_yaml(GITLAB)
    assert pipeline["stages"] == ["validate", "plan", "apply"]
    for name in ("staging", "production"):
        assert pipeline[f"plan:{name}"]["variables"] == {"DCONN_ENV": name}
        apply = pipeline[f"apply:{name}"]
        assert apply["needs"] == [f"plan:{name}"] and apply["environment"] == {"name": f"airflow-{name}"}
    assert pipeline[".apply"]["rules"][0]["when"] == "manual"
    assert pipeline["drift"]["rules"][0] == {"if": '$CI_PIPELINE_SOURCE == "schedule"'}
    assert "dconn plan --all-envs --detailed-exitcode" in gitlab_script("drift")


def test_github_plan_step_lists_the_changed_environments_and_apply_applies_each(project: Any) -> None:
    """The plan step outputs changed=[...] with a plan file each; the apply step applies it; then changed=[]."""
    folder, env, staging, prod = project
    summary, output = folder / "summary.md", folder / "output.txt"
    ci = {**env, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    script = github_step("plan", "dconn plan --env NAME --out plan-NAME.json, every environment")
    result = run_ci_script(script, folder, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output.read_text() == 'changed=["staging","prod"]\n'
    assert "## Environment `staging`" in summary.read_text() and CANARY not in summary.read_text()
    changed = json.loads(output.read_text().partition("=")[2])
    apply = github_step("apply", "dconn apply plan-NAME.json --env NAME")
    for name in changed:
        result = run_ci_script(apply.replace("${{ matrix.env }}", name), folder, env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(staging.rows()) == 2 and len(prod.rows()) == 1
    output.write_text("")
    assert run_ci_script(script, folder, ci).returncode == 0
    assert output.read_text() == "changed=[]\n" and not list(folder.glob("plan-*.json"))
    down = run_ci_script(script, folder, {**ci, "PROD_DB_URL": f"sqlite:///{folder / 'missing.db'}"})
    assert down.returncode == 1 and "Error: " in down.stderr


def test_nightly_steps_exit_2_on_drift_1_on_a_failed_environment_0_when_clean(project: Any) -> None:
    """GitHub's and GitLab's nightly scripts: 2 changes, 0 clean, 1 when an environment fails (others reported)."""
    folder, env, staging, _ = project
    summary = folder / "summary.md"
    ci = {**env, "GITHUB_STEP_SUMMARY": str(summary)}
    scripts = [github_step("drift", "dconn plan --all-envs --detailed-exitcode"), gitlab_script("drift")]
    for script in scripts:
        assert run_ci_script(script, folder, ci).returncode == 2
    assert summary.read_text().startswith("## dconn plan: every environment")
    for name in ("staging", "prod"):
        assert run_dconn("apply", "--env", name, "--auto-approve", cwd=folder, env=env).returncode == 0
    for script in scripts:
        result = run_ci_script(script, folder, ci)
        assert result.returncode == 0, result.stdout + result.stderr
    with staging.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE connection SET host = 'hand-edited' WHERE conn_id = 'warehouse'")
    for script in scripts:
        assert run_ci_script(script, folder, ci).returncode == 2
    broken = {**ci, "PROD_KEY": "not-a-key"}
    for script in scripts:
        result = run_ci_script(script, folder, broken)
        assert result.returncode == 1
    assert "Changed outside dconn" in (folder / "drift.md").read_text()


def test_gitlab_plan_and_manual_apply_per_environment(project: Any) -> None:
    """.plan with DCONN_ENV writes that environment's plan file; .apply applies it to that deployment only."""
    folder, env, staging, prod = project
    result = run_ci_script(gitlab_script(".plan"), folder, {**env, "DCONN_ENV": "prod"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (folder / "plan-prod.json").is_file() and "### dconn plan" in result.stdout
    result = run_ci_script(gitlab_script(".apply"), folder, {**env, "DCONN_ENV": "prod"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["conn_id"] for r in prod.rows()] == ["warehouse"] and staging.rows() == []


def test_example_project_validates_and_plans(make_db: Any, tmp_path: Path) -> None:
    """examples/environments: both environments valid; staging plans and applies on a real database.

    Its production environment targets a REST API whose token is not set here: plan
    --all-envs reports staging and says so for production (exit 1).
    """
    db = make_db("sqlite", "2.x")
    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "project"))
    result = run_dconn("validate", "--all-envs", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'Valid: environment "staging": 4 connections in 4 files.\n'
        'Valid: environment "production": 3 connections in 5 files.\n'
    )
    env = {
        "STAGING_DB_URL": db.url,
        "STAGING_FERNET_KEY": db.fernet_key,
        "WAREHOUSE_PASSWORD": CANARY,
        "SANDBOX_PASSWORD": CANARY,
        "SLACK_WEBHOOK_TOKEN": CANARY,
    }
    result = run_dconn("apply", "--env", "staging", "--auto-approve", cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["conn_id"]: r for r in db.rows()}
    assert sorted(rows) == ["aws_analytics", "slack_alerts", "warehouse", "warehouse_sandbox"]
    assert (rows["warehouse"]["host"], rows["warehouse"]["port"]) == ("wh-staging.internal", 5433)
    result = run_dconn("plan", "--all-envs", "--detailed-exitcode", cwd=folder, env=env)
    assert result.returncode == 1
    assert "No changes." in result.stdout.split('Environment "production"')[0]
    assert (
        "Error: environment variable PROD_AIRFLOW_TOKEN is not set"
        in result.stdout.split('Environment "production"')[1]
    )
    assert result.stdout.endswith("2 environments: 1 without changes (staging); 1 failed (production).\n")
    assert CANARY not in result.stdout + result.stderr
