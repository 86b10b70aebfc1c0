"""The fast validity check agrees with jsonschema on every schema it compiles."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from declarative_conns.fastschema import compile_check
from declarative_conns.resources import load_schema

#: Examples per property test; raise it (DCONN_FASTSCHEMA_EXAMPLES=20000) for a long search.
EXAMPLES = int(os.environ.get("DCONN_FASTSCHEMA_EXAMPLES", "300"))

# -- random schemas and instances -------------------------------------------------------------

KEYS = ["a", "b", "from_env", "extra", "x-y"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 1.5, -2.0]),
    st.text(alphabet="ab_1 ", max_size=4),
)
instances = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
type_names = st.sampled_from(["object", "array", "string", "boolean", "null", "integer", "number"])
leaf_schemas = st.one_of(
    st.booleans(),
    st.just({}),
    st.builds(lambda t: {"type": t}, type_names),
    st.builds(lambda ts: {"type": ts}, st.lists(type_names, min_size=1, max_size=3, unique=True)),
    st.builds(lambda n: {"minLength": n}, st.integers(0, 3)),
    st.builds(lambda n: {"maxLength": n}, st.integers(0, 3)),
    st.builds(lambda p: {"pattern": p}, st.sampled_from(["^a", "b$", "^[a_]*$", "1"])),
    st.builds(lambda n: {"minimum": n}, st.integers(-2, 2)),
    st.builds(lambda n: {"maximum": n}, st.sampled_from([-1, 0, 1.5, 2])),
    st.builds(lambda n: {"exclusiveMinimum": n}, st.integers(-2, 2)),
    st.builds(lambda n: {"exclusiveMaximum": n}, st.integers(-2, 2)),
    st.builds(lambda v: {"const": v}, instances),
    st.builds(lambda vs: {"enum": vs}, st.lists(instances, min_size=1, max_size=3)),
    st.builds(lambda ks: {"required": ks}, st.lists(st.sampled_from(KEYS), max_size=2, unique=True)),
    st.builds(lambda n: {"minProperties": n}, st.integers(0, 2)),
    st.builds(lambda n: {"maxProperties": n}, st.integers(0, 2)),
    st.builds(lambda n: {"minItems": n}, st.integers(0, 2)),
    st.builds(lambda n: {"maxItems": n}, st.integers(0, 2)),
    st.builds(lambda u: {"uniqueItems": u}, st.booleans()),
)


def _composites(inner: Any) -> Any:
    """Schemas built from smaller ones, with every applicator the module supports."""
    return st.one_of(
        st.builds(lambda ps: {"properties": ps}, st.dictionaries(st.sampled_from(KEYS), inner, max_size=2)),
        st.builds(
            lambda ps, extra: {"properties": ps, "additionalProperties": extra},
            st.dictionaries(st.sampled_from(KEYS), inner, max_size=2),
            inner,
        ),
        st.builds(
            lambda pp, extra: {"patternProperties": pp, "additionalProperties": extra},
            st.dictionaries(st.sampled_from(["^a", "_", "y$"]), inner, max_size=2),
            inner,
        ),
        st.builds(lambda s: {"propertyNames": s}, inner),
        st.builds(lambda s: {"items": s}, inner),
        st.builds(lambda ss: {"anyOf": ss}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda ss: {"allOf": ss}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda ss: {"oneOf": ss}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda s: {"not": s}, inner),
        st.builds(lambda i, t: {"if": i, "then": t}, inner, inner),
        st.builds(lambda i, e: {"if": i, "else": e}, inner, inner),
        st.builds(lambda i, t, e: {"if": i, "then": t, "else": e}, inner, inner, inner),
        st.builds(
            lambda a, b: {**a, **b} if isinstance(a, dict) and isinstance(b, dict) else a, inner, inner
        ),
    )


schemas = st.recursive(leaf_schemas, _composites, max_leaves=6)


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas, instances)
def test_agrees_with_jsonschema_on_random_schemas(schema: Any, instance: Any) -> None:
    """For any schema of supported keywords, the check says what jsonschema's is_valid says."""
    check = compile_check(schema)
    assert check is not None
    assert check(instance) == Draft202012Validator(schema).is_valid(instance)


@given(instances)
def test_recursive_refs(instance: Any) -> None:
    """A $ref into $defs may recurse (as the document schema's extra_value does)."""
    schema = {
        "$defs": {
            "node": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/node"}}]}
        },
        "$ref": "#/$defs/node",
    }
    check = compile_check(schema)
    assert check is not None
    assert check(instance) == Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize(
    "schema",
    [
        {"prefixItems": [{}], "items": {}},
        {"format": "email"},
        {"$anchor": "x"},
        {"properties": {"a": {"$defs": {}}}},
        {"dependentRequired": {"a": ["b"]}},
        {"unevaluatedProperties": False},
        {"$ref": "other.json#/x"},
        {"minLenght": 1},
        {"ref": "#/$defs/x"},
    ],
)
def test_other_keywords_are_not_compiled(schema: dict[str, Any]) -> None:
    """A schema with a keyword outside the supported set compiles to None (jsonschema decides)."""
    assert compile_check(schema) is None


# -- dconn's own schemas ----------------------------------------------------------------------

