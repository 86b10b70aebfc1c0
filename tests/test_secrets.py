"""Secrets never leak: canary values through every command, format, failure and file."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import SecretError
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.helpers import run_dconn

CANARIES = {
    "literal": "canary-literal-5b1c",
    "env": "canary-env-77aa",
    "file": "canary-file-31fe",
    "command": "canary-cmd-0c9d",
    "extra": "canary-extra-4e42",
    "stored": "canary-stored-9a01",
}
DOC = f"""
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
password = "{CANARIES["literal"]}"
extra = {{ api_token = {{ from_env = "WH_TOKEN" }}, nested = {{ private_key = "{CANARIES["extra"]}" }} }}

[connections.files]
conn_type = "http"
password = {{ from_file = "secret.txt" }}
login = {{ from_command = ["printf", "%s-%s", "canary-cmd", "0c9d"] }}
"""


def run(
    db: AirflowDb, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run dconn against the test database."""
    target = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key, "WH_TOKEN": CANARIES["env"]}
    return run_dconn(*args, cwd=cwd, env={**target, **(env or {})})


def assert_no_canary(text: str, where: str, allowed: tuple[str, ...] = ()) -> None:
    """Fail when any canary, or its unkeyed SHA-256, appears in a text."""
    for name, canary in CANARIES.items():
        if name in allowed:
            continue
        assert canary not in text, f"{name} canary leaked in {where}"
        assert hashlib.sha256(canary.encode()).hexdigest() not in text, f"unkeyed digest of {name} in {where}"


@pytest.fixture
def setup(make_db: Any, tmp_path: Path) -> tuple[AirflowDb, Path]:
    """A database whose stored row holds a secret too, and the canary document."""
    db = make_db("sqlite", "2.x")
    token = Fernet(db.fernet_key.encode()).encrypt(CANARIES["stored"].encode()).decode()
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "warehouse", "conn_type": "postgres", "password": token, "is_encrypted": True},
            {"conn_id": "unmanaged", "conn_type": "http", "password": CANARIES["stored"]},
        ],
    )
    (tmp_path / "connections.toml").write_text(DOC)
    (tmp_path / "secret.txt").write_text(CANARIES["file"] + "\n")
    return db, tmp_path


def test_no_secret_in_any_output_or_file(setup: tuple[AirflowDb, Path]) -> None:
    """Every command, format and verbosity, success and failure: no secret in output or written files."""
    db, cwd = setup
    runs = [
        ("validate",),
        ("plan",),
        ("plan", "-v"),
        ("plan", "--format", "json"),
        ("plan", "--format", "markdown"),
        ("plan", "--out", "saved.plan", "--debug"),
        ("apply", "saved.plan"),
        ("plan", "--detailed-exitcode", "--format", "json", "-v"),
        ("export",),
        ("plan", "--fernet-key", Fernet.generate_key().decode(), "--debug"),  # wrong key: fails
        ("apply", "saved.plan", "--debug"),  # stale: fails
    ]
    codes = []
    for args in runs:
        result = run(db, cwd, *args)
        codes.append(result.returncode)
        # export reads the database, which cannot know that a login came from a reference:
        # it hides values by Airflow's sensitive names (password, *token*, ...) only.
        allowed = ("command",) if args[0] == "export" else ()
        assert_no_canary(result.stdout + result.stderr, " ".join(args), allowed)
    assert codes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1], codes
    secrets_changed = run(db, cwd, "plan", env={"WH_TOKEN": "rotated-value"})
    assert "~ extra.api_token = (sensitive value changed)" in secrets_changed.stdout
    for path in cwd.rglob("*"):
        written_by_dconn = path.suffix != ".db" and path.name not in ("connections.toml", "secret.txt")
        if path.is_file() and written_by_dconn:
            assert_no_canary(path.read_text(errors="replace"), str(path))


