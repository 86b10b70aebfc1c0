"""Tests for `dconn convert`: Airflow's own connection files and AIRFLOW_CONN_* into a dconn document."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import pytest
import yaml
from typer.testing import CliRunner

from declarative_conns import __version__
from declarative_conns.cli import app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CANARY = "canary-c0nv3rt-"

#: Connections as Airflow's Connection objects hold them (extra as JSON text).
AIRFLOW_CONNS: dict[str, dict[str, Any]] = {
    "my_pg": {
        "conn_type": "postgres",
        "description": "Warehouse",
        "login": "etl",
        "password": CANARY + "pg/@:?",
        "host": "db.internal",
        "port": 5432,
        "schema": "analytics",
        "extra": json.dumps({"sslmode": "require"}),
    },
    "slack.alerts": {
        "conn_type": "http",
        "description": None,
        "login": None,
        "password": None,
        "host": "hooks.slack.com",
        "port": None,
        "schema": None,
        "extra": json.dumps(
            {
                "webhook_token": CANARY + "tok",
                "timeout": 10,
                "retry": {"codes": [500, 502], "backoff": 1.5, "jitter": False},
            }
        ),
    },
    "nulls": {
        "conn_type": "http",
        "description": None,
        "login": None,
        "password": None,
        "host": "h",
        "port": None,
        "schema": None,
        "extra": json.dumps({"a": None, "b": [1, None]}),
    },
    "gcp": {
        "conn_type": "google_cloud_platform",
        "description": None,
        "login": None,
        "password": None,
        "host": None,
        "port": None,
        "schema": None,
        "extra": json.dumps({"keyfile_dict": {"private_key": CANARY + "pk", "n": 1}, "project": "p"}),
    },
}

#: What the converted document declares for each, references in place of secrets.
EXPECTED: dict[str, dict[str, Any]] = {
    "my_pg": {
        "conn_type": "postgres",
        "description": "Warehouse",
        "host": "db.internal",
        "schema": "analytics",
        "login": "etl",
        "password": {"from_env": "MY_PG_PASSWORD"},
        "port": 5432,
        "extra": {"sslmode": "require"},
    },
    "slack.alerts": {
        "conn_type": "http",
        "host": "hooks.slack.com",
        "extra": {
            "webhook_token": {"from_env": "SLACK_ALERTS_EXTRA_WEBHOOK_TOKEN"},
            "timeout": 10,
            "retry": {"codes": [500, 502], "backoff": 1.5, "jitter": False},
        },
    },
    "nulls": {"conn_type": "http", "host": "h", "extra_json": '{"a":null,"b":[1,null]}'},
    "gcp": {
        "conn_type": "google_cloud_platform",
        "extra": {
            "keyfile_dict": {"private_key": {"from_env": "GCP_EXTRA_KEYFILE_DICT_PRIVATE_KEY"}, "n": 1},
            "project": "p",
        },
    },
}

SECRETS = {
    "MY_PG_PASSWORD": CANARY + "pg/@:?",
    "SLACK_ALERTS_EXTRA_WEBHOOK_TOKEN": CANARY + "tok",
    "GCP_EXTRA_KEYFILE_DICT_PRIVATE_KEY": CANARY + "pk",
}


def airflow_uri(conn: Mapping[str, Any]) -> str:
    """Return the URI Airflow's Connection.get_uri writes for a connection (2.x/3.x)."""
    uri = f"{conn['conn_type'].lower().replace('_', '-')}://"
    authority = ""
    if conn["login"] is not None:
        authority += quote(conn["login"], safe="")
    if conn["password"] is not None:
        authority += ":" + quote(conn["password"], safe="")
    if authority:
        uri += authority + "@"
    host = quote(conn["host"], safe="") if conn["host"] else ""
    if conn["port"]:
        host += f"@:{conn['port']}" if not host and not authority else f":{conn['port']}"
    if conn["schema"]:
        host += f"/{quote(conn['schema'], safe='')}"
    uri += host
    if conn["extra"]:
        extra = json.loads(conn["extra"])
        try:
            query: str | None = urlencode(extra)
        except TypeError:
            query = None
        lead = "?" if conn["schema"] else "/?"
        if query and extra == dict(parse_qsl(query, keep_blank_values=True)):
            uri += lead + query
        else:
            uri += lead + urlencode({"__extra__": conn["extra"]})
    return uri


