"""dconn against real Airflow REST APIs (3.3 `/api/v2`, 2.11 `/api/v1`): plan, apply, drift, lock, errors.

Every test reads back what Airflow itself stores (its CLI decrypts it), and checks that no
secret of the configuration or of the credentials reaches any output or file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import run_dconn

if TYPE_CHECKING:
    from tests.airflow_servers import AirflowServer

pytest_plugins = ("tests.airflow_servers",)

CANARY_PW = "canary-pw-7f3a91"
CANARY_KEY = "canary-key-55e2c0"
CANARY_NEW = "canary-new-0b9d44"


@pytest.fixture(params=["airflow3_api", "airflow2_api"])
def server(request: pytest.FixtureRequest) -> Iterator[AirflowServer]:
    """Yield each real API server in turn, emptied first."""
    found: AirflowServer = request.getfixturevalue(request.param)
    found.clear()
    yield found


def env_for(server: AirflowServer, **extra: str) -> dict[str, str]:
    """Return the variables that point dconn at the server as its admin."""
    return {
        "DCONN_API_URL": server.base_url,
        "DCONN_API_USERNAME": server.admin_username,
        "DCONN_API_PASSWORD": server.admin_password,
        "WH_PASSWORD": CANARY_PW,
        **extra,
    }


def write_config(folder: Path, host: str = "db.internal", sslmode: str = "require", more: str = "") -> None:
    """Write a configuration with a secret password, a sensitive extra key and a plain connection."""
    (folder / "connections.toml").write_text(
        textwrap.dedent(
            f"""
            [connections.warehouse]
            conn_type = "postgres"
            host = "{host}"
            login = "etl"
            password = {{ from_env = "WH_PASSWORD" }}
            port = 5432
            extra = {{ sslmode = "{sslmode}", api_key = "{CANARY_KEY}" }}

            [connections.plain_http]
            conn_type = "http"
            host = "example.com"
            """
        )
        + more,
        encoding="utf-8",
    )


def read_back(server: AirflowServer, conn_id: str) -> dict[str, object] | None:
    """Return a connection as Airflow's own CLI decrypts it, None when it does not exist."""
    done = server.airflow("connections", "get", conn_id, "-o", "json", check=False)
    if done.returncode != 0:
        return None
    [row] = json.loads(done.stdout)
    return dict(row)


def set_outside(server: AirflowServer, conn_id: str, **columns: object) -> None:
    """Change a connection's columns behind dconn's back (clear text columns only)."""
    with sqlite3.connect(server.db_path) as db:
        for column, value in columns.items():
            db.execute(f"UPDATE connection SET {column} = ? WHERE conn_id = ?", (value, conn_id))


def set_password_outside(server: AirflowServer, conn_id: str, password: str) -> None:
    """Change a connection's password with Airflow's own CLI (it encrypts it)."""
    row = read_back(server, conn_id)
    assert row is not None
    server.airflow("connections", "delete", conn_id)
    document = {
        "conn_type": row["conn_type"],
        "host": row["host"],
        "login": row["login"],
        "port": int(str(row["port"])),
        "password": password,
        "extra": json.dumps(row["extra_dejson"]),
    }
    server.airflow("connections", "add", conn_id, "--conn-json", json.dumps(document))


