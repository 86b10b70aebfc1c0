"""Tests for `dconn export`: a deployment's connections as a dconn document, and back to "No changes"."""

from __future__ import annotations

import itertools
import json
import os
import pty
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from declarative_conns import __version__
from declarative_conns.cli import app
from tests.airflow_tables import insert_raw

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CANARY = "canary-5ecr3t-"
BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
SHAPES = ["1.10", "2.x", "3.1", "3.2"]


def connections(shape: str) -> dict[str, dict[str, Any]]:
    """Return connections with extras of every JSON type and conn_ids that TOML must quote."""
    conns: dict[str, dict[str, Any]] = {
        "warehouse.eu-1": {
            # A conn_type without dconn rules, so its made-up extras are not judged.
            "conn_type": "custom_db",
            "description": 'Warehouse "EU"\n\tsecond line',
            "host": "db.internal",
            "schema": "analytics",
            "login": "etl",
            "password": CANARY + "pw'\"\\ é",
            "port": 5432,
            "extra": {
                "sslmode": "require",
                "options": {"nested": {"deep": [1, 2.5, True, False, "x", {"k": []}]}, "empty": {}},
                "retries": 3,
                "ratio": -0.25,
                "enabled": False,
                "tags": ["a", "b"],
                "api_key": CANARY + "key",
                "keyfile_dict": {"private_key": CANARY + "-----BEGIN\nKEY\n-----END", "type": "sa", "n": 7},
                "proxies": [CANARY + "proxy", ""],
                "token_ttl": 3600,
                "use_proxy": True,
            },
        },
        "nulls:1/a": {
            "conn_type": "http",
            "host": "h.example",
            "extra": {"maybe": None, "list": [None, 1, {"z": None}], "big": 2**40, "tiny": 1e-7},
        },
        "back\\slash#(x)!": {"conn_type": "ftp", "login": "anon", "port": 21},
        "aws_default": {
            "conn_type": "aws",
            "extra": {"aws_secret_access_key": CANARY + "aws", "region_name": "eu-west-1"},
        },
        "café": {"conn_type": "http", "host": "x", "password": CANARY + "café"},
        "123": {"conn_type": "sqlite", "host": "/tmp/x.db"},
        "empties": {"conn_type": "http", "host": "", "login": "", "password": "", "extra": {}},
    }
    if shape == "1.10":
        del conns["warehouse.eu-1"]["description"]
    if shape == "3.2":
        conns["aws_default"]["team_name"] = "data"
    return conns


#: conn_ids stored in clear (flags false), as Airflow does without a Fernet key.
CLEAR = {"aws_default", "123"}


def store(db: Any, conns: Mapping[str, Mapping[str, Any]], clear: frozenset[str] = frozenset(CLEAR)) -> None:
    """Insert connections as Airflow stores them: extra as JSON text, secrets Fernet-encrypted."""
    if "team_name" in db.table.c:
        team = db.table.metadata.tables["team"]
        with db.engine.begin() as conn:
            conn.execute(team.insert(), [{"id": uuid.uuid4(), "name": "data"}])
    fernet = Fernet(db.fernet_key.encode())
    rows = []
    for conn_id, fields in conns.items():
        row = {"conn_id": conn_id, **fields}
        if isinstance(row.get("extra"), dict):
            row["extra"] = json.dumps(row["extra"])
        if conn_id not in clear:
            for column, flag in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
                if row.get(column):
                    row[column] = fernet.encrypt(row[column].encode()).decode()
                    row[flag] = True
        rows.append(row)
    insert_raw(db.engine, db.table, rows)


