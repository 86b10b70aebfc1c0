"""diff explains a changed connection exactly as deepdiff's report of the whole row would."""

from __future__ import annotations

import os
from typing import Any

from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from declarative_conns.core.diff import _explain, _kind, _reading_order, _split_extra
from declarative_conns.core.model import FieldChange, Path

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
    changes: list[FieldChange] = []
    for report_type, items in report.items():
        for item in items:
            kind = _kind(report_type)
            before = None if kind == "add" else item.t1
            after = None if kind == "remove" else item.t2
            changes.extend(_split_extra(tuple(item.path(output_format="list")), before, after, kind, secrets))
    return sorted(changes, key=lambda c: _reading_order(c.path))


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
    assert _explain(old, new, frozenset(secrets)) == _explain_whole_row(old, new, frozenset(secrets))


def test_changed_scalar_and_nested_extra() -> None:
    """A changed host is one change; inside extra, deepdiff names the key that changed."""
    old = {"conn_type": "postgres", "host": "a", "extra": {"sslmode": "prefer", "n": 1}}
    new = {"conn_type": "postgres", "host": "b", "extra": {"sslmode": "require", "n": 1}}
    changes = _explain(old, new, frozenset())
    assert [(c.path, c.before, c.after, c.kind) for c in changes] == [
        (("host",), "a", "b", "change"),
        (("extra", "sslmode"), "prefer", "require", "change"),
    ]