def error_of(done: subprocess.CompletedProcess[str]) -> str:
    """Return the one `Error:` line of a run's stderr (warnings about the TOML may precede it)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def assert_no_secret(work: Path, *texts: str) -> None:
    """Fail when a secret appears in any file under the work folder (state, backups, plans)."""
    for path in work.rglob("*"):
        if path.is_file() and path.name != "connections.toml":
            content = path.read_text(encoding="utf-8", errors="replace")
            for text in texts:
                assert text not in content, f"{text} in {path}"


def test_apply_creates_what_airflow_reads_and_plans_no_changes(server: AirflowServer, tmp_path: Path) -> None:
    """An apply through the API stores exactly the declared values; the next plan has nothing to do."""
    write_config(tmp_path)
    env = env_for(server)
    plan = run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert plan.returncode == 2, plan.stderr
    prefix = "/api/v2" if server.major == 3 else "/api/v1"
    assert (
        f"Target: {server.base_url} (Airflow {server.version} REST API {prefix}, 0 connections)"
        in plan.stdout
    )
    assert "  + password      = (sensitive value)" in plan.stdout
    applied = run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed" in applied.stdout
    row = read_back(server, "warehouse")
    assert row is not None
    assert (row["host"], row["login"], row["password"], row["port"]) == (
        "db.internal",
        "etl",
        CANARY_PW,
        "5432",
    )
    assert row["extra_dejson"] == {"sslmode": "require", "api_key": CANARY_KEY}
    again = run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes. The connections match the configuration." in again.stdout
    assert "2 secret values are taken to be what dconn last sent and cannot be verified" in again.stdout
    for out in (plan, applied, again):
        for text in (CANARY_PW, CANARY_KEY, server.admin_password):
            assert text not in out.stdout + out.stderr
    assert_no_secret(tmp_path, CANARY_PW, CANARY_KEY, server.admin_password)
    state = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    assert state["target"]["identity"] == {"family": "api", "url": server.base_url}
    assert stat.S_IMODE((tmp_path / ".dconn" / "state.json").stat().st_mode) == 0o600


def test_unchanged_secret_is_not_sent_and_resend_sends_it(server: AirflowServer, tmp_path: Path) -> None:
    """A changed field is written without the unchanged password; --resend-secrets sends it again."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    set_password_outside(server, "warehouse", "rotated-outside")
    write_config(tmp_path, host="db2.internal")
    plan = run_dconn("plan", cwd=tmp_path, env=env)
    assert '  ~ host = "db.internal" -> "db2.internal"' in plan.stdout, plan.stdout
    assert "password" not in plan.stdout.split("will perform")[1]
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    row = read_back(server, "warehouse")
    assert row is not None and (row["host"], row["password"]) == ("db2.internal", "rotated-outside")
    resend = run_dconn("plan", "--resend-secrets", cwd=tmp_path, env=env)
    assert "  ~ password      = (sensitive value changed)" in resend.stdout, resend.stdout
    assert "  ~ extra.api_key = (sensitive value changed)" in resend.stdout
    done = run_dconn("apply", "--auto-approve", "--resend-secrets", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    row = read_back(server, "warehouse")
    assert row is not None and row["password"] == CANARY_PW


def test_changed_declared_secret_is_sent(server: AirflowServer, tmp_path: Path) -> None:
    """A password whose declared value changed is sent; a changed extra key sends the whole extra."""
    write_config(tmp_path)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env_for(server)).returncode == 0
    write_config(tmp_path, sslmode="verify-full")
    env = env_for(server, WH_PASSWORD=CANARY_NEW)
    plan = run_dconn("plan", cwd=tmp_path, env=env)
    assert "  ~ password      = (sensitive value changed)" in plan.stdout, plan.stdout
    assert '  ~ extra.sslmode = "require" -> "verify-full"' in plan.stdout
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    row = read_back(server, "warehouse")
    assert row is not None and row["password"] == CANARY_NEW
    assert row["extra_dejson"] == {"sslmode": "verify-full", "api_key": CANARY_KEY}
    assert run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0
    assert_no_secret(tmp_path, CANARY_PW, CANARY_NEW, CANARY_KEY)


def test_drift_outside_dconn_is_reported_and_reverted(server: AirflowServer, tmp_path: Path) -> None:
    """A host changed and a sensitive extra key removed outside dconn show as drift; apply reverts them."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    set_outside(server, "plain_http", host="changed.example.com")
    plan = run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert plan.returncode == 2
    assert "Note: objects have changed outside dconn since the last apply" in plan.stdout
    assert '  # connection "plain_http" was changed in Airflow' in plan.stdout
    assert '  ~ host = "example.com" -> "changed.example.com"' in plan.stdout
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    row = read_back(server, "plain_http")
    assert row is not None and row["host"] == "example.com"


def test_removed_connection_is_deleted_and_backed_up(server: AirflowServer, tmp_path: Path) -> None:
    """A managed connection no longer declared is deleted; its non-secret fields go to backups/."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "connections.toml").write_text(
        '[connections.plain_http]\nconn_type = "http"\nhost = "example.com"\n'
    )
    plan = run_dconn("plan", cwd=tmp_path, env=env)
    assert '  # connection "warehouse" will be destroyed (no longer in the configuration)' in plan.stdout
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    assert read_back(server, "warehouse") is None
    backups = sorted((tmp_path / ".dconn" / "backups").glob("*.json"))
    image = json.loads(backups[-1].read_text())["rows"]
    assert image == [
        {
            "kind": "connection",
            "key": "warehouse",
            "fields": {
                "conn_type": "postgres",
                "host": "db.internal",
                "login": "etl",
                "port": 5432,
                "extra": {"sslmode": "require"},
            },
            "hidden": ["password", "extra.api_key"] if server.major == 3 else ["extra.api_key", "password"],
        }
    ]