def cli_env(**extra: str) -> dict[str, str]:
    """Return the environment of a dconn subprocess: no Airflow or dconn settings inherited."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "DCONN_", "AIRFLOW_CONN_"))
        and k not in ("AIRFLOW_HOME", "NO_COLOR")
    }
    env["AIRFLOW_HOME"] = str(Path.cwd() / "airflow-home")
    return {**env, **extra}


def dconn(
    *args: str, env: Mapping[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run dconn in a real subprocess, as a user would."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run(
        [sys.executable, "-m", "declarative_conns", *args],
        text=True,
        env=cli_env(**(env or {})),
        check=False,
        timeout=120,
        **streams,
    )


def target(db: Any) -> list[str]:
    """Return the flags that point dconn at a test database."""
    return ["--db-url", db.url, "--fernet-key", db.fernet_key]


def placeholders(env_example: Path) -> list[tuple[str, str, str]]:
    """Return (variable, conn_id, field) from a .env.example written by dconn."""
    found = []
    lines = env_example.read_text().splitlines()
    for previous, line in itertools.pairwise(lines):
        if line.endswith("=") and not line.startswith("#"):
            conn_id, _, field = previous[2:].rpartition(": ")
            found.append((line[:-1], conn_id, field))
    return found


def secret_env(env_example: Path, conns: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Return each listed variable set to the value it stands for in the connections."""
    env = {}
    for variable, conn_id, field in placeholders(env_example):
        node: Any = conns[conn_id]
        for part in field.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert isinstance(node, str), f"{variable} must stand for a string"
        env[variable] = node
    return env


def assert_no_canary(*texts: str) -> None:
    """Fail if any text holds a secret of the test data."""
    for text in texts:
        assert CANARY not in text


# -- the round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_export_then_plan_says_no_changes(make_db: Any, clean_env: Path, backend: str, shape: str) -> None:
    """Export, set the listed variables, plan: "No changes", on every backend and table shape."""
    db = make_db(backend, shape)
    conns = connections(shape)
    store(db, conns)
    export = dconn("export", "-o", "conns.toml", "--env-example", ".env.example", *target(db))
    assert export.returncode == 0, export.stderr
    assert export.stdout == ""
    document = Path("conns.toml").read_text()
    loaded = tomllib.loads(document)["connections"]
    assert sorted(loaded) == sorted(conns)
    assert ("description" in loaded["warehouse.eu-1"]) is (shape != "1.10")
    assert loaded["aws_default"].get("team_name") == ("data" if shape == "3.2" else None)
    env = secret_env(Path(".env.example"), conns)
    assert len(env) == 7
    plan = dconn("plan", "-c", "conns.toml", "--detailed-exitcode", *target(db), env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes. The connections match the configuration." in plan.stdout
    assert_no_canary(export.stderr, document, Path(".env.example").read_text(), plan.stdout, plan.stderr)


def test_sensitive_object_keeps_its_shape_with_one_variable_per_string(make_db: Any, clean_env: Path) -> None:
    """A sensitive extra holding an object is exported as that object, each string a reference."""
    db = make_db("sqlite", "2.x")
    store(db, connections("2.x"))
    result = CliRunner().invoke(app, ["export", *target(db)], env=cli_env())
    assert result.exit_code == 0, result.stderr
    extra = tomllib.loads(result.stdout)["connections"]["warehouse.eu-1"]["extra"]
    assert extra["keyfile_dict"] == {
        "private_key": {"from_env": "WAREHOUSE_EU_1_EXTRA_KEYFILE_DICT_PRIVATE_KEY"},
        "type": {"from_env": "WAREHOUSE_EU_1_EXTRA_KEYFILE_DICT_TYPE"},
        "n": 7,
    }
    assert extra["proxies"] == [{"from_env": "WAREHOUSE_EU_1_EXTRA_PROXIES_0"}, ""]
    assert extra["token_ttl"] == 3600
    assert extra["use_proxy"] is True
    assert_no_canary(result.stdout, result.stderr)


def test_include_secrets_file_is_private_and_needs_no_variables(make_db: Any, clean_env: Path) -> None:
    """--include-secrets -o writes values in clear to a 0600 file; plan then says "No changes"."""
    db = make_db("sqlite", "2.x")
    conns = connections("2.x")
    store(db, conns)
    Path("conns.toml").write_text("old")
    Path("conns.toml").chmod(0o644)
    export = dconn("export", "-o", "conns.toml", "--include-secrets", *target(db))
    assert export.returncode == 0, export.stderr
    assert stat.S_IMODE(Path("conns.toml").stat().st_mode) == 0o600
    document = Path("conns.toml").read_text()
    assert CANARY + "aws" in document
    assert "from_env" not in document
    assert "Warning: the document holds secret values in clear (--include-secrets)" in export.stderr
    assert_no_canary(export.stdout, export.stderr)
    plan = dconn("plan", "-c", "conns.toml", "--detailed-exitcode", *target(db))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout


def test_include_secrets_is_refused_on_a_terminal(make_db: Any, clean_env: Path) -> None:
    """--include-secrets without -o refuses to print secrets when stdout is a terminal."""
    db = make_db("sqlite", "2.x")
    store(db, connections("2.x"))
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "declarative_conns", "export", "--include-secrets", *target(db)],
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            check=False,
            timeout=60,
        )
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 65536).decode()
        except BlockingIOError:
            shown = ""
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 1
    assert done.stderr == (
        "Error: --include-secrets would print secret values on the terminal; write them to a file "
        "with -o FILE (mode 0600), or redirect stdout\n"
    )
    assert_no_canary(shown, done.stderr)


