"""Tests for the per-conn_type rules and their checker (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from declarative_conns.config.conn_types import (
    TypeRules,
    check_connection,
    load_type_rules,
)
from declarative_conns.config.findings import Finding
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "conn_types"
BUILTIN_TYPES = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))
CANARY = "canary-7f3a9c-do-not-print"


@pytest.fixture(scope="module")
def rules() -> TypeRules:
    """Load the built-in rules once for the module."""
    return load_type_rules()


def by_path(findings: list[Finding]) -> dict[str, Finding]:
    """Index findings by their path."""
    return {f.path: f for f in findings}


@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        (
            {"conn_type": "postgres", "extra": {"ssl_mode": "require"}},
            "connections.w.extra.ssl_mode",
            "unknown for postgres; did you mean 'sslmode'?",
        ),
        (
            {"conn_type": "aws", "extra": {"region": "eu-west-1"}},
            "connections.w.extra.region",
            "unknown for aws; did you mean 'region_name'?",
        ),
        (
            {"conn_type": "aws", "host": "s3.local"},
            "connections.w.host",
            "not used by aws connections; did you mean 'extra.endpoint_url'?",
        ),
        (
            {"conn_type": "google_cloud_platform", "login": "me"},
            "connections.w.login",
            "not used by google_cloud_platform connections",
        ),
        (
            {"conn_type": "ssh", "extra_json": '{"no_host_key_chek": true}'},
            "connections.w.extra_json.no_host_key_chek",
            "unknown for ssh; did you mean 'no_host_key_check'?",
        ),
    ],
)
def test_warnings_name_the_key_and_suggest(
    rules: TypeRules, table: dict[str, Any], path: str, message: str
) -> None:
    """Unknown extras and unused fields are warnings with a suggestion."""
    finding = by_path(check_connection(rules, "w", table))[path]
    assert (finding.message, finding.severity) == (message, "warning")


@pytest.mark.parametrize(
    "table",
    [
        {"conn_type": "postgres", "extra": {"ssl_mode": "require"}},
        {"conn_type": "aws", "host": "s3.local"},
    ],
)
def test_strict_turns_warnings_into_errors(rules: TypeRules, table: dict[str, Any]) -> None:
    """With strict=True every warning is reported as an error, with the same message."""
    lenient = check_connection(rules, "w", table)
    strict = check_connection(rules, "w", table, strict=True)
    assert lenient and all(f.severity == "warning" for f in lenient)
    assert [(f.path, f.message) for f in strict] == [(f.path, f.message) for f in lenient]
    assert all(f.severity == "error" for f in strict)


@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        (
            {"conn_type": "postgres", "port": "5432"},
            "connections.w.port",
            "expected an integer from 1 to 65535",
        ),
        (
            {"conn_type": "mysql", "port": 0},
            "connections.w.port",
            "expected an integer from 1 to 65535",
        ),
        (
            {"conn_type": "postgres", "extra": {"iam": "yes"}},
            "connections.w.extra.iam",
            "expected a boolean (true or false, not text)",
        ),
        (
            {"conn_type": "redis", "extra": {"ssl": "false"}},
            "connections.w.extra.ssl",
            "expected a boolean (true or false, not text)",
        ),
        (
            {"conn_type": "ssh", "extra": {"no_host_key_check": "yes"}},
            "connections.w.extra.no_host_key_check",
            'expected a boolean, or the text "true"/"false"',
        ),
        (
            {"conn_type": "postgres", "extra": {"sslmode": "required"}},
            "connections.w.extra.sslmode",
            "expected one of 'disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'",
        ),
        (
            {"conn_type": "google_cloud_platform", "extra": {"num_retries": "five"}},
            "connections.w.extra.num_retries",
            "expected a whole number (or its digits as text)",
        ),
        (
            {"conn_type": "postgres", "port": {"from_env": "PORT"}},
            "connections.w.port",
            "a secret reference gives text, but this key expects an integer from 1 to 65535",
        ),
    ],
)
def test_wrong_value_types_are_errors(
    rules: TypeRules, table: dict[str, Any], path: str, message: str
) -> None:
    """A known key or field with a value of the wrong type is an error naming the type."""
    finding = by_path(check_connection(rules, "w", table))[path]
    assert (finding.message, finding.severity) == (message, "error")


@pytest.mark.parametrize(
    "table",
    [
        {
            "conn_type": "postgres",
            "port": 5432,
            "extra": {"sslmode": "require", "iam": True},
        },
        {
            "conn_type": "ssh",
            "extra": {"no_host_key_check": "true", "conn_timeout": "10"},
        },
        {
            "conn_type": "snowflake",
            "extra": {"extra__snowflake__account": "acme", "insecure_mode": "False"},
        },
        {"conn_type": "mongo", "extra": {"replicaset": "rs0", "srv": True}},
        {
            "conn_type": "mysql",
            "extra": {"client": "mysql-connector-python", "ssl_ca": "/ca.pem"},
        },
        {
            "conn_type": "http",
            "extra": {"Authorization": "x", "X-Request-Source": "airflow"},
        },
        {"conn_type": "generic", "host": "h", "extra": {"anything": [1, 2]}},
        {"conn_type": "aws", "extra": {"verify": False, "region_name": "eu-west-1"}},
    ],
)
def test_valid_connections_have_no_findings(rules: TypeRules, table: dict[str, Any]) -> None:
    """Connections written as the provider documents them pass without findings."""
    assert check_connection(rules, "w", table) == []


@pytest.mark.parametrize("kind", ["from_env", "from_file", "from_command"])
def test_secret_references_stand_for_text(rules: TypeRules, kind: str) -> None:
    """A secret reference is accepted wherever text is, at top level, in extra and nested."""
    ref: dict[str, Any] = {kind: ["vault", "read"] if kind == "from_command" else "X"}
    table = {
        "conn_type": "aws",
        "password": ref,
        "extra": {
            "aws_secret_access_key": ref,
            "verify": ref,
            "config_kwargs": {"proxies": {"https": ref}},
        },
    }
    assert check_connection(rules, "w", table) == []


def test_unknown_conn_type_is_a_note(rules: TypeRules) -> None:
    """An unknown conn_type yields one note and no checks of its fields."""
    findings = check_connection(rules, "w", {"conn_type": "my_provider", "extra": {"x": 1}}, strict=True)
    assert findings == [
        Finding(
            None,
            "connections.w.conn_type",
            "unknown connection type 'my_provider'; its fields and extras are not checked",
            "note",
        )
    ]


@pytest.mark.parametrize("strict", [False, True])
def test_s3_alias_is_a_note_naming_its_replacement(rules: TypeRules, strict: bool) -> None:
    """conn_type s3 yields a note pointing at aws, also under strict; its extras are still checked."""
    findings = check_connection(rules, "w", {"conn_type": "s3", "extra": {"region": "x"}}, strict=strict)
    assert [(f.path, f.message, f.severity) for f in findings] == [
        ("connections.w.conn_type", "'s3' is a legacy alias; use 'aws'", "note"),
        (
            "connections.w.extra.region",
            "unknown for s3; did you mean 'region_name'?",
            "error" if strict else "warning",
        ),
    ]


def test_loaded_fields_with_secret_ref_objects_are_checked(rules: TypeRules) -> None:
    """A loaded connection's fields (SecretRef objects, parsed extra) check like its TOML table."""
    ref = SecretRef("env", "AWS_SECRET")
    fields = {
        "conn_type": "aws",
        "password": ref,
        "extra": {"aws_secret_access_key": ref, "verify": ref, "regin": "x"},
    }
    assert [(f.path, f.severity) for f in check_connection(rules, "w", fields)] == [
        ("connections.w.extra.regin", "warning")
    ]
    bad = check_connection(rules, "w", {"conn_type": "postgres", "extra": {"iam": ref}})
    assert [(f.path, f.severity) for f in bad] == [("connections.w.extra.iam", "error")]