def test_state_digests_are_keyed(setup: tuple[AirflowDb, Path]) -> None:
    """The state holds HMAC digests keyed from the Fernet key: another key gives other digests."""
    db, cwd = setup
    assert run(db, cwd, "apply", "--auto-approve").returncode == 0
    state = json.loads((cwd / ".dconn" / "state.json").read_text())
    digest = state["applied"]["connection"]["warehouse"]["password"]["$digest"]
    assert state["digest_key"]["source"] == "fernet" and "key" not in state["digest_key"]
    assert digest != hashlib.sha256(CANARIES["literal"].encode()).hexdigest()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            'password = { from_env = "UNSET_CANARY_VAR" }',
            'connection "a" field password: environment variable UNSET_CANARY_VAR is not set',
        ),
        ('password = { from_file = "missing.txt" }', "secret file"),
        (
            f'password = {{ from_command = ["sh", "-c", "echo {CANARIES["command"]}; exit 4"] }}',
            "exited with code 4",
        ),
        (
            'password = { from_command = ["no-such-binary-dconn"] }',
            "command 'no-such-binary-dconn' not found",
        ),
    ],
)
def test_failing_reference_names_connection_and_applies_nothing(
    make_db: Any, tmp_path: Path, doc: str, message: str
) -> None:
    """A reference that fails names the connection and field; nothing is applied, no value shown."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(f'[connections.a]\nconn_type = "http"\n{doc}\n')
    result = run(db, tmp_path, "apply", "--auto-approve")
    assert result.returncode == 1 and message in result.stderr
    assert_no_canary(result.stdout + result.stderr.replace(f"echo {CANARIES['command']}", ""), "error")
    assert db.rows() == []


def test_command_timeout_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A from_command that hangs is stopped at the timeout with a clear error."""
    monkeypatch.setattr("declarative_conns.commands.COMMAND_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(SecretError, match="did not finish within"):
        resolve_secret(SecretRef("command", ("sleep", "5"), str(tmp_path)))


def test_references_are_resolved_once_per_run(make_db: Any, tmp_path: Path) -> None:
    """The same reference used twice runs its command once."""
    db = make_db("sqlite", "2.x")
    counter = tmp_path / "count"
    cmd = f'{{ from_command = ["sh", "-c", "echo x >> {counter}; echo value"] }}'
    (tmp_path / "connections.toml").write_text(
        f'[connections.a]\nconn_type = "http"\npassword = {cmd}\n[connections.b]\nconn_type = "http"\npassword = {cmd}\n'
    )
    assert run(db, tmp_path, "plan").returncode == 0
    assert counter.read_text().count("x") == 1


def test_rotate_reencrypts_old_key_rows_only(make_db: Any, tmp_path: Path) -> None:
    """--rotate re-encrypts rows under an older key with the first key, changing nothing else."""
    db = make_db("sqlite", "2.x")
    old = Fernet.generate_key().decode()
    old_f = Fernet(old.encode())
    extra_text = '{"b": 1,  "a": "x"}'
    insert_raw(
        db.engine,
        db.table,
        [
            {
                "conn_id": "legacy",
                "conn_type": "http",
                "host": "",
                "password": old_f.encrypt(b"pw").decode(),
                "extra": old_f.encrypt(extra_text.encode()).decode(),
                "is_encrypted": True,
                "is_extra_encrypted": True,
            }
        ],
    )
    (tmp_path / "connections.toml").write_text("")
    ring = {"DCONN_FERNET_KEY": f"{db.fernet_key},{old}"}
    plan = run(db, tmp_path, "plan", "--detailed-exitcode", env=ring)
    assert (
        plan.returncode == 0
        and "encrypted with an older Fernet key" in plan.stdout
        and "--rotate re-encrypts them" in plan.stdout
    )
    rotate = run(db, tmp_path, "apply", "--rotate", "--auto-approve", env=ring)
    assert rotate.returncode == 0, rotate.stderr
    assert '# connection "legacy" will be re-encrypted with the first key (row 1)' in rotate.stdout
    (row,) = db.rows()
    new = Fernet(db.fernet_key.encode())
    assert new.decrypt(row["password"].encode()) == b"pw"
    assert (
        new.decrypt(row["extra"].encode()).decode() == extra_text
    )  # the exact stored text, not re-serialized
    assert row["host"] == ""  # untouched, not normalized to NULL
    again = run(db, tmp_path, "plan", "--rotate", "--detailed-exitcode", env=ring)
    assert again.returncode == 0 and "older Fernet key" not in again.stdout


def test_airflow_conn_variable_shadowing_warns(make_db: Any, tmp_path: Path) -> None:
    """A declared conn_id shadowed by AIRFLOW_CONN_<ID> in the environment gets a warning."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text('[connections.my_db]\nconn_type = "postgres"\n')
    result = run(
        db, tmp_path, "plan", env={"AIRFLOW_CONN_MY_DB": "postgres://u:" + CANARIES["env"] + "@h/db"}
    )
    assert 'Warning: connection "my_db": AIRFLOW_CONN_MY_DB is set in this environment' in result.stderr
    assert_no_canary(result.stdout + result.stderr, "plan")