def export_file(tmp_path: Path, kind: str) -> Path:
    """Write the connections as `airflow connections export` writes them in one of its formats."""
    if kind == "json":
        path, text = tmp_path / "conns.json", json.dumps(AIRFLOW_CONNS, indent=2)
    elif kind == "yaml":
        path, text = tmp_path / "conns.yaml", yaml.safe_dump(AIRFLOW_CONNS)
    elif kind == "env-json":
        path = tmp_path / "conns.env"
        text = "".join(f"{cid}={json.dumps(conn)}\n" for cid, conn in AIRFLOW_CONNS.items())
    else:
        path = tmp_path / "conns.env"
        text = "".join(f"{cid}={airflow_uri(conn)}\n" for cid, conn in AIRFLOW_CONNS.items())
    path.write_text(text)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """Return a subprocess environment without Airflow or dconn settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "DCONN_", "AIRFLOW_CONN_")) and k != "AIRFLOW_HOME"
    }
    return {**env, "AIRFLOW_HOME": str(Path.cwd() / "airflow-home"), **extra}


def dconn(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run dconn in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "declarative_conns", *args],
        capture_output=True,
        text=True,
        env=cli_env(**(env or {})),
        check=False,
        timeout=120,
    )


# -- the formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "yaml", "env-json"])
def test_airflow_export_files_convert_to_the_same_document(
    tmp_path: Path, clean_env: Path, kind: str
) -> None:
    """JSON, YAML and .env-of-JSON exports convert to the same connections, secrets as references."""
    path = export_file(tmp_path, kind)
    done = dconn("convert", str(path))
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout)["connections"] == EXPECTED
    assert done.stderr.splitlines() == [
        "The document reads 3 secrets from environment variables; set them before `dconn plan`:",
        "  GCP_EXTRA_KEYFILE_DICT_PRIVATE_KEY  gcp: extra.keyfile_dict.private_key",
        "  MY_PG_PASSWORD                      my_pg: password",
        "  SLACK_ALERTS_EXTRA_WEBHOOK_TOKEN    slack.alerts: extra.webhook_token",
    ]
    assert CANARY not in done.stdout + done.stderr


def test_env_file_of_uris_converts_all_but_the_description(tmp_path: Path, clean_env: Path) -> None:
    """An .env export of URIs (Airflow's default) converts too; URIs carry no description."""
    done = dconn("convert", str(export_file(tmp_path, "env-uri")))
    assert done.returncode == 0, done.stderr
    expected = {cid: dict(conn) for cid, conn in EXPECTED.items()}
    del expected["my_pg"]["description"]
    assert tomllib.loads(done.stdout)["connections"] == expected
    assert CANARY not in done.stdout + done.stderr


def test_from_env_reads_airflow_conn_variables(clean_env: Path) -> None:
    """--from-env converts AIRFLOW_CONN_* URIs (with __extra__) and JSON values; ids lower-cased."""
    env = {
        "AIRFLOW_CONN_MY_PG": airflow_uri(AIRFLOW_CONNS["my_pg"]),
        "AIRFLOW_CONN_SLACK": airflow_uri(AIRFLOW_CONNS["slack.alerts"]),
        "AIRFLOW_CONN_JSONY": json.dumps({"conn_type": "http", "host": "x", "extra": {"n": [1, True]}}),
        "NOT_A_CONN": "http://ignored",
    }
    assert "__extra__" in env["AIRFLOW_CONN_SLACK"]
    done = dconn("convert", "--from-env", env=env)
    assert done.returncode == 0, done.stderr
    loaded = tomllib.loads(done.stdout)["connections"]
    assert sorted(loaded) == ["jsony", "my_pg", "slack"]
    assert loaded["jsony"] == {"conn_type": "http", "host": "x", "extra": {"n": [1, True]}}
    assert loaded["slack"]["extra"]["webhook_token"] == {"from_env": "SLACK_EXTRA_WEBHOOK_TOKEN"}
    assert loaded["my_pg"]["password"] == {"from_env": "MY_PG_PASSWORD"}
    assert done.stdout.startswith(
        f"# dconn {__version__} convert of the AIRFLOW_CONN_* environment variables: 3 connections.\n"
    )
    assert CANARY not in done.stdout + done.stderr


def test_converted_document_applies_to_what_airflow_would_store(make_db: Any, clean_env: Path) -> None:
    """convert, plan, apply into an empty table; export gives the converted connections back."""
    db = make_db("sqlite", "2.x")
    target = ["--db-url", db.url, "--fernet-key", db.fernet_key]
    assert dconn("convert", str(export_file(clean_env, "json")), "-o", "c.toml").returncode == 0
    assert dconn("validate", "-c", "c.toml").returncode == 0
    applied = dconn("apply", "-c", "c.toml", "--auto-approve", *target, env=SECRETS)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    plan = dconn("plan", "-c", "c.toml", "--detailed-exitcode", *target, env=SECRETS)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    exported = dconn("export", *target)
    assert exported.returncode == 0
    assert tomllib.loads(exported.stdout)["connections"] == EXPECTED
    assert CANARY not in applied.stdout + applied.stderr + plan.stdout + exported.stdout + exported.stderr


# -- options ---------------------------------------------------------------------------------


def test_include_secrets_writes_a_private_file(tmp_path: Path, clean_env: Path) -> None:
    """--include-secrets -o OUT inlines the values in a file of mode 0600."""
    done = dconn("convert", str(export_file(tmp_path, "json")), "-o", "out.toml", "--include-secrets")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(Path("out.toml").stat().st_mode) == 0o600
    loaded = tomllib.loads(Path("out.toml").read_text())["connections"]
    assert loaded["my_pg"]["password"] == CANARY + "pg/@:?"
    assert CANARY not in done.stdout + done.stderr


def test_env_example_and_output_file(tmp_path: Path, clean_env: Path) -> None:
    """-o and --env-example write both files; stdout stays empty; stderr says what was written."""
    done = dconn(
        "convert", str(export_file(tmp_path, "json")), "-o", "c.toml", "--env-example", ".env.example"
    )
    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr.splitlines()[:2] == [
        "Wrote 4 connections to c.toml.",
        "Wrote the names of 3 variables to .env.example.",
    ]
    text = Path(".env.example").read_text()
    assert "# my_pg: password\nMY_PG_PASSWORD=\n" in text
    assert CANARY not in text + Path("c.toml").read_text()


def test_empty_export_gives_an_empty_document_and_a_warning(tmp_path: Path, clean_env: Path) -> None:
    """A file without connections converts to a valid empty document, with a warning."""
    path = tmp_path / "empty.json"
    path.write_text("{}")
    result = CliRunner().invoke(app, ["convert", str(path)], env=cli_env())
    assert result.exit_code == 0
    assert tomllib.loads(result.stdout) == {"version": 1}
    assert result.stderr == f"Warning: {path} holds no connections\n"


def test_verbose_and_quiet(tmp_path: Path, clean_env: Path) -> None:
    """-v names the converted conn_ids on stderr; -q prints nothing there."""
    path = export_file(tmp_path, "json")
    verbose = CliRunner().invoke(app, ["convert", "-v", str(path)], env=cli_env())
    assert verbose.stderr.splitlines()[-1] == f"Converted from {path}: gcp, my_pg, nulls, slack.alerts"
    quiet = CliRunner().invoke(app, ["convert", "-q", str(path)], env=cli_env())
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert CANARY not in verbose.stdout + verbose.stderr + quiet.stdout


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.json", '{"a": {"conn_type": "http", "password": "%s"', "invalid JSON at line 1"),
        (
            "keys.json",
            '{"a": {"conn_type": "http", "pasword": "%s"}}',
            "connection 'a': unknown keys 'pasword'",
        ),
        ("port.env", "ok=http://h\nbad=http://u:%s/x@h:99999/\n", "line 2 ('bad'): invalid connection URI"),
        ("noeq.env", "ok=http://h\n%s\n", "line 2: expected CONN_ID=URI or CONN_ID={JSON}, no '='"),
        ("dupe.yaml", "a:\n  conn_type: http\n  password: '%s'\n  password: x\n", "appears twice"),
        ("type.json", '{"a": {"host": "h", "password": "%s"}}', "connection 'a': conn_type is missing"),
        (
            "id.json",
            '{"bad id": {"conn_type": "http", "password": "%s"}}',
            "connection 'bad id': the conn_id",
        ),
        ("conns.txt", "a=http://%s@h", "unsupported file type '.txt'"),
    ],
)
def test_bad_input_names_the_file_and_entry(
    tmp_path: Path, clean_env: Path, name: str, content: str, expected: str
) -> None:
    """A bad file: exit 1, one Error naming the file and the entry, no document, no secret, no traceback."""
    path = tmp_path / name
    path.write_text(content.replace("%s", CANARY))
    done = dconn("convert", str(path), "-o", "out.toml")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"Error: {path}: ")
    assert expected in done.stderr
    assert CANARY not in done.stderr
    assert "Traceback" not in done.stderr
    assert not Path("out.toml").exists()