secret_refs = st.one_of(
    st.builds(lambda n: {"from_env": n}, st.sampled_from(["PW", "1BAD", "", "a_b"])),
    st.builds(lambda p: {"from_file": p}, st.sampled_from(["f", ""])),
    st.builds(lambda c: {"from_command": c}, st.lists(st.sampled_from(["vault", "read", 3]), max_size=2)),
    st.just({"from_env": "A", "from_file": "b"}),
    st.just({}),
)
text_values = st.one_of(st.text(alphabet="abc.-", max_size=5), secret_refs, st.integers(0, 3), st.none())
extra_values = st.recursive(
    st.one_of(scalars, secret_refs),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(["sslmode", "token", "n"]), inner, max_size=2),
    ),
    max_leaves=5,
)
connections = st.fixed_dictionaries(
    {},
    optional={
        "conn_type": st.one_of(st.sampled_from(["postgres", "http", ""]), st.integers(0, 1)),
        "description": text_values,
        "host": text_values,
        "schema": text_values,
        "login": text_values,
        "password": text_values,
        "port": st.one_of(st.integers(-1, 70000), st.sampled_from(["5432", 5432.0, True])),
        "extra": st.one_of(
            st.dictionaries(st.sampled_from(["sslmode", "token", "n"]), extra_values, max_size=3), scalars
        ),
        "extra_json": st.one_of(st.just('{"a": 1}'), st.integers(0, 1)),
        "team_name": st.one_of(st.text(alphabet="t", max_size=3), st.just("t" * 51)),
        "unknown": st.just(1),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, "1", 1.0, True]),
        "settings": st.fixed_dictionaries(
            {},
            optional={
                "prune": st.sampled_from([True, "yes"]),
                "ignore": st.lists(st.sampled_from(["*_default", "", 3]), max_size=2),
                "dedupe": st.booleans(),
                "strict": st.booleans(),
                "type_rules": st.sampled_from(["rules.json", ""]),
                "other": st.just(1),
            },
        ),
        "connections": st.one_of(
            st.dictionaries(
                st.sampled_from(["ok", "db.main", "x:y", "", "bad id", "é", "a" * 251]),
                connections,
                max_size=3,
            ),
            st.just([]),
        ),
        "extra_top": st.just(1),
    },
)


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_agrees_with_jsonschema_on_connection_documents(document: dict[str, Any]) -> None:
    """On documents near and far from valid, the check of the TOML schema matches jsonschema."""
    schema = load_schema("connections.schema.json")
    check = compile_check(schema)
    assert check is not None
    assert check(document) == Draft202012Validator(schema).is_valid(document)


def _state() -> dict[str, Any]:
    """Return a valid state document with one managed connection."""
    return {
        "format_version": 1,
        "lineage": "l",
        "serial": 2,
        "written_at": "2026-01-01T00:00:00+00:00",
        "target": {
            "url": "sqlite:///a.db",
            "identity": {"family": "sqlite", "host": None, "port": None, "database": "a.db", "schema": None},
        },
        "digest_key": {"id": "abcd", "source": "fernet"},
        "managed": ["a", "b"],
        "applied": {"a": {"conn_type": "http", "password": {"$digest": "f" * 64}}},
        "snapshot": {
            "taken_at": "2026-01-01T00:00:00+00:00",
            "shape": "2.x",
            "rows": [{"id": 1, "conn_id": "a", "fingerprint": "ab", "fields": {"conn_type": "http"}}],
        },
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every value inside a JSON document."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data())
def test_agrees_with_jsonschema_on_state_documents(data: st.DataObject) -> None:
    """Replacing or removing any part of a valid state changes the check as it changes jsonschema's."""
    schema = load_schema("state.schema.json")
    check = compile_check(schema)
    assert check is not None
    document = _state()
    assert check(document) and Draft202012Validator(schema).is_valid(document)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(document)[1:]))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(instances)
        document = json.loads(json.dumps(document))
    assert check(document) == Draft202012Validator(schema).is_valid(document)


@pytest.mark.parametrize("name", ["connections.schema.json", "state.schema.json"])
def test_dconn_schemas_compile(name: str) -> None:
    """dconn's own schemas use only supported keywords, so large documents validate fast."""
    assert compile_check(load_schema(name)) is not None


def _key_rules() -> list[Any]:
    """Return every field and extra-key rule of the shipped conn_types."""
    from declarative_conns.conn_types import load_type_rules

    rules = load_type_rules()
    found = []
    for conn_type in rules.conn_types:
        rule = rules.get(conn_type)
        assert rule is not None
        found += [(conn_type, name, key) for name, key in {**rule.fields, **rule.extras}.items()]
    return found


SAMPLES = [
    None,
    True,
    0,
    1,
    443,
    70000,
    -1,
    1.5,
    "",
    "x",
    "require",
    "https",
    "10",
    [],
    ["a"],
    [1],
    {},
    {"a": 1},
]


@pytest.mark.parametrize(("conn_type", "name", "key_rule"), _key_rules())
def test_conn_type_rules_use_the_fast_check(conn_type: str, name: str, key_rule: Any) -> None:
    """Every shipped conn_type key compiles to a fast check that judges values as jsonschema does."""
    jsonschema_check = Draft202012Validator(key_rule.schema).is_valid
    fell_back = isinstance(getattr(key_rule.is_valid, "__self__", None), Draft202012Validator)
    assert not fell_back, f"{conn_type}.{name} fell back to jsonschema"
    for value in SAMPLES:
        assert key_rule.is_valid(value) == jsonschema_check(value), (conn_type, name, value)
