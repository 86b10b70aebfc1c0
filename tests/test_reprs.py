"""The Python API's objects never print a secret: repr and str of states, fields and values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import declarative_conns as dc
from declarative_conns.config.loader import DesiredConnection
from declarative_conns.config.secrets import resolve_desired, resolve_secret
from declarative_conns.core.model import Address, SecretRef, StoredObject, Values

CANARIES = {
    "literal": "canary-repr-literal-1a",
    "extra": "canary-repr-extra-2b",
    "nested": "canary-repr-nested-3c",
    "listed": "canary-repr-listed-4d",
    "env": "canary-repr-env-5e",
    "file": "canary-repr-file-6f",
}
DOC = f"""
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
password = "{CANARIES["literal"]}"
login = {{ from_env = "REPR_LOGIN" }}
extra = {{ api_token = "{CANARIES["extra"]}", sslmode = "require", deep = {{ private_key = "{CANARIES["nested"]}" }}, hosts = [{{ token = "{CANARIES["listed"]}" }}] }}

[connections.files]
conn_type = "http"
schema = {{ from_file = "secret.txt" }}
"""


def assert_hidden(text: str, where: str) -> None:
    """Fail when any canary appears in a text."""
    for name, canary in CANARIES.items():
        assert canary not in text, f"the {name} canary shows in {where}: {text}"


@pytest.fixture
def desired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dc.DesiredState:
    """The canary document loaded, its references resolvable."""
    monkeypatch.setenv("REPR_LOGIN", CANARIES["env"])
    (tmp_path / "secret.txt").write_text(CANARIES["file"] + "\n")
    (tmp_path / "c.toml").write_text(DOC)
    return dc.load(tmp_path / "c.toml")


def test_desired_state_connections_and_fields_hide_secrets(desired: dc.DesiredState) -> None:
    """repr and str of the state, each connection, its fields and every dict in them hide literals."""
    conn = desired.connections["warehouse"]
    extra = conn.fields["extra"]
    for obj in (desired, conn, conn.fields, extra, extra["deep"], extra["hosts"][0], desired.connections):
        assert_hidden(repr(obj), f"repr of {type(obj).__name__}")
        assert_hidden(str(obj), f"str of {type(obj).__name__}")
    assert "(sensitive value)" in repr(conn.fields)
    assert "'host': 'wh.internal'" in repr(conn.fields) and "'sslmode': 'require'" in repr(extra)


def test_references_show_as_references(desired: dc.DesiredState) -> None:
    """A secret reference holds no value: the fields' repr shows it as the reference it is."""
    fields = desired.connections["warehouse"].fields
    assert "SecretRef(kind='env', target='REPR_LOGIN'" in repr(fields)


def test_fields_are_still_a_plain_mapping(desired: dc.DesiredState) -> None:
    """The masked fields compare, copy and serialize as the dict they are; values are intact."""
    fields = desired.connections["warehouse"].fields
    assert isinstance(fields, dict) and fields["password"] == CANARIES["literal"]
    assert fields["extra"]["deep"] == {"private_key": CANARIES["nested"]}
    assert json.loads(json.dumps(fields["extra"]))["api_token"] == CANARIES["extra"]
    assert dict(fields) == {**fields}


def test_resolved_values_hide_secrets(desired: dc.DesiredState) -> None:
    """Values resolved from references (and their fields) print no secret, by name or by source."""
    resolved = resolve_desired(desired, resolve_secret)
    for conn_id, values in resolved.items():
        for obj in (values, values.fields, resolved):
            assert_hidden(repr(obj), f"{conn_id}: repr of {type(obj).__name__}")
            assert_hidden(str(obj), f"{conn_id}: str of {type(obj).__name__}")
    assert (
        resolved[Address("connection", "files")].get("schema") == CANARIES["file"]
    )  # resolved, just not shown


def test_stored_rows_hide_secrets() -> None:
    """A StoredObject and its Values print no secret (a guard: both already hid everything)."""
    values = Values({"password": CANARIES["literal"], "host": "h"})
    row = StoredObject(Address("connection", "warehouse"), 1, values, "fingerprint")
    for obj in (row, row.values):
        assert_hidden(repr(obj), f"repr of {type(obj).__name__}")
        assert_hidden(str(obj), f"str of {type(obj).__name__}")


def test_connections_built_by_hand_hide_secrets_too(tmp_path: Path) -> None:
    """A DesiredConnection made from a plain dict (a plan file, a script) masks its fields as well."""
    conn = DesiredConnection(
        Address("connection", "x"),
        tmp_path,
        {
            "password": CANARIES["literal"],
            "extra": {"secret": CANARIES["extra"]},
            "login": SecretRef("env", "X"),
        },
    )
    assert_hidden(repr(conn.fields), "repr of hand-made fields")
    assert_hidden(repr(conn.fields["extra"]), "repr of hand-made extra")
    from_dicts = dc.desired_from_dicts({"x": {"conn_type": "http", "password": CANARIES["literal"]}})
    assert_hidden(repr(from_dicts.connections["x"].fields), "repr of desired_from_dicts fields")


def test_a_variable_under_a_sensitive_key_prints_masked(tmp_path: Path) -> None:
    """A variable named like a secret (api_token) is masked in its fields' repr, JSON values too."""
    (tmp_path / "v.toml").write_text(
        '[variables.api_token]\nvalue = "canary-repr-var-7g"\n'
        '[variables.db_password]\nvalue = { user = "x", secret = "canary-repr-var-8h" }\n'
        '[variables.region]\nvalue = "eu-west-1"\n'
    )
    desired = dc.load(tmp_path / "v.toml")
    for key in ("api_token", "db_password"):
        fields = desired.objects[Address("variable", key)].fields
        for text in (repr(fields), str(fields), repr(desired)):
            assert "canary-repr-var" not in text, text
        assert "(sensitive value)" in repr(fields)
    assert "eu-west-1" in repr(desired.objects[Address("variable", "region")].fields)


def test_only_tables_holding_a_secret_are_masked(tmp_path: Path) -> None:
    """A table without a secret key inside prints as the plain dict it is (one object fewer to keep)."""
    from declarative_conns.core.sensitive import MaskedFields

    (tmp_path / "c.toml").write_text(
        '[connections.plain]\nconn_type = "http"\nextra = { timeout = 3, nested = { a = 1 } }\n'
        f'[connections.secret]\nconn_type = "http"\nextra = {{ a = {{ token = "{CANARIES["nested"]}" }} }}\n'
    )
    desired = dc.load(tmp_path / "c.toml")
    plain = desired.connections["plain"].fields
    assert type(plain) is MaskedFields and type(plain["extra"]) is dict
    assert repr(plain["extra"]) == "{'timeout': 3, 'nested': {'a': 1}}"
    extra = desired.connections["secret"].fields["extra"]
    assert type(extra) is dict and type(extra["a"]) is MaskedFields
    assert_hidden(repr(extra), "an extra holding a masked table")