def test_http_passes_other_keys_as_headers(rules: TypeRules) -> None:
    """For http, unknown keys are headers: only a near-miss of an option is flagged."""
    findings = check_connection(rules, "w", {"conn_type": "http", "extra": {"verfy": True, "X-Team": "a"}})
    assert [(f.path, f.message) for f in findings] == [
        (
            "connections.w.extra.verfy",
            "unknown for http (sent as an HTTP header); did you mean 'verify'?",
        )
    ]


def test_paths_quote_conn_ids_and_keys_that_are_not_bare(rules: TypeRules) -> None:
    """A conn_id or key with dots is quoted in the path, as TOML would write it."""
    findings = check_connection(rules, "a.b", {"conn_type": "postgres", "extra": {"x.y": 1}})
    assert [f.path for f in findings] == ['connections."a.b".extra."x.y"']


def test_invalid_extra_json_is_left_to_the_document_layer(rules: TypeRules) -> None:
    """extra_json that is not JSON is skipped here, not reported twice."""
    assert check_connection(rules, "w", {"conn_type": "postgres", "extra_json": "{nope"}) == []


@pytest.mark.parametrize(
    "table",
    [
        {
            "conn_type": "postgres",
            "extra": {"iam": CANARY, "sslmode": CANARY, "ssl_mode": CANARY},
        },
        {
            "conn_type": "aws",
            "host": CANARY,
            "port": CANARY,
            "extra": {"region": CANARY, "verify": 3},
        },
        {
            "conn_type": "ssh",
            "extra_json": json.dumps({"compress": CANARY, "ciphers": CANARY}),
        },
        {
            "conn_type": "snowflake",
            "extra": {"grant_type": CANARY, "proxy_port": CANARY},
        },
    ],
)
@pytest.mark.parametrize("strict", [False, True])
def test_messages_never_contain_values(rules: TypeRules, table: dict[str, Any], strict: bool) -> None:
    """No finding repeats a value, which may be a secret."""
    findings = check_connection(rules, "w", table, strict=strict)
    assert findings
    assert not any(CANARY in f.path or CANARY in f.message for f in findings)