def test_include_secrets_to_a_readable_file_warns(make_db: Any, clean_env: Path) -> None:
    """--include-secrets with stdout redirected to a file others can read warns on stderr."""
    db = make_db("sqlite", "2.x")
    store(db, connections("2.x"))
    with open("out.toml", "w") as handle:
        os.chmod("out.toml", 0o644)
        done = dconn("export", "--include-secrets", *target(db), stdout=handle)
    assert done.returncode == 0
    assert "Warning: stdout is a file that others may read; prefer -o FILE" in done.stderr
    assert CANARY in Path("out.toml").read_text()
    assert_no_canary(done.stderr)


# -- what the user reads ---------------------------------------------------------------------


def test_stdout_carries_the_document_and_stderr_the_variables(make_db: Any, clean_env: Path) -> None:
    """Without -o stdout is exactly the document; the variable list goes to stderr, line by line."""
    db = make_db("sqlite", "2.x")
    store(
        db,
        {
            "my_pg": {"conn_type": "postgres", "host": "db", "password": CANARY},
            "slack": {"conn_type": "http", "extra": {"webhook_token": CANARY, "timeout": 5}},
        },
    )
    to_stdout = dconn("export", *target(db))
    to_file = dconn("export", "-o", "c.toml", *target(db))
    assert to_stdout.returncode == to_file.returncode == 0
    assert to_stdout.stdout == Path("c.toml").read_text()
    assert to_stdout.stderr.splitlines() == [
        "The document reads 2 secrets from environment variables; set them before `dconn plan`:",
        "  MY_PG_PASSWORD             my_pg: password",
        "  SLACK_EXTRA_WEBHOOK_TOKEN  slack: extra.webhook_token",
    ]
    assert to_file.stderr.splitlines()[0] == "Wrote 2 connections to c.toml."
    assert_no_canary(to_stdout.stdout, to_stdout.stderr, to_file.stdout, to_file.stderr)