def test_lock_refuses_a_second_apply_and_force_unlock_removes_it(
    server: AirflowServer, tmp_path: Path
) -> None:
    """An apply waits --lock-timeout for a held lock, names its holder and changes nothing; force-unlock frees it."""
    from declarative_conns.targets.api import ApiTarget, resolve_api_settings

    write_config(tmp_path)
    env = env_for(server)
    settings = resolve_api_settings(None, environ=env)
    assert settings is not None
    holder = ApiTarget(settings)
    holder.open()
    holder.acquire_lock(1)
    try:
        refused = run_dconn("apply", "--auto-approve", "--lock-timeout", "1", cwd=tmp_path, env=env)
        assert refused.returncode == 1
        assert error_of(refused).startswith(
            f"Error: another dconn apply holds the lock on {server.base_url} (host "
        )
        assert f"process {os.getpid()}" in refused.stderr and "`dconn force-unlock`" in refused.stderr
        assert read_back(server, "warehouse") is None
        asked = run_dconn("force-unlock", cwd=tmp_path, env=env)
        assert asked.returncode == 1 and f"process {os.getpid()}" in asked.stdout
        freed = run_dconn("force-unlock", "--auto-approve", cwd=tmp_path, env=env)
        assert freed.returncode == 0 and "Lock removed." in freed.stdout
    finally:
        holder.close()
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    assert "No dconn lock is held" in run_dconn("force-unlock", cwd=tmp_path, env=env).stdout
    plan = run_dconn("plan", "-v", cwd=tmp_path, env=env)
    assert "dconn_lock" not in plan.stdout


def test_export_writes_placeholders_and_refuses_include_secrets(
    server: AirflowServer, tmp_path: Path
) -> None:
    """export through the API writes secrets as from_env references; --include-secrets is refused."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    exported = run_dconn("export", "-o", "exported.toml", cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    text = (tmp_path / "exported.toml").read_text()
    assert "[connections.warehouse]" in text and 'api_key = { from_env = "' in text
    assert CANARY_KEY not in text and "***" not in text
    refused = run_dconn("export", "--include-secrets", "-o", "x.toml", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert (
        "--include-secrets cannot work with" in refused.stderr
        and "never shows secret values" in refused.stderr
    )


def test_wrong_credentials_and_missing_permission_are_one_line(server: AirflowServer, tmp_path: Path) -> None:
    """Wrong credentials and a viewer's missing permission each give one Error: line, no secret in it."""
    write_config(tmp_path)
    wrong = run_dconn("plan", cwd=tmp_path, env=env_for(server, DCONN_API_PASSWORD="wrong-" + CANARY_NEW))
    assert wrong.returncode == 1
    assert error_of(wrong).startswith(
        f"Error: {server.base_url} refused the username and password"
    ) or error_of(wrong).startswith(f"Error: {server.base_url} refused the credentials"), wrong.stderr
    assert "check DCONN_API_USERNAME and DCONN_API_PASSWORD" in wrong.stderr
    viewer = env_for(
        server, DCONN_API_USERNAME=server.viewer_username, DCONN_API_PASSWORD=server.viewer_password
    )
    refused = run_dconn("plan", cwd=tmp_path, env=viewer)
    assert refused.returncode == 1
    assert error_of(refused).startswith("Error: the API user lacks the permission to read connections on ")
    for out in (wrong, refused):
        assert error_of(out)
        assert CANARY_NEW not in out.stderr and server.viewer_password not in out.stderr + out.stdout


def test_conn_id_the_api_refuses_is_a_plan_error(server: AirflowServer, tmp_path: Path) -> None:
    """A conn_id Airflow's API refuses (a colon) is reported at plan time; nothing is written."""
    write_config(tmp_path, more='\n[connections."db:main"]\nconn_type = "http"\n')
    plan = run_dconn("plan", cwd=tmp_path, env=env_for(server))
    assert plan.returncode == 1
    assert (
        'connection "db:main": Airflow\'s REST API takes a conn_id of letters, digits, _ . - only'
        in plan.stderr
    )
    assert read_back(server, "warehouse") is None


# ---------------------------------------------------------------- Airflow 3 only