def write_json(path: Path, document: Any) -> Path:
    """Write a JSON document and return its path."""
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_user_file_adds_a_type_and_overrides_a_builtin(tmp_path: Path) -> None:
    """A {"conn_types": ...} file adds new types and replaces built-in ones wholesale."""
    extra = {"type": "object", "properties": {"tenant": {"type": "string"}}}
    user = write_json(
        tmp_path / "types.json",
        {
            "conn_types": {
                "acme": {
                    "properties": {"extra": extra},
                    "x-dconn-unused-fields": ["port"],
                },
                "postgres": {"properties": {"extra": extra}},
            }
        },
    )
    rules = load_type_rules(user)
    acme = by_path(check_connection(rules, "w", {"conn_type": "acme", "port": 1, "extra": {"tenent": "x"}}))
    assert acme["connections.w.port"].message == "not used by acme connections"
    assert acme["connections.w.extra.tenent"].message == "unknown for acme; did you mean 'tenant'?"
    pg = by_path(check_connection(rules, "w", {"conn_type": "postgres", "extra": {"sslmode": "require"}}))
    assert pg["connections.w.extra.sslmode"].message == "unknown for postgres"
    assert "mysql" in rules.conn_types


def test_user_file_may_hold_one_schema_naming_its_type(tmp_path: Path) -> None:
    """A single schema with x-dconn-conn-type is accepted and can use local $defs."""
    schema = {
        "x-dconn-conn-type": "acme",
        "$defs": {"flag": {"type": "boolean"}},
        "properties": {"extra": {"properties": {"fast": {"$ref": "#/$defs/flag"}}}},
    }
    rules = load_type_rules(write_json(tmp_path / "acme.schema.json", schema))
    findings = check_connection(rules, "w", {"conn_type": "acme", "extra": {"fast": "yes"}})
    assert [(f.path, f.severity) for f in findings] == [("connections.w.extra.fast", "error")]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"conn_types": {"acme": 3}}),
        json.dumps({"conn_types": {"acme": {"type": "no-such-type"}}}),
        json.dumps({"conn_types": {"acme": {"x-dconn-unused-fields": "port"}}}),
        json.dumps({"conn_types": {"acme": {"x-dconn-default-port": "22"}}}),
    ],
)
def test_bad_user_file_is_an_input_error_naming_the_file(tmp_path: Path, content: str) -> None:
    """A malformed user schema file raises InputError with the file's name."""
    path = tmp_path / "bad-types.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=r"bad-types\.json"):
        load_type_rules(path)


def test_invalid_user_schema_names_the_place_in_the_file(tmp_path: Path) -> None:
    """An invalid keyword deep in a user schema is reported with its path inside the file."""
    bad = {"conn_types": {"acme": {"properties": {"extra": {"properties": {"n": {"type": "nope"}}}}}}}
    path = write_json(tmp_path / "types.json", bad)
    with pytest.raises(
        InputError, match=r"types\.json: conn_types\.acme\.properties\.extra\.properties\.n\.type: "
    ):
        load_type_rules(path)


def test_missing_user_file_is_an_input_error(tmp_path: Path) -> None:
    """A user schema file that does not exist raises InputError naming it."""
    with pytest.raises(InputError, match=r"absent\.json"):
        load_type_rules(tmp_path / "absent.json")


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_every_shipped_schema_is_valid_draft_2020_12(name: str) -> None:
    """Each file in schemas/conn_types is a valid Draft 2020-12 schema naming its own type."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-dconn-conn-type"] == name
    assert schema["$comment"].startswith("Sources: ")
    extra = schema["properties"]["extra"]
    assert extra["additionalProperties"] is True
    assert all("description" in key for key in extra["properties"].values())


def test_the_issue_types_are_all_shipped(rules: TypeRules) -> None:
    """Every conn_type named in issue 9 has built-in rules."""
    wanted = {
        "postgres",
        "mysql",
        "mssql",
        "mongo",
        "aws",
        "s3",
        "http",
        "sqlite",
        "snowflake",
    }
    wanted |= {"google_cloud_platform", "ssh", "sftp", "redis", "slack", "generic"}
    assert wanted <= set(rules.conn_types)


@pytest.mark.parametrize(
    ("conn_type", "port"),
    [
        ("postgres", 5432),
        ("mysql", 3306),
        ("mssql", 1433),
        ("ssh", 22),
        ("aws", None),
        ("nope", None),
    ],
)
def test_default_ports_come_from_the_schemas(rules: TypeRules, conn_type: str, port: int | None) -> None:
    """The provider's default port is exposed where the provider defines one."""
    assert rules.default_port(conn_type) == port


def test_null_for_a_known_key_is_accepted() -> None:
    """A JSON null (only possible in extra_json) reads as unset to a hook, so it is no type error."""
    rules = load_type_rules()
    assert check_connection(rules, "a", {"conn_type": "aws", "extra": {"region_name": None}}) == []