def test_missing_file_says_so(clean_env: Path) -> None:
    """A FILE that does not exist is one clear error line."""
    result = CliRunner().invoke(app, ["convert", "nope.json"], env=cli_env())
    assert result.exit_code == 1
    assert result.stderr == "Error: nope.json: no such file\n"


def test_bad_airflow_conn_variable_names_the_variable(clean_env: Path) -> None:
    """A bad AIRFLOW_CONN_* value is an error naming the variable, never its value."""
    done = dconn("convert", "--from-env", env={"AIRFLOW_CONN_BAD": f"http://u:{CANARY}/x@h:99999/"})
    assert done.returncode == 1
    assert done.stderr.startswith("Error: the environment: environment variable AIRFLOW_CONN_BAD: ")
    assert CANARY not in done.stderr


def test_file_or_from_env_is_needed(clean_env: Path) -> None:
    """convert without a FILE and without --from-env is one clear error."""
    result = CliRunner().invoke(app, ["convert"], env=cli_env())
    assert result.exit_code == 1
    assert result.stderr == "Error: give a FILE written by `airflow connections export`, or --from-env\n"


def test_from_env_with_a_file_reads_its_airflow_conn_lines(tmp_path: Path, clean_env: Path) -> None:
    """--from-env FILE reads a Docker Compose / shell env file: AIRFLOW_CONN_* lines, others ignored."""
    path = tmp_path / "compose.env"
    lines = [
        "# Docker Compose environment",
        "AIRFLOW__CORE__EXECUTOR=LocalExecutor",
        f"export AIRFLOW_CONN_MY_PG='{airflow_uri(AIRFLOW_CONNS['my_pg'])}'",
        'AIRFLOW_CONN_JSONY={"conn_type": "http", "extra": {"n": 1}}',
        'AIRFLOW_CONN_PLAIN="http://h.example"',
    ]
    path.write_text("\n".join(lines) + "\n")
    done = dconn("convert", "--from-env", str(path))
    assert done.returncode == 0, done.stderr
    loaded = tomllib.loads(done.stdout)["connections"]
    expected_pg = {k: v for k, v in EXPECTED["my_pg"].items() if k != "description"}
    assert loaded == {
        "jsony": {"conn_type": "http", "extra": {"n": 1}},
        "my_pg": expected_pg,
        "plain": {"conn_type": "http", "host": "h.example"},
    }
    assert done.stdout.startswith(
        f"# dconn {__version__} convert of the AIRFLOW_CONN_* variables of {path}: 3 connections.\n"
    )
    assert CANARY not in done.stdout + done.stderr


