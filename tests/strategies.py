"""Hypothesis strategies for connections, rows and desired states."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from declarative_conns.core.model import FIELDS, StoredRow, Values, normalize_fields

CANARY = "canary-s3cr3t-"

conn_ids = st.sampled_from(["a", "b", "c", "db.main", "x:y", "z/1", "aws_default"])
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
def values(draw: Any) -> Values:
    """Draw one connection's values; every password and token is a recognisable canary."""
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
    return Values(normalize_fields(fields))


@st.composite
def row_sets(draw: Any) -> list[StoredRow]:
    """Draw rows of a connection table, duplicates of a conn_id included."""
    rows = []
    for row_id in range(1, draw(st.integers(0, 8)) + 1):
        rows.append(StoredRow(row_id, draw(conn_ids), draw(values()), f"fp{row_id}"))
    return rows


desired_states = st.dictionaries(conn_ids, values(), max_size=5)
COLUMNS = tuple(f for f in FIELDS if f != "team_name")
