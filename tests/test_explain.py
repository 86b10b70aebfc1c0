"""core.diff explains a changed connection exactly as deepdiff's report of the whole row would."""

from __future__ import annotations

import os
from typing import Any

import pytest
from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from declarative_conns.core.diff import _change_kind, _Explainer, explain
from declarative_conns.core.kinds import CONNECTION, POOL, VARIABLE, Kind
from declarative_conns.core.model import FieldChange, Path, canonical_json
from declarative_conns.core.sensitive import HIDDEN

NAN = float("nan")
#: Examples for the property test; raise it (DCONN_EXPLAIN_EXAMPLES=20000) for a long search.
EXAMPLES = int(os.environ.get("DCONN_EXPLAIN_EXAMPLES", "1000"))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 1.0, -0.0, 0.0, NAN, 5432, "5432"]),
    st.builds(float, st.just("nan")),  # a NaN object of its own, unlike NAN
    st.text(alphabet="ab", max_size=2),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["k", "token", "n"]), inner, max_size=3)
    ),
    max_leaves=6,
)
fields = st.dictionaries(
    st.sampled_from(["conn_type", "host", "login", "password", "port", "extra"]),
    st.one_of(scalars, structures),
    min_size=1,
    max_size=4,
)
secret_paths = st.sets(st.sampled_from([("login",), ("extra",), ("extra", "k"), ("extra", "n", 0)]))


def _explain_whole_row(
    old: dict[str, Any], new: dict[str, Any], secrets: frozenset[Path]
) -> list[FieldChange]:
    """Explain a pair as dconn did before: one deepdiff of the whole row."""
    report = DeepDiff(dict(old), dict(new), view="tree", verbose_level=2, threshold_to_diff_deeper=0)
    explainer = _Explainer(secrets, CONNECTION)
    changes: list[FieldChange] = []
    for report_type, items in report.items():
        for item in items:
            kind = _change_kind(report_type)
            before = None if kind == "add" else item.t1
            after = None if kind == "remove" else item.t2
            changes.extend(explainer.split(tuple(item.path(output_format="list")), before, after, kind))
    return sorted(changes, key=reading_order)


def reading_order(change: FieldChange) -> tuple[int, str]:
    """Order changes as people read a connection: its fields in order, then by path."""
    fields = CONNECTION.fields
    name = str(change.path[0])
    return (fields.index(name) if name in fields else len(fields)), canonical_json(list(change.path))


@settings(max_examples=EXAMPLES, deadline=None)
@given(fields, fields, secret_paths)
def test_same_report_as_deepdiff_of_the_whole_row(
    old: dict[str, Any], new: dict[str, Any], secrets: set[Path]
) -> None:
    """Field by field, with deepdiff inside structures, gives the changes deepdiff gives for the row."""
    old = {k: v for k, v in old.items() if v is not None}
    new = {k: v for k, v in new.items() if v is not None}
    if not old or not new:
        return  # creates and deletes never reached deepdiff
    assert explain(old, new, frozenset(secrets), CONNECTION) == _explain_whole_row(
        old, new, frozenset(secrets)
    )


def test_changed_scalar_and_nested_extra() -> None:
    """A changed host is one change; inside extra, deepdiff names the key that changed."""
    old = {"conn_type": "postgres", "host": "a", "extra": {"sslmode": "prefer", "n": 1}}
    new = {"conn_type": "postgres", "host": "b", "extra": {"sslmode": "require", "n": 1}}
    changes = explain(old, new, frozenset(), CONNECTION)
    assert [(c.path, c.before, c.after, c.kind) for c in changes] == [
        (("host",), "a", "b", "change"),
        (("extra", "sslmode"), "prefer", "require", "change"),
    ]


@pytest.mark.parametrize(
    ("kind", "key", "old", "new", "expected"),
    [
        (CONNECTION, "c", {"password": "a"}, {"password": "b"}, [(("password",), True)]),
        (
            CONNECTION,
            "c",
            {"extra": {"api_key": "a"}},
            {"extra": {"api_key": "b"}},
            [(("extra", "api_key"), True)],
        ),
        (VARIABLE, "config", {"value": "a"}, {"value": "b"}, [(("value",), False)]),
        (VARIABLE, "db_password", {"value": "a"}, {"value": "b"}, [(("value",), True)]),
        (VARIABLE, "db_password", {"value": {"n": 1}}, {"value": {"n": 2}}, [(("value", "n"), True)]),
        (
            POOL,
            "p",
            {"slots": 1, "description": "a"},
            {"slots": 2},
            [(("slots",), False), (("description",), False)],
        ),
    ],
)
def test_secrecy_and_order_follow_the_kind(
    kind: Kind, key: str, old: dict[str, Any], new: dict[str, Any], expected: list[tuple[Path, bool]]
) -> None:
    """Each kind says which changes are secret (by field, by extra key, by the object's key) and their order."""
    changes = explain(old, new, kind.key_secret_paths(key), kind)
    assert [(c.path, c.sensitive) for c in changes] == expected
    assert all(c.before is HIDDEN and c.after is HIDDEN for c in changes if c.sensitive)