def test_document_reads_as_a_person_would_write_it(make_db: Any, clean_env: Path) -> None:
    """The exported document: a header, sorted tables, fields in order, references commented."""
    db = make_db("sqlite", "2.x")
    store(
        db,
        {
            "zeta": {"conn_type": "http", "host": "z.example", "extra": {"timeout": 5}},
            "my.pg": {
                "conn_type": "postgres",
                "description": "Warehouse",
                "host": "db",
                "login": "etl",
                "password": CANARY,
                "port": 5432,
            },
        },
    )
    result = CliRunner().invoke(app, ["export", *target(db)], env=cli_env())
    assert result.exit_code == 0
    masked = db.url  # SQLite URLs hold no password
    assert result.stdout == (
        f"# dconn {__version__} export of {masked} (Airflow 2.x table):\n"
        "# 2 connections from 2 rows.\n"
        "#\n"
        '# Secrets are { from_env = "..." } references: set those variables before `dconn plan`, or\n'
        '# change them to { from_file = "..." } or { from_command = [...] } for your secret manager.\n'
        "\n"
        "version = 1\n"
        "\n"
        '[connections."my.pg"]\n'
        'conn_type = "postgres"\n'
        'description = "Warehouse"\n'
        'host = "db"\n'
        'login = "etl"\n'
        'password = { from_env = "MY_PG_PASSWORD" }\n'
        "port = 5432\n"
        "\n"
        "[connections.zeta]\n"
        'conn_type = "http"\n'
        'host = "z.example"\n'
        "[connections.zeta.extra]\n"
        "timeout = 5\n"
    )


def test_env_example_lists_every_variable_without_values(make_db: Any, clean_env: Path) -> None:
    """--env-example writes each variable with its connection and field, values empty."""
    db = make_db("sqlite", "2.x")
    store(db, {"my_pg": {"conn_type": "postgres", "password": CANARY}})
    done = dconn("export", "-o", "c.toml", "--env-example", "secrets.env.example", *target(db))
    assert done.returncode == 0
    text = Path("secrets.env.example").read_text()
    assert "\n# my_pg: password\nMY_PG_PASSWORD=\n" in text
    assert "Wrote the names of 1 variable to secrets.env.example." in done.stderr
    assert_no_canary(text)


def test_quiet_prints_nothing_but_the_document(make_db: Any, clean_env: Path) -> None:
    """-q silences the variable list and the warnings; stdout still holds the document."""
    db = make_db("sqlite", "1.10")
    store(db, {"a": {"conn_type": "http", "password": CANARY}, "b": {"conn_type": "http", "port": 0}})
    result = CliRunner().invoke(app, ["export", "-q", *target(db)], env=cli_env())
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "[connections.a]" in result.stdout
    assert_no_canary(result.stdout)


def test_verbose_names_the_exported_connections(make_db: Any, clean_env: Path) -> None:
    """-v lists the exported conn_ids on stderr."""
    db = make_db("sqlite", "2.x")
    store(db, {"b": {"conn_type": "http"}, "a": {"conn_type": "http"}})
    result = CliRunner().invoke(app, ["export", "-v", *target(db)], env=cli_env())
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1] == f"Exported from {db.url} (Airflow 2.x table): a, b"


def test_target_comes_from_the_environment_like_plan(make_db: Any, clean_env: Path) -> None:
    """Without flags export finds the database and key as plan does (DCONN_*, AIRFLOW__* variables)."""
    db = make_db("sqlite", "2.x")
    store(db, {"a": {"conn_type": "http", "password": CANARY}})
    env = cli_env(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db.url, AIRFLOW__CORE__FERNET_KEY=db.fernet_key)
    result = CliRunner().invoke(app, ["export"], env=env)
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads(result.stdout)["connections"]["a"]["password"] == {"from_env": "A_PASSWORD"}
    assert_no_canary(result.stdout, result.stderr)


def test_empty_table_exports_a_valid_document(make_db: Any, clean_env: Path) -> None:
    """An empty connection table gives a document with no connections that plans to "No changes"."""
    db = make_db("sqlite", "3.2")
    export = dconn("export", "-o", "c.toml", *target(db))
    assert export.returncode == 0
    assert "version = 1\n# no connections\n" in Path("c.toml").read_text()
    plan = dconn("plan", "-c", "c.toml", "--detailed-exitcode", *target(db))
    assert plan.returncode == 0, plan.stderr
    assert "No changes." in plan.stdout


