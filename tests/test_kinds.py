"""The kinds of object: one conn_id rule, normalisation, and which values are secret."""

from __future__ import annotations

import re
from typing import Any

import pytest

from declarative_conns.config.resources import load_schema
from declarative_conns.core.kinds import CONN_ID_RULE, CONNECTION, POOL, VARIABLE


@pytest.mark.parametrize(
    "conn_id",
    ["a", "db.main", "x:y", "z/1", "a#b!(c)-d", "back\\slash", "é", "a" * 250, "", "a b", "abc\n", "a" * 251],
)
def test_the_schema_and_the_code_hold_one_conn_id_rule(conn_id: str) -> None:
    """The document schema's conn_id rule and the one export uses accept exactly the same ids."""
    names = load_schema("connections.schema.json")["properties"]["connections"]["propertyNames"]
    by_schema = (
        names["minLength"] <= len(conn_id) <= names["maxLength"]
        and re.search(names["pattern"], conn_id) is not None
    )
    assert by_schema == bool(CONN_ID_RULE.fullmatch(conn_id))


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (
            CONNECTION,
            {"conn_type": "postgresql", "host": "", "port": "5432", "extra": {}},
            {"conn_type": "postgres", "port": 5432},
        ),
        (VARIABLE, {"value": "", "description": ""}, {"value": ""}),
        (VARIABLE, {"value": {}}, {"value": {}}),
        (POOL, {"slots": "-1"}, {"slots": -1, "include_deferred": False}),
    ],
)
def test_normalisation_makes_equal_objects_equal(
    kind: Any, raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    """'' is unset in text fields, numbers written as digits are ints, an empty extra is none, a variable keeps ''."""
    normalized = {k: v for k, v in kind.normalize(raw).items() if v is not None}
    assert normalized == expected


@pytest.mark.parametrize(
    ("kind", "key", "path", "secret"),
    [
        (CONNECTION, "c", ("password",), True),
        (CONNECTION, "c", ("extra", "api_token"), True),
        (CONNECTION, "c", ("extra", "region"), False),
        (CONNECTION, "c", ("host",), False),
        (VARIABLE, "slack_token", ("value",), True),
        (VARIABLE, "bucket", ("value",), False),
        (POOL, "etl", ("slots",), False),
    ],
)
def test_secret_by_name_or_key(kind: Any, key: str, path: tuple[str, ...], secret: bool) -> None:
    """A password, a secret-named extra key, a variable under a secret-named key are secret; nothing else."""
    assert (kind.is_secret_by_name(path) or path in kind.key_secret_paths(key)) is secret


def test_default_pool_is_protected() -> None:
    """default_pool can be changed (slots, include_deferred) but never deleted."""
    assert not POOL.can_delete("default_pool") and POOL.can_delete("etl")
    assert POOL.managed_fields("default_pool", POOL.fields) == ("slots", "include_deferred")


def test_stored_text_is_what_airflow_writes() -> None:
    """A variable's table is stored as Variable.set writes it (indent 2); a connection's extra compact."""
    from declarative_conns.core.kinds import CONNECTION, VARIABLE

    assert VARIABLE.stored_text({"a": [1]}) == '{\n  "a": [\n    1\n  ]\n}'
    assert CONNECTION.stored_text({"a": [1]}) == '{"a": [1]}'
