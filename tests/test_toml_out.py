"""Tests for rendering connection specs as a dconn TOML document."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from declarative_conns.core.sensitive_words import is_sensitive_key
from declarative_conns.onboarding.toml_writer import (
    FIELD_ORDER,
    REFERENCE_KEYS,
    Placeholder,
    render_document,
    render_env_example,
)

CANARY = "canary~Pa55w0rd"


def conn(conn_id: str, **fields: Any) -> dict[str, Any]:
    """Return a full spec: every field None unless given."""
    spec: dict[str, Any] = dict.fromkeys((*FIELD_ORDER, "extra"))
    spec.update(conn_id=conn_id, **fields)
    return spec


def test_typical_export_renders_exactly() -> None:
    """A typical connection renders in field order, secrets as commented from_env references."""
    specs = [
        conn(
            "my_postgres",
            conn_type="postgres",
            description="Analytics warehouse",
            host="db.internal",
            schema="analytics",
            login="etl",
            password=CANARY,
            port=5432,
            extra={"sslmode": "require"},
        ),
        conn(
            "aws_default",
            conn_type="aws",
            extra={"aws_secret_access_key": CANARY, "region_name": "eu-west-1"},
        ),
    ]
    rendered = render_document(specs, header="Exported by dconn")
    assert rendered.text == (
        "# Exported by dconn\n"
        "\n"
        "version = 1\n"
        "\n"
        "[connections.aws_default]\n"
        'conn_type = "aws"\n'
        "[connections.aws_default.extra]\n"
        'aws_secret_access_key = { from_env = "AWS_DEFAULT_EXTRA_AWS_SECRET_ACCESS_KEY" }\n'
        'region_name = "eu-west-1"\n'
        "\n"
        "[connections.my_postgres]\n"
        'conn_type = "postgres"\n'
        'description = "Analytics warehouse"\n'
        'host = "db.internal"\n'
        'schema = "analytics"\n'
        'login = "etl"\n'
        'password = { from_env = "MY_POSTGRES_PASSWORD" }\n'
        "port = 5432\n"
        "[connections.my_postgres.extra]\n"
        'sslmode = "require"\n'
    )
    assert rendered.placeholders == [
        Placeholder(
            "AWS_DEFAULT_EXTRA_AWS_SECRET_ACCESS_KEY",
            "aws_default",
            "extra.aws_secret_access_key",
        ),
        Placeholder("MY_POSTGRES_PASSWORD", "my_postgres", "password"),
    ]


def test_none_and_empty_fields_and_empty_extra_are_left_out() -> None:
    """None and "" fields, and an empty extra, are not written."""
    text = render_document([conn("c", conn_type="http", host="", login=None, extra={})]).text
    assert tomllib.loads(text) == {
        "version": 1,
        "connections": {"c": {"conn_type": "http"}},
    }


def test_no_specs_gives_a_version_only_document() -> None:
    """With no connections the document is still valid and says so."""
    text = render_document([]).text
    assert tomllib.loads(text) == {"version": 1}
    assert "# no connections" in text


@pytest.mark.parametrize("conn_id", ["a.b", "x/y", "host:5432", "#hash", "back\\slash", "(p)!", "-_"])
def test_conn_ids_that_need_quoting_round_trip(conn_id: str) -> None:
    """conn_ids with dots, slashes, colons, # and the like are quoted as table keys."""
    loaded = tomllib.loads(render_document([conn(conn_id, conn_type="http")]).text)
    assert loaded["connections"] == {conn_id: {"conn_type": "http"}}


def test_null_in_extra_becomes_compact_extra_json() -> None:
    """An extra holding a null is written as extra_json in a literal string, exactly."""
    extra = {"a": None, "b": [1, {"c": None}]}
    text = render_document([conn("c", conn_type="http", extra=extra)]).text
    assert """extra_json = '{"a":null,"b":[1,{"c":null}]}'""" in text
    assert json.loads(tomllib.loads(text)["connections"]["c"]["extra_json"]) == extra


@pytest.mark.parametrize("extra", [{"q": "it's", "n": None}, {"big": 2**64}, {"del": "\x7f", "n": None}])
def test_extra_json_falls_back_to_a_basic_string(extra: dict[str, Any]) -> None:
    """Quotes, control characters and integers beyond 64 bits still round-trip via extra_json."""
    loaded = tomllib.loads(render_document([conn("c", conn_type="http", extra=extra)]).text)
    assert json.loads(loaded["connections"]["c"]["extra_json"]) == extra