def test_env_file_bad_variable_names_the_file_and_variable(tmp_path: Path, clean_env: Path) -> None:
    """A bad AIRFLOW_CONN_* line of an env file: the error names the file and the variable, not the value."""
    path = tmp_path / "compose.env"
    path.write_text(f"AIRFLOW_CONN_BAD=http://u:{CANARY}/x@h:99999/\n")
    done = dconn("convert", "--from-env", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"Error: {path}: environment variable AIRFLOW_CONN_BAD: invalid connection URI"
    )
    assert CANARY not in done.stderr


def test_airflow_conn_keys_in_a_plain_env_file_get_a_hint(tmp_path: Path, clean_env: Path) -> None:
    """An Airflow .env export whose keys look like AIRFLOW_CONN_* variables converts, with a hint."""
    path = tmp_path / "conns.env"
    path.write_text("AIRFLOW_CONN_X=http://h\n")
    result = CliRunner().invoke(app, ["convert", str(path)], env=cli_env())
    assert result.exit_code == 0
    assert list(tomllib.loads(result.stdout)["connections"]) == ["AIRFLOW_CONN_X"]
    assert result.stderr == (
        f"Warning: {path}: conn_ids such as AIRFLOW_CONN_... look like environment variables; for a "
        f"file of AIRFLOW_CONN_<ID>=... lines, run: dconn convert --from-env {path}\n"
    )