def test_token_command_is_run_again_when_the_token_expired(
    airflow3_api: AirflowServer, tmp_path: Path
) -> None:
    """DCONN_API_TOKEN_CMD is run again once when Airflow 3 refuses its token as expired."""
    airflow3_api.clear()
    expired, fresh = airflow3_api.signed_token(-60), airflow3_api.signed_token(600)
    (tmp_path / "expired").write_text(expired)
    (tmp_path / "fresh").write_text(fresh)
    script = tmp_path / "print_token.py"
    script.write_text(
        "import pathlib, sys\n"
        "here = pathlib.Path(sys.argv[1])\n"
        "count = here / 'count'\n"
        "n = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(n + 1))\n"
        "print((here / ('expired' if n == 0 else 'fresh')).read_text())\n"
    )
    write_config(tmp_path)
    env = env_for(airflow3_api, DCONN_API_TOKEN_CMD=f"{sys.executable} {script} {tmp_path}")
    env.pop("DCONN_API_USERNAME")
    env.pop("DCONN_API_PASSWORD")
    plan = run_dconn("plan", cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    assert (tmp_path / "count").read_text() == "2"
    assert expired not in plan.stdout + plan.stderr and fresh not in plan.stdout + plan.stderr
    (tmp_path / "count").write_text("0")
    (tmp_path / "fresh").write_text(expired)  # both tokens refused: one Error: line
    refused = run_dconn("plan", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert "the token of DCONN_API_TOKEN_CMD was refused, also after running it again" in refused.stderr
    assert expired not in refused.stderr


def test_failure_part_way_says_what_was_written(airflow3_api: AirflowServer, tmp_path: Path) -> None:
    """An update the API refuses stops the apply after the creates; the error and the state say what was written."""
    server = airflow3_api
    server.clear()
    env = env_for(server)
    (tmp_path / "connections.toml").write_text('[connections.first]\nconn_type = "http"\nhost = "a"\n')
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    # team_name is refused by a server without multi-team mode: the update fails, the create before it stays.
    (tmp_path / "connections.toml").write_text(
        '[connections.first]\nconn_type = "http"\nhost = "a"\nteam_name = "nope"\n\n'
        '[connections.second]\nconn_type = "http"\nhost = "b"\n'
    )
    failed = run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert failed.returncode == 1
    assert "Error: the apply stopped at a failure: " in failed.stderr
    assert 'Written: created connection "second". Not written: updated connection "first".' in failed.stderr
    assert read_back(server, "second") is not None
    state = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    assert "second" in state["managed"]["connection"]
    (tmp_path / "connections.toml").write_text(
        '[connections.first]\nconn_type = "http"\nhost = "a"\n\n[connections.second]\nconn_type = "http"\nhost = "b"\n'
    )
    assert run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0


def test_saved_plan_applies_and_refuses_when_stale(airflow3_api: AirflowServer, tmp_path: Path) -> None:
    """A saved plan (DCONN_PLAN_KEY) applies as planned; a change in between makes it stale."""
    server = airflow3_api
    server.clear()
    write_config(tmp_path)
    config = tmp_path / "connections.toml"  # a literal secret needs a Fernet key to be saved: a reference
    config.write_text(config.read_text().replace(f'"{CANARY_KEY}"', '{ from_env = "WH_KEY" }'))
    env = env_for(server, DCONN_PLAN_KEY="shared-plan-key", WH_KEY=CANARY_KEY)
    assert run_dconn("plan", "--out", "plan.json", cwd=tmp_path, env=env).returncode == 0
    assert CANARY_PW not in (tmp_path / "plan.json").read_text()
    server.airflow("connections", "add", "plain_http", "--conn-type", "http", "--conn-host", "sneaky")
    stale = run_dconn("apply", "plan.json", cwd=tmp_path, env=env)
    assert stale.returncode == 1 and "the plan is stale" in stale.stderr
    assert read_back(server, "warehouse") is None
    server.airflow("connections", "delete", "plain_http")
    assert run_dconn("plan", "--out", "plan.json", cwd=tmp_path, env=env).returncode == 0
    done = run_dconn("apply", "plan.json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert read_back(server, "warehouse") is not None


# ---------------------------------------------------------------- no server


def test_unreachable_and_silent_servers_are_one_line(
    clean_env: Path, closed_port: int, silent_server: int
) -> None:
    """A refused connection and a server that never answers (--api-timeout) each give one Error: line."""
    write_config(clean_env)
    refused = run_dconn("plan", cwd=clean_env, env={"DCONN_API_URL": f"http://127.0.0.1:{closed_port}"})
    assert refused.returncode == 1
    assert (
        error_of(refused)
        == f"Error: cannot reach http://127.0.0.1:{closed_port}: [Errno 111] Connection refused"
    )
    silent = run_dconn(
        "plan",
        "--api-timeout",
        "1",
        cwd=clean_env,
        env={"DCONN_API_URL": f"http://127.0.0.1:{silent_server}"},
    )
    assert silent.returncode == 1
    assert error_of(silent) == (
        f"Error: http://127.0.0.1:{silent_server} did not answer GET /api/v2/version within 1 s (--api-timeout)"
    )


def test_database_and_api_together_is_an_error(clean_env: Path) -> None:
    """--db-url with DCONN_API_URL is refused; the URL's userinfo is never printed."""
    write_config(clean_env)
    both = run_dconn(
        "plan", "--db-url", "sqlite:///x.db", cwd=clean_env, env={"DCONN_API_URL": f"http://u:{CANARY_PW}@h"}
    )
    assert both.returncode == 1
    assert error_of(both) == (
        "Error: both a database (--db-url) and a REST API (--api-url or DCONN_API_URL) are given: pick one target"
    )
    assert CANARY_PW not in both.stderr


def test_variables_and_pools_through_the_api(server: AirflowServer, tmp_path: Path) -> None:
    """Variables (a table as JSON text, a secret) and pools (default_pool's slots) apply and read back."""
    (tmp_path / "connections.toml").write_text(
        textwrap.dedent(
            f"""
            [variables.bucket]
            value = "s3://analytics"
            description = "where"

            [variables.flags]
            value = {{ enabled = true, n = 3 }}

            [variables.slack_token]
            value = "{CANARY_NEW}"

            [pools.etl]
            slots = 8
            description = "ETL"

            [pools.default_pool]
            slots = 64
            """
        )
    )
    env = env_for(server)
    applied = run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "Resources: 4 added, 1 changed, 0 destroyed" in applied.stdout
    assert json.loads(server.airflow("variables", "get", "flags").stdout) == {"enabled": True, "n": 3}
    assert server.airflow("variables", "get", "slack_token").stdout.strip() == CANARY_NEW
    pools = {p["pool"]: p for p in json.loads(server.airflow("pools", "list", "-o", "json").stdout)}
    assert (pools["etl"]["slots"], pools["default_pool"]["slots"]) == ("8", "64")
    again = run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout
    assert "dconn_lock" not in again.stdout
    # Updates that leave the required fields (a variable's value, a pool's slots) unchanged.
    config = tmp_path / "connections.toml"
    config.write_text(
        config.read_text()
        .replace('"where"', '"where now"')
        .replace('"ETL"', '"ETL jobs"')
        .replace("[variables.slack_token]", '[variables.slack_token]\ndescription = "tok"')
    )
    changed = run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env)
    assert changed.returncode == 0, changed.stderr
    assert "Resources: 0 added, 3 changed, 0 destroyed" in changed.stdout
    assert server.airflow("variables", "get", "slack_token").stdout.strip() == CANARY_NEW
    pools = {p["pool"]: p for p in json.loads(server.airflow("pools", "list", "-o", "json").stdout)}
    assert (pools["etl"]["slots"], pools["etl"]["description"]) == ("8", "ETL jobs")
    assert run_dconn("plan", "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0
    assert_no_secret(tmp_path, CANARY_NEW)


def test_python_api_plans_and_applies_through_the_api(server: AirflowServer, tmp_path: Path) -> None:
    """The library's Workspace takes an ApiTarget: plan, apply, and a fresh plan without changes."""
    import declarative_conns as dc

    write_config(tmp_path)
    saved = dict(os.environ)
    os.environ.update(env_for(server))
    try:
        workspace = dc.Workspace.from_api_url(state_path=tmp_path / "state.json")
        with dc.plan(tmp_path / "connections.toml", workspace) as run:
            assert run.plan.summary.add == 2
            dc.apply(run)
        with dc.plan(tmp_path / "connections.toml", workspace) as run:
            assert not run.plan.summary.has_changes
            assert "cannot be verified" in run.render("text")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_restore_puts_back_what_the_api_allows(server: AirflowServer, tmp_path: Path) -> None:
    """restore re-creates a deleted connection and rewrites a changed one's fields; it names the secrets it cannot."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "connections.toml").write_text(
        '[connections.warehouse]\nconn_type = "postgres"\nhost = "db2.internal"\nlogin = "etl"\n'
        'password = { from_env = "WH_PASSWORD" }\nport = 5432\n'
    )
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    [backup] = [p for p in sorted((tmp_path / ".dconn" / "backups").glob("*.json")) if "serial" in p.name][
        -1:
    ]
    shown = run_dconn("restore", str(backup), cwd=tmp_path, env=env)
    assert shown.returncode == 1 and "Error: no terminal to ask for approval" in shown.stderr
    assert '  + connection "plain_http" will be created again' in shown.stdout
    assert '  ! connection "warehouse": password cannot be restored (the API never showed it)' in shown.stdout
    assert "extra held secrets the API never showed (extra.api_key); left as it is" in shown.stdout
    done = run_dconn("restore", "--auto-approve", str(backup), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "Restore complete: 2 objects written." in done.stdout
    plain = read_back(server, "plain_http")
    warehouse = read_back(server, "warehouse")
    assert plain is not None and plain["host"] == "example.com"
    assert warehouse is not None and (warehouse["host"], warehouse["password"]) == ("db.internal", CANARY_PW)
    assert_no_secret(tmp_path, CANARY_PW, CANARY_KEY)


def test_an_environment_of_dconn_toml_targets_the_api(airflow3_api: AirflowServer, tmp_path: Path) -> None:
    """An environment's api_url and credentials (secret references) are used; --api-url works as a flag too."""
    server = airflow3_api
    server.clear()
    (tmp_path / "connections").mkdir()
    write_config(tmp_path / "connections")
    (tmp_path / "dconn.toml").write_text(
        textwrap.dedent(
            f"""
            [environments.prod]
            api_url = "{server.base_url}"
            api_username = "{server.admin_username}"
            api_password = {{ from_env = "PROD_PASSWORD" }}
            state = ".dconn/prod.json"
            config = ["connections/"]
            api_timeout = 20
            """
        )
    )
    env = {"PROD_PASSWORD": server.admin_password, "WH_PASSWORD": CANARY_PW}
    applied = run_dconn("apply", "--env", "prod", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert (
        f"Target: {server.base_url} (Airflow {server.version} REST API /api/v2, 0 connections)"
        in applied.stdout
    )
    assert read_back(server, "warehouse") is not None
    flagged = run_dconn(
        "plan",
        "--api-url",
        server.base_url,
        "-c",
        "connections",
        "--state",
        ".dconn/prod.json",
        "--detailed-exitcode",
        cwd=tmp_path,
        env={**env, "DCONN_API_URL": "http://127.0.0.1:1"},
    )
    assert flagged.returncode == 0, flagged.stdout + flagged.stderr
    assert_no_secret(tmp_path, CANARY_PW, server.admin_password)


def test_tls_failure_and_a_private_ca_bundle(airflow3_api: AirflowServer, tmp_path: Path) -> None:
    """An https API with a private certificate is a one-line TLS error; DCONN_API_CA_BUNDLE makes it work."""
    from tests.tls_proxy import TlsProxy, self_signed

    server = airflow3_api
    server.clear()
    cert, key = self_signed(tmp_path)
    proxy = TlsProxy(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])), cert, key)
    try:
        write_config(tmp_path)
        env = env_for(server, DCONN_API_URL=f"https://127.0.0.1:{proxy.port}")
        refused = run_dconn("plan", cwd=tmp_path, env=env)
        assert refused.returncode == 1
        assert error_of(refused).startswith(f"Error: TLS failure talking to https://127.0.0.1:{proxy.port}: ")
        assert error_of(refused).endswith(
            "set DCONN_API_CA_BUNDLE (or SSL_CERT_FILE) to its certificate bundle"
        )
        trusted = run_dconn("plan", cwd=tmp_path, env={**env, "DCONN_API_CA_BUNDLE": str(cert)})
        assert trusted.returncode == 0, trusted.stderr
        assert (
            f"Target: https://127.0.0.1:{proxy.port} (Airflow {server.version} REST API /api/v2"
            in trusted.stdout
        )
    finally:
        proxy.close()


def test_removing_a_password_is_refused_at_plan_time(server: AirflowServer, tmp_path: Path) -> None:
    """Airflow's API ignores an empty password, so a plan that removes one fails, saying so (nothing written)."""
    write_config(tmp_path)
    env = env_for(server)
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    config = tmp_path / "connections.toml"
    config.write_text(config.read_text().replace('password = { from_env = "WH_PASSWORD" }\n', ""))
    plan = run_dconn("plan", cwd=tmp_path, env=env)
    assert plan.returncode == 1
    assert 'connection "warehouse": Airflow\'s REST API cannot remove a password' in plan.stderr
    row = read_back(server, "warehouse")
    assert row is not None and row["password"] == CANARY_PW