def test_export_writes_neither_the_database_nor_a_state_file(make_db: Any, clean_env: Path) -> None:
    """Export only reads: rows are unchanged and no .dconn folder appears."""
    db = make_db("sqlite", "2.x")
    store(db, connections("2.x"))
    before = db.rows()
    done = dconn("export", "-o", "c.toml", *target(db))
    assert done.returncode == 0
    assert db.rows() == before
    assert not Path(".dconn").exists()
    assert_no_canary(done.stdout, done.stderr, Path("c.toml").read_text())


# -- rows the document cannot hold as they are ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", ["1.10", "2.x-nounique"])
def test_duplicate_rows_are_exported_once_with_a_comment(
    make_db: Any, clean_env: Path, backend: str, shape: str
) -> None:
    """Rows sharing a conn_id: the lowest is exported, a comment names the others; plan deletes them."""
    db = make_db(backend, shape)
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "legacy_s3", "conn_type": "aws", "extra": '{"region_name": "eu-west-1"}'},
            {"conn_id": "other", "conn_type": "http"},
            {"conn_id": "legacy_s3", "conn_type": "aws", "extra": '{"region_name": "eu-west-1"}'},
            {"conn_id": "legacy_s3", "conn_type": "s3"},
        ],
    )
    export = dconn("export", "-o", "c.toml", *target(db))
    assert export.returncode == 0
    document = Path("c.toml").read_text()
    assert (
        "# 3 rows have this conn_id (Airflow 1.10 allowed it): this is row 1, the one dconn keeps;\n"
        "# dconn plan will propose deleting duplicate rows 3, 4 (row 4 holds other values)\n"
        "[connections.legacy_s3]\n"
        'conn_type = "aws"\n'
    ) in document
    assert export.stderr.splitlines()[0] == (
        'Warning: connection "legacy_s3" has 3 rows: dconn plan will propose deleting duplicate '
        "rows 3, 4 (row 4 holds other values)"
    )
    plan = dconn("plan", "-c", "c.toml", *target(db))
    assert plan.returncode == 0
    assert "Plan: 0 to add, 0 to change, 2 to destroy (2 duplicate rows)." in plan.stdout