def test_null_beside_a_secret_keeps_both_in_extra_json() -> None:
    """When an extra holds a null and a secret, extra_json keeps the null and a reference for the secret."""
    extra = {
        "region_name": None,
        "aws_session_token": CANARY,
        "cfg": {"x": None, "y": 1},
    }
    rendered = render_document([conn("aws", conn_type="aws", extra=extra)])
    assert CANARY not in rendered.text
    assert "left out" not in rendered.text and rendered.notes == []
    loaded = tomllib.loads(rendered.text)["connections"]["aws"]
    assert json.loads(loaded["extra_json"]) == {
        "region_name": None,
        "aws_session_token": {"from_env": "AWS_EXTRA_AWS_SESSION_TOKEN"},
        "cfg": {"x": None, "y": 1},
    }


def test_null_beside_a_secret_is_kept_with_include_secrets() -> None:
    """With include_secrets nothing needs hiding, so extra_json keeps the null and the secret."""
    extra = {"region_name": None, "aws_session_token": CANARY}
    loaded = tomllib.loads(
        render_document([conn("aws", conn_type="aws", extra=extra)], include_secrets=True).text
    )
    assert json.loads(loaded["connections"]["aws"]["extra_json"]) == extra


def test_sensitive_values_by_type() -> None:
    """Under sensitive keys each non-empty string is hidden, objects and arrays keep their shape."""
    extra = {
        "keyfile_dict": {"private_key": CANARY, "type": "service_account", "n": 2},
        "proxies": [CANARY, ""],
        "use_proxy": True,
        "token_ttl": 3600,
        "api_key": "",
        "nested": {"deeper": {"client_secret": CANARY}},
    }
    rendered = render_document([conn("gcp", conn_type="google_cloud_platform", extra=extra)])
    assert CANARY not in rendered.text
    loaded = tomllib.loads(rendered.text)["connections"]["gcp"]["extra"]
    assert loaded == {
        "keyfile_dict": {
            "private_key": {"from_env": "GCP_EXTRA_KEYFILE_DICT_PRIVATE_KEY"},
            "type": {"from_env": "GCP_EXTRA_KEYFILE_DICT_TYPE"},
            "n": 2,
        },
        "proxies": [{"from_env": "GCP_EXTRA_PROXIES_0"}, ""],
        "use_proxy": True,
        "token_ttl": 3600,
        "api_key": "",
        "nested": {"deeper": {"client_secret": {"from_env": "GCP_EXTRA_NESTED_DEEPER_CLIENT_SECRET"}}},
    }
    assert [p.field for p in rendered.placeholders] == [
        "extra.keyfile_dict.private_key",
        "extra.keyfile_dict.type",
        "extra.proxies.0",
        "extra.nested.deeper.client_secret",
    ]
    assert rendered.notes == []


def test_reference_keys_inside_an_extra_are_left_out_with_a_note() -> None:
    """An extra key named from_env/from_file/from_command is dropped (dconn would read a reference)."""
    extra = {"cfg": {"from_env": "X", "y": 1}, "from_file": "f", "n": None}
    rendered = render_document([conn("c", conn_type="http", extra=extra)])
    loaded = tomllib.loads(rendered.text)["connections"]["c"]
    assert json.loads(loaded["extra_json"]) == {"cfg": {"y": 1}, "n": None}
    assert "# extra.cfg.from_env left out: dconn reads it as a secret reference\n" in rendered.text
    assert [n.split(" (")[0] for n in rendered.notes] == [
        "connection 'c': extra.cfg.from_env left out",
        "connection 'c': extra.from_file left out",
    ]


def test_team_name_is_written_after_port() -> None:
    """team_name (Airflow 3.2+) is a top-level field written before the extra table."""
    text = render_document([conn("c", conn_type="http", port=1, team_name="data", extra={"a": 1})]).text
    assert 'port = 1\nteam_name = "data"\n[connections.c.extra]\n' in text


