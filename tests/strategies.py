"""Hypothesis strategies for declared and stored objects of every kind: connections, variables, pools."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from declarative_conns.core.kinds import BY_NAME, CONNECTION, POOL, VARIABLE
from declarative_conns.core.model import Address, StoredObject, Values

#: Every secret drawn holds this; no render may ever show it.
CANARY = "canary-s3cr3t-"

#: The connection fields of an Airflow 2.x table (team_name is 3.2+).
COLUMNS = tuple(f for f in CONNECTION.fields if f != "team_name")
#: The fields of each kind on an Airflow 2.7+ database (no teams).
FIELDS: dict[str, tuple[str, ...]] = {
    "connection": COLUMNS,
    "variable": ("value", "description"),
    "pool": ("slots", "description", "include_deferred"),
}

conn_ids = st.sampled_from(["a", "b", "c", "db.main", "x:y", "z/1", "aws_default"])
#: Variable keys: plain ones, and ones whose name makes the value secret (Airflow's masker rule).
SECRET_VARIABLE_KEYS = frozenset({"db_password", "api_token"})
variable_keys = st.sampled_from(["a", "config", "x.y", *sorted(SECRET_VARIABLE_KEYS)])
pool_names = st.sampled_from(["default_pool", "a", "etl", "backfill"])
text = st.one_of(st.none(), st.just(""), st.text(alphabet="abcxyz.-", min_size=1, max_size=6))
json_scalars = st.one_of(
    st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False, width=32), text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["k", "sslmode", "n"]), inner, max_size=3),
    ),
    max_leaves=6,
)
extras = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["sslmode", "region_name", "api_token", "nested", "aws_secret_access_key"]),
        json_values,
        max_size=4,
    ),
)


@st.composite
def values(draw: Any, referenced: bool = False) -> Values:
    """Draw one connection's values; every password and token is a recognisable canary.

    With `referenced`, the login may come from a secret reference (a canary, marked secret).
    """
    fields: dict[str, Any] = {
        "conn_type": draw(st.sampled_from(["postgres", "mysql", "aws", "http"])),
        "description": draw(text),
        "host": draw(text),
        "schema": draw(text),
        "login": draw(text),
        "password": draw(st.one_of(st.none(), st.integers(0, 99).map(lambda i: f"{CANARY}{i}"))),
        "port": draw(st.one_of(st.none(), st.integers(1, 65535))),
        "extra": draw(extras),
    }
    extra = fields["extra"]
    if isinstance(extra, dict):
        for key in ("api_token", "aws_secret_access_key"):
            if key in extra:
                extra[key] = f"{CANARY}{key}"
    secret_paths: frozenset[tuple[str | int, ...]] = frozenset()
    if referenced and draw(st.booleans()):
        fields["login"] = f"{CANARY}login"
        secret_paths = frozenset({("login",)})
    return Values(CONNECTION.normalize(fields), secret_paths)


@st.composite
def variable_values(draw: Any, key: str, referenced: bool = False) -> Values:
    """Draw one variable's values as declared: a string or a table; a canary when secret.

    A key with a sensitive name makes the value secret; with `referenced`, any value may come
    from a secret reference (a canary, marked secret).
    """
    # Read as the loader and the targets read it; whether a canary goes in is decided apart from
    # the code under test, so a broken rule shows as a canary in a render.
    secret_paths = VARIABLE.key_secret_paths(key)
    if referenced and draw(st.booleans()):
        value: Any = f"{CANARY}ref"
        secret_paths |= {("value",)}
    elif key in SECRET_VARIABLE_KEYS:
        value = draw(st.one_of(st.just(f"{CANARY}{key}"), st.just({"nested": [f"{CANARY}{key}"]})))
    else:
        value = draw(
            st.one_of(
                st.text(alphabet="abc {}", min_size=1, max_size=5),
                st.dictionaries(st.sampled_from(["k", "n"]), json_values, min_size=1, max_size=3),
                st.lists(json_scalars, max_size=3),
            )
        )
    fields = {"value": value, "description": draw(text)}
    return Values(VARIABLE.normalize(fields), frozenset(secret_paths))


@st.composite
def pool_values(draw: Any) -> Values:
    """Draw one pool's values as declared."""
    fields = {
        "slots": draw(st.integers(-1, 128)),
        "description": draw(text),
        "include_deferred": draw(st.booleans()),
    }
    return Values(POOL.normalize(fields))


def stored_form(kind: str, key: str, declared: Values) -> Values:
    """Return values as a target reads them back: a variable's table as JSON text, no references known."""
    fields = dict(declared.fields)
    if kind == "variable" and isinstance(fields["value"], (dict, list)):
        fields["value"] = json.dumps(fields["value"], indent=2)
    return Values(BY_NAME[kind].normalize(fields), BY_NAME[kind].key_secret_paths(key))


def any_values(kind: str, key: str, referenced: bool = False) -> st.SearchStrategy[Values]:
    """Return the strategy of one object's declared values for a kind."""
    if kind == "connection":
        return values(referenced)
    if kind == "variable":
        return variable_values(key, referenced)
    return pool_values()


KEYS = {"connection": conn_ids, "variable": variable_keys, "pool": pool_names}


@st.composite
def declared_objects(
    draw: Any, kinds: tuple[str, ...] = ("connection", "variable", "pool")
) -> dict[Address, Values]:
    """Draw a desired state over several kinds: up to 4 objects of each, some keys shared across kinds."""
    declared: dict[Address, Values] = {}
    for kind in kinds:
        for key in draw(st.sets(KEYS[kind], max_size=4)):
            declared[Address(kind, key)] = draw(any_values(kind, key, referenced=True))
    return declared


@st.composite
def stored_objects(
    draw: Any, kinds: tuple[str, ...] = ("connection", "variable", "pool")
) -> list[StoredObject]:
    """Draw the objects a target holds, kinds mixed, duplicates of a key included, some under an old key."""
    objects = []
    for row_id in range(1, draw(st.integers(0, 10)) + 1):
        kind = draw(st.sampled_from(kinds))
        key = draw(KEYS[kind])
        stored = stored_form(kind, key, draw(any_values(kind, key)))
        # Which key of the ring decrypted it: pools hold nothing encrypted.
        key_index = None if kind == "pool" else draw(st.sampled_from([None, 0, 1]))
        objects.append(StoredObject(Address(kind, key), row_id, stored, f"fp{row_id}", key_index))
    return objects


@st.composite
def row_sets(draw: Any) -> list[StoredObject]:
    """Draw rows of a connection table, duplicates of a conn_id included."""
    rows = []
    for row_id in range(1, draw(st.integers(0, 8)) + 1):
        rows.append(
            StoredObject(Address("connection", draw(conn_ids)), row_id, draw(values()), f"fp{row_id}")
        )
    return rows


desired_states = st.dictionaries(
    conn_ids.map(lambda c: Address("connection", c)), values(referenced=True), max_size=5
)