def test_rows_dconn_cannot_declare_are_left_out_and_stay_unmanaged(make_db: Any, clean_env: Path) -> None:
    """No conn_id, a bad conn_id, no conn_type, port 0, a non-object extra: commented, warned, unmanaged."""
    db = make_db("sqlite", "1.10")
    fernet = Fernet(db.fernet_key.encode())
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": None, "conn_type": "http"},
            {"conn_id": "has space", "conn_type": "http"},
            {"conn_id": "no_type", "conn_type": None},
            {"conn_id": "port0", "conn_type": "http", "port": 0},
            {
                "conn_id": "text_extra",
                "conn_type": "http",
                "extra": fernet.encrypt(CANARY.encode()).decode(),
                "is_extra_encrypted": True,
            },
            {"conn_id": "list_extra", "conn_type": "http", "extra": "[1, 2]"},
            {"conn_id": "fine", "conn_type": "http"},
        ],
    )
    export = dconn("export", "-o", "c.toml", *target(db))
    assert export.returncode == 0
    document = Path("c.toml").read_text()
    assert list(tomllib.loads(document)["connections"]) == ["fine"]
    assert document.endswith(
        "# Left out, as dconn cannot declare them as they are (they stay unmanaged):\n"
        '#   "" (row 1): the row has no conn_id\n'
        '#   "has space" (row 2): the conn_id breaks Airflow\'s rule (1-250 letters, digits and '
        "_ # ! ( ) - . : / \\)\n"
        '#   "list_extra" (row 6): its extra is a JSON array, not a JSON object (Airflow cannot read it either)\n'
        '#   "no_type" (row 3): it has no conn_type, which dconn requires\n'
        '#   "port0" (row 4): its port is outside 1-65535\n'
        '#   "text_extra" (row 5): its extra is not JSON, not a JSON object (Airflow cannot read it either)\n'
    )
    warnings = [line for line in export.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 6
    assert (
        'Warning: connection "port0" left out: its port is outside 1-65535; dconn leaves it unmanaged'
        in warnings
    )
    plan = dconn("plan", "-c", "c.toml", "--detailed-exitcode", *target(db))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout
    assert_no_canary(document, export.stderr, plan.stdout, plan.stderr)


def test_null_beside_a_secret_round_trips(make_db: Any, clean_env: Path) -> None:
    """An extra with a null and a secret is written as extra_json with a reference: no change planned."""
    db = make_db("sqlite", "2.x")
    conns = {"aws": {"conn_type": "aws", "extra": {"aws_session_token": CANARY, "region_name": None}}}
    store(db, conns)
    export = dconn("export", "-o", "c.toml", "--env-example", ".env.example", *target(db))
    assert export.returncode == 0 and "left out" not in export.stderr
    assert (
        'extra_json = \'{"aws_session_token":{"from_env":"AWS_EXTRA_AWS_SESSION_TOKEN"},"region_name":null}\''
        in Path("c.toml").read_text()
    )
    env = secret_env(Path(".env.example"), conns)
    plan = dconn("plan", "-c", "c.toml", "--detailed-exitcode", *target(db), env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.endswith("No changes. The connections match the configuration.\n")
    assert_no_canary(export.stderr, plan.stdout, plan.stderr)


# -- errors ---------------------------------------------------------------------------------


def test_wrong_fernet_key_is_one_error_line_naming_the_connection(make_db: Any, clean_env: Path) -> None:
    """A key that cannot decrypt a row: exit 1, one Error line naming the conn_id (as plan), no document."""
    db = make_db("sqlite", "2.x")
    store(db, {"my_pg": {"conn_type": "postgres", "password": CANARY}})
    done = dconn("export", "--db-url", db.url, "--fernet-key", Fernet.generate_key().decode())
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: 1 connection row cannot be decrypted")
    assert "my_pg (row 1)" in lines[0]
    assert_no_canary(done.stderr)


def test_encrypted_rows_without_a_key_are_an_error(make_db: Any, clean_env: Path) -> None:
    """Without a Fernet key, an encrypted row is an error that says to pass the key."""
    db = make_db("sqlite", "2.x")
    store(db, {"my_pg": {"conn_type": "postgres", "password": CANARY}})
    done = dconn("export", "--db-url", db.url)
    assert done.returncode == 1
    assert "no Fernet key is set" in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_canary(done.stdout, done.stderr)


def test_missing_database_is_an_error_and_creates_nothing(clean_env: Path) -> None:
    """A database file that does not exist: exit 1, the message says so, nothing is created."""
    done = dconn("export", "--db-url", "sqlite:///nope.db", "-o", "c.toml")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: database file ")
    assert "does not exist" in done.stderr
    assert not Path("nope.db").exists()
    assert not Path("c.toml").exists()


def test_unwritable_output_is_an_error(make_db: Any, clean_env: Path) -> None:
    """An -o path in a folder that does not exist: exit 1, one Error line naming the path."""
    db = make_db("sqlite", "2.x")
    result = CliRunner().invoke(app, ["export", "-o", "no/such/dir/c.toml", *target(db)], env=cli_env())
    assert result.exit_code == 1
    assert result.stderr == "Error: cannot write no/such/dir/c.toml: No such file or directory\n"


# -- the round trip as a property, without a database ------------------------------------------

text_values = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8)
extra_keys = st.sampled_from(["sslmode", "n", "api_key", "token", "nested", "client_secret", "a b", "Ünï"])
json_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(extra_keys, inner, max_size=3),
    max_leaves=10,
)
row_fields = st.fixed_dictionaries(
    {
        "conn_type": st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8),
        "description": st.none() | text_values,
        "host": st.none() | text_values,
        "schema": st.none() | text_values,
        "login": st.none() | text_values,
        "password": st.none() | text_values,
        "port": st.none() | st.integers(1, 65535),
        "extra": st.none() | st.dictionaries(extra_keys, json_trees, max_size=4),
        "team_name": st.none() | st.sampled_from(["data", "ops"]),
    }
)
conn_id_texts = st.text(alphabet="abcXYZ019_#!()-.:/\\é", min_size=1, max_size=10)