@pytest.mark.parametrize(
    ("conn_ids", "expected"),
    [
        (["my_postgres"], ["MY_POSTGRES_PASSWORD"]),
        (["a.b", "a_b", "a-b"], ["A_B_PASSWORD", "A_B_PASSWORD_2", "A_B_PASSWORD_3"]),
        (["1st"], ["_1ST_PASSWORD"]),
        (["--x::y//"], ["X_Y_PASSWORD"]),
        (["café"], ["CAF_PASSWORD"]),
    ],
)
def test_placeholder_names_are_derived_and_unique(conn_ids: list[str], expected: list[str]) -> None:
    """Variable names are conn_id + field, upper-cased, non-alphanumeric runs as _, suffixed on collision."""
    specs = [conn(conn_id, conn_type="http", password=CANARY) for conn_id in conn_ids]
    rendered = render_document(specs)
    assert [p.variable for p in rendered.placeholders] == expected


def test_suffix_never_collides_with_a_natural_name() -> None:
    """A suffixed name that a later secret would take naturally makes that one move on."""
    extra = {"token": CANARY, "token!": CANARY, "token_2": CANARY}
    rendered = render_document([conn("a", conn_type="http", extra=extra)])
    assert [p.variable for p in rendered.placeholders] == [
        "A_EXTRA_TOKEN",
        "A_EXTRA_TOKEN_2",
        "A_EXTRA_TOKEN_2_2",
    ]


def test_comments_sit_above_their_table() -> None:
    """Comment lines given for a conn_id are written right above its table, escaped to one line each."""
    text = render_document(
        [conn("legacy_s3", conn_type="aws")], comments={"legacy_s3": ["3 rows\nhave it", "kept: row 7"]}
    ).text
    assert "\n# 3 rows\\nhave it\n# kept: row 7\n[connections.legacy_s3]\n" in text


def test_footer_lines_end_the_document() -> None:
    """A footer becomes comment lines after the last connection."""
    text = render_document([conn("c", conn_type="http")], footer="left out: x").text
    assert text.endswith('conn_type = "http"\n\n# left out: x\n')


def test_header_lines_become_comments() -> None:
    """Each header line becomes a comment, blank lines a bare #, existing # kept."""
    text = render_document([], header="dconn export\n\n# from db").text
    assert text.startswith("# dconn export\n#\n# from db\n\nversion = 1\n")


def test_one_spec_per_conn_id_is_required() -> None:
    """Two specs with one conn_id are a programming error, not a broken document."""
    with pytest.raises(ValueError, match="one spec per conn_id"):
        render_document([conn("c", conn_type="http"), conn("c", conn_type="ftp")])


def test_env_example_lists_each_placeholder() -> None:
    """The .env.example names each variable with its connection and field, value empty."""
    text = render_env_example([Placeholder("MY_PG_PASSWORD", "my_pg", "password")])
    assert "# my_pg: password\nMY_PG_PASSWORD=\n" in text
    assert all(line.startswith("#") or not line or line.endswith("=") for line in text.splitlines())


# -- properties --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
#: Extra keys; from_env/from_file/from_command are left out by design (a test above pins that).
plain_keys = st.text(max_size=10).filter(lambda key: key not in REFERENCE_KEYS)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(plain_keys, children, max_size=4),
    max_leaves=12,
)
extras = st.none() | st.dictionaries(plain_keys, json_values, max_size=5)
optional_text = st.none() | st.text(max_size=15)
conn_ids = st.text(
    alphabet=st.characters(categories=("L", "N"), include_characters="_#!()-.:/\\"),
    min_size=1,
    max_size=20,
)


@st.composite
def spec_lists(draw: st.DrawFn, extra_strategy: st.SearchStrategy[Any] = extras) -> list[dict[str, Any]]:
    """Draw specs with distinct conn_ids and every kind of field value."""
    ids = draw(st.lists(conn_ids, max_size=4, unique=True))
    return [
        conn(
            conn_id,
            conn_type=draw(st.text(min_size=1, max_size=10)),
            description=draw(optional_text),
            host=draw(optional_text),
            schema=draw(optional_text),
            login=draw(optional_text),
            password=draw(optional_text),
            port=draw(st.none() | st.integers(1, 65535)),
            extra=draw(extra_strategy),
        )
        for conn_id in ids
    ]


def loaded_fields(table: dict[str, Any]) -> dict[str, Any]:
    """Return a loaded connection table with extra_json parsed back into extra."""
    result = dict(table)
    if "extra_json" in result:
        result["extra"] = json.loads(result.pop("extra_json"))
    return result


def expected_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """Return what a spec must load back as: set fields only, a non-empty extra."""
    fields = {name: spec[name] for name in FIELD_ORDER if spec[name] not in (None, "")}
    if spec["extra"]:
        fields["extra"] = spec["extra"]
    return fields


@given(spec_lists())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_with_secrets(specs: list[dict[str, Any]]) -> None:
    """Loading the document rendered with include_secrets gives back every spec's values."""
    loaded = tomllib.loads(render_document(specs, include_secrets=True).text)
    assert loaded.pop("version") == 1
    got = {cid: loaded_fields(table) for cid, table in loaded.get("connections", {}).items()}
    assert got == {spec["conn_id"]: expected_fields(spec) for spec in specs}


def holds_null(value: Any) -> bool:
    """Tell whether a JSON value holds a null or an integer beyond 64 bits anywhere."""
    if value is None or (isinstance(value, int) and not -(2**63) <= value < 2**63):
        return True
    if isinstance(value, dict):
        return any(holds_null(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_null(item) for item in value)
    return False


def resolve(value: Any, env: dict[str, Any]) -> Any:
    """Replace every { from_env = VAR } by env[VAR], as dconn would resolve it."""
    if isinstance(value, dict):
        if set(value) == {"from_env"}:
            return env[value["from_env"]]
        return {key: resolve(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, env) for item in value]
    return value


def secret_at(spec: dict[str, Any], field: str) -> Any:
    """Return the value of a spec at a dotted placeholder field path."""
    node: Any = spec
    for part in field.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


dotless_keys = st.sampled_from(
    ["password", "token", "host", "nested", "client_secret", "region", "use_proxy"]
)
dotless_extras = st.none() | st.dictionaries(
    dotless_keys,
    st.recursive(
        json_scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(dotless_keys, children, max_size=3),
        max_leaves=10,
    ),
    max_size=5,
)


@given(spec_lists(dotless_extras))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_placeholders_resolve_back_to_the_specs(specs: list[dict[str, Any]]) -> None:
    """Resolving each placeholder to the value it hides gives back every spec exactly."""
    rendered = render_document(specs)
    by_id = {spec["conn_id"]: spec for spec in specs}
    env = {p.variable: secret_at(by_id[p.conn_id], p.field) for p in rendered.placeholders}
    loaded = tomllib.loads(rendered.text).get("connections", {})
    got = {cid: resolve(loaded_fields(table), env) for cid, table in loaded.items()}
    assert got == {spec["conn_id"]: expected_fields(spec) for spec in specs}


secret_texts = st.text(alphabet="abcXYZ019", max_size=6).map(lambda tail: CANARY + tail)
plain_texts = st.text(alphabet=st.characters(exclude_characters="~"), max_size=10)
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | plain_texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(plain_texts, children, max_size=3),
    max_leaves=8,
)
secret_keys = st.sampled_from(["password", "aws_secret_access_key", "api_key", "token", "Private-Key"])


@given(
    password=secret_texts,
    secrets=st.dictionaries(secret_keys, secret_texts | st.lists(secret_texts, min_size=1), max_size=3),
    plain=st.dictionaries(plain_texts.filter(lambda k: not is_sensitive_key(k)), plain_values, max_size=3),
    nested_key=secret_keys,
    nested=secret_texts,
)
@settings(max_examples=300)
def test_without_include_secrets_no_canary_appears(
    password: str,
    secrets: dict[str, Any],
    plain: dict[str, Any],
    nested_key: str,
    nested: str,
) -> None:
    """Without include_secrets no password or sensitive extra value appears in the text."""
    extra = {**plain, **secrets, "deep": {"list": [{nested_key: nested}]}}
    spec = conn("c.d", conn_type="http", login="me", password=password, extra=extra)
    rendered = render_document([spec])
    assert "~" not in rendered.text
    assert rendered.placeholders[0] == Placeholder("C_D_PASSWORD", "c.d", "password")
    assert (
        Placeholder(
            "C_D_EXTRA_DEEP_LIST_0_" + nested_key.upper().replace("-", "_"),
            "c.d",
            f"extra.deep.list.0.{nested_key}",
        )
        in rendered.placeholders
    )