def _holds_secret(value: Any, secret: bool = False) -> bool:
    """Tell whether a value holds a non-empty string at or under a sensitive key."""
    from declarative_conns.core.sensitive_words import is_sensitive_key

    if isinstance(value, dict):
        return any(_holds_secret(v, secret or is_sensitive_key(k)) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_secret(v, secret) for v in value)
    return secret and isinstance(value, str) and value != ""


def _toml_cannot_hold(value: Any) -> bool:
    """Tell whether a JSON value holds a null or an integer beyond 64 bits."""
    if isinstance(value, dict):
        return any(_toml_cannot_hold(v) for v in value.values())
    if isinstance(value, list):
        return any(_toml_cannot_hold(v) for v in value)
    return value is None or (isinstance(value, int) and not -(2**63) <= value < 2**63)


@given(st.dictionaries(conn_id_texts, row_fields, max_size=4))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_exported_rows_resolve_back_to_themselves(table: dict[str, dict[str, Any]]) -> None:
    """Any rows -> export -> load and resolve the document with the listed variables: the same values."""
    from declarative_conns.config.loader import load_desired
    from declarative_conns.config.secrets import resolve_desired
    from declarative_conns.core.kinds import CONNECTION
    from declarative_conns.core.model import Address, StoredObject, Values, canonical_json
    from declarative_conns.onboarding.export import export_rows
    from declarative_conns.targets.base import TargetInfo

    for fields in table.values():
        extra = fields["extra"]
        assume(not (extra and _holds_secret(extra) and _toml_cannot_hold(extra)))
    rows = [
        StoredObject(Address("connection", conn_id), i, Values(CONNECTION.normalize(fields)), "fp")
        for i, (conn_id, fields) in enumerate(sorted(table.items()), 1)
    ]
    info = TargetInfo("3.2+", "Airflow 3.2+ table", {"connection": CONNECTION.fields})
    result = export_rows(rows, info, "sqlite:///x.db")
    assert result.notes == []
    by_id = {row.address.key: row for row in rows}
    env = {}
    for placeholder in result.placeholders:
        node: Any = by_id[placeholder.conn_id].values.fields
        for part in _split_path(placeholder.field):
            node = node[part]
        env[placeholder.variable] = node
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(result.text, encoding="utf-8")
        resolved = resolve_desired(load_desired(path), lambda ref: env[str(ref.target)])
    assert sorted(a.key for a in resolved) == sorted(by_id)
    for address, values in resolved.items():
        assert canonical_json(values.fields) == canonical_json(by_id[address.key].values.fields), address


def _split_path(field: str) -> list[str | int]:
    """Split a placeholder's field path ('extra.nested.0.token') into keys and list indexes."""
    return [int(part) if part.isdigit() else part for part in field.split(".")]


def test_a_value_an_api_hid_becomes_a_reference() -> None:
    """`***` (a key a REST API hides, whatever dconn calls secret) is exported as a reference, never as a value."""
    from declarative_conns.core.model import Address, StoredObject, Values
    from declarative_conns.onboarding.export import export_rows
    from declarative_conns.targets.base import TargetInfo

    row = StoredObject(
        Address("connection", "crm"),
        None,
        Values({"conn_type": "http", "extra": {"custom_hidden": "***", "region": "eu"}}),
        "fp",
    )
    info = TargetInfo("3.3.2", "Airflow 3.3.2 REST API /api/v2", {"connection": ("conn_type", "extra")})
    result = export_rows([row], info, "https://airflow.example.com")
    assert "***" not in result.text
    assert 'custom_hidden = { from_env = "' in result.text and 'region = "eu"' in result.text
