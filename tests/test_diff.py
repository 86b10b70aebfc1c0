"""The pure diff: desired connections + rows -> Plan."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from declarative_conns.core.crypto import Digester
from declarative_conns.core.diff import compute_plan, detect_drift, field_changes
from declarative_conns.core.model import Plan, Settings, StoredRow, Values, canonical_json, normalize_fields
from declarative_conns.output.text import render_text
from declarative_conns.targets.database.rows import recorded_form
from tests.strategies import CANARY, COLUMNS, desired_states, row_sets, values


def v(**fields: Any) -> Values:
    """Build normalized values from keyword fields."""
    return Values(normalize_fields(fields))


def row(row_id: int, conn_id: str, **fields: Any) -> StoredRow:
    """Build a stored row."""
    return StoredRow(row_id, conn_id, v(**fields), f"fp{row_id}")


def kinds(plan: Plan) -> list[tuple[str, str, int | None, str]]:
    """Return (kind, conn_id, row_id, reason) per action."""
    return [(a.kind, a.conn_id, a.row_id, a.reason) for a in plan.actions]


@pytest.mark.parametrize(
    ("desired", "rows", "settings", "expected"),
    [
        ({"a": v(conn_type="http")}, [], Settings(), [("create", "a", None, "declared")]),
        ({"a": v(conn_type="http")}, [row(1, "a", conn_type="http")], Settings(), []),
        (
            {"a": v(conn_type="http", host="new")},
            [row(1, "a", conn_type="http", host="old")],
            Settings(),
            [("update", "a", 1, "declared")],
        ),
        (
            {"a": v(conn_type="http")},
            [row(3, "a", conn_type="http"), row(7, "a", conn_type="ftp"), row(5, "a", conn_type="s3")],
            Settings(),
            [("delete", "a", 5, "duplicate"), ("delete", "a", 7, "duplicate")],
        ),
        ({}, [row(1, "u", conn_type="ftp")], Settings(), []),
        ({}, [row(1, "u", conn_type="ftp")], Settings(prune=True), [("delete", "u", 1, "pruned")]),
        ({}, [row(1, "aws_default", conn_type="aws")], Settings(prune=True, ignore=("*_default",)), []),
        (
            {},
            [row(1, "u", conn_type="ftp"), row(2, "u", conn_type="ftp")],
            Settings(),
            [("delete", "u", 2, "duplicate")],
        ),
        ({}, [row(1, "u", conn_type="ftp"), row(2, "u", conn_type="ftp")], Settings(dedupe=False), []),
        (
            {},
            [row(1, "u", conn_type="ftp"), row(2, "u", conn_type="ftp")],
            Settings(ignore=("u",)),
            [],
        ),
    ],
)
def test_plan_actions(
    desired: dict[str, Values], rows: list[StoredRow], settings: Settings, expected: list[Any]
) -> None:
    """Declared, duplicate, unmanaged, pruned and ignored connections get the contract's actions."""
    assert kinds(compute_plan(desired, rows, settings, COLUMNS)) == expected


def test_removed_managed_connection_is_deleted() -> None:
    """A conn_id dconn managed that is no longer declared is destroyed, all its rows."""
    rows = [row(1, "gone", conn_type="ftp"), row(2, "gone", conn_type="ftp")]
    plan = compute_plan({}, rows, Settings(), COLUMNS, managed=frozenset({"gone"}))
    assert kinds(plan) == [("delete", "gone", 1, "removed"), ("delete", "gone", 2, "removed")]


def test_duplicates_kept_row_is_updated() -> None:
    """With duplicates, the lowest id is updated and the others deleted, naming the kept row."""
    rows = [row(2, "a", conn_type="http", host="x"), row(9, "a", conn_type="http", host="y")]
    plan = compute_plan({"a": v(conn_type="http", host="y")}, rows, Settings(), COLUMNS)
    assert kinds(plan) == [("update", "a", 2, "declared"), ("delete", "a", 9, "duplicate")]
    assert plan.actions[1].kept_row_id == 2
    assert plan.summary.destroy == 1 and plan.summary.duplicates == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"conn_type": "http", "host": ""}, {"conn_type": "http", "host": None}),
        ({"conn_type": "http", "host": None}, {"conn_type": "http"}),
        ({"conn_type": "http", "extra": {}}, {"conn_type": "http", "extra": None}),
        ({"conn_type": "http", "extra": {"a": 1, "b": 2}}, {"conn_type": "http", "extra": {"b": 2, "a": 1}}),
        ({"conn_type": "http", "port": "5432"}, {"conn_type": "http", "port": 5432}),
        ({"conn_type": "postgresql"}, {"conn_type": "postgres"}),
    ],
)
def test_semantic_equality(before: dict[str, Any], after: dict[str, Any]) -> None:
    """'' == NULL == unset, {} == NULL, key order, port text and postgresql spelling are no change."""
    assert field_changes(v(**before), v(**after), COLUMNS) == ()


@pytest.mark.parametrize(
    ("before", "after", "path", "kind"),
    [
        ({"extra": {"a": 1}}, {"extra": {"a": True}}, ("extra", "a"), "change"),
        ({"extra": {"a": 1}}, {"extra": {"a": 1.5}}, ("extra", "a"), "change"),
        ({"extra": {"a": 1}}, {"extra": {"a": 1, "b": 2}}, ("extra", "b"), "add"),
        ({"host": "h"}, {}, ("host",), "remove"),
    ],
)
def test_field_changes_paths(
    before: dict[str, Any], after: dict[str, Any], path: tuple[str, ...], kind: str
) -> None:
    """deepdiff's findings become one FieldChange per path, with JSON types told apart (1 != true)."""
    changes = field_changes(v(conn_type="x", **before), v(conn_type="x", **after), COLUMNS)
    assert [(c.path, c.kind) for c in changes] == [(path, kind)]


def test_sensitive_change_hides_values() -> None:
    """A changed password or token-like extra is flagged sensitive and its sides are redacted."""
    changes = field_changes(
        v(conn_type="x", password="old-pw", extra={"api_token": "t1"}),
        v(conn_type="x", password="new-pw", extra={"api_token": "t2"}),
        COLUMNS,
    )
    assert all(c.sensitive for c in changes)
    assert "pw" not in repr([(c.before, c.after) for c in changes])
    assert "t1" not in repr([(c.before, c.after) for c in changes])


@given(desired_states)
def test_diff_of_state_with_itself_is_empty(desired: dict[str, Values]) -> None:
    """A database that holds exactly the desired connections plans no action."""
    rows = [StoredRow(i, c, val, f"fp{i}") for i, (c, val) in enumerate(sorted(desired.items()), start=1)]
    plan = compute_plan(desired, rows, Settings(), COLUMNS)
    assert plan.actions == ()
    assert not plan.summary.has_changes


def simulate(plan: Plan, rows: list[StoredRow]) -> list[StoredRow]:
    """Carry a plan out on in-memory rows, as apply does on the table."""
    by_id = {r.row_id: r for r in rows}
    next_id = max(by_id, default=0) + 1
    for action in plan.actions:
        if action.kind == "delete":
            del by_id[action.row_id]  # type: ignore[arg-type]
        elif action.kind == "update":
            by_id[action.row_id] = StoredRow(action.row_id, action.conn_id, action.values, "new")  # type: ignore[arg-type]
        else:
            by_id[next_id] = StoredRow(next_id, action.conn_id, action.values, "new")  # type: ignore[arg-type]
            next_id += 1
    return list(by_id.values())


@settings(max_examples=200)
@given(desired_states, row_sets(), st.booleans(), st.booleans())
def test_applying_the_plan_yields_the_desired_state(
    desired: dict[str, Values], rows: list[StoredRow], prune: bool, dedupe: bool
) -> None:
    """After the plan, each declared conn_id has one row equal to its declaration."""
    plan = compute_plan(desired, rows, Settings(prune=prune, dedupe=dedupe), COLUMNS)
    after = simulate(plan, rows)
    for conn_id, want in desired.items():
        found = [r for r in after if r.conn_id == conn_id]
        assert len(found) == 1
        assert canonical_json(dict(found[0].values.fields)) == canonical_json(dict(want.fields))
    if prune:
        assert {r.conn_id for r in after} == set(desired)
    if dedupe:
        ids = [r.conn_id for r in after]
        assert len(ids) == len(set(ids))
    again = compute_plan(desired, after, Settings(prune=prune, dedupe=dedupe), COLUMNS)
    assert not [a for a in again.actions if a.conn_id in desired]


@settings(max_examples=200)
@given(desired_states, row_sets(), st.booleans())
def test_render_never_contains_a_secret(
    desired: dict[str, Values], rows: list[StoredRow], prune: bool
) -> None:
    """No text, markdown or JSON rendering of any plan contains a password or secret extra."""
    from declarative_conns.output.report import render_json, render_markdown
    from declarative_conns.output.text import PlanContext

    plan = compute_plan(desired, rows, Settings(prune=prune), COLUMNS)
    context = PlanContext("sqlite:///x.db", "2.x", len(rows), len(rows), verbose=True)
    for text in (render_text(plan, context), render_markdown(plan, context), render_json(plan, context)):
        assert CANARY not in text


def test_values_repr_hides_everything() -> None:
    """The repr of connection values (as in a traceback) shows no field value."""
    assert "s3cr3t" not in repr(v(conn_type="x", password="s3cr3t", host="s3cr3t"))


def test_old_key_rows_are_reported() -> None:
    """Rows decrypted by a key other than the ring's first are listed for rotation."""
    rows = [
        StoredRow(1, "a", v(conn_type="x"), "f", key_index=1),
        StoredRow(2, "b", v(conn_type="x"), "f", key_index=0),
    ]
    assert compute_plan({}, rows, Settings(), COLUMNS).old_key_rows == ("a",)


def test_created_secret_is_shown_as_sensitive() -> None:
    """A created password, token extra and nested secret render as (sensitive value), others in clear."""
    from declarative_conns.output.text import PlanContext

    want = v(
        conn_type="http",
        host="h.example",
        password=CANARY,
        extra={"api_token": CANARY, "n": {"secret": CANARY}, "timeout": 3},
    )
    text = render_text(compute_plan({"a": want}, [], Settings(), COLUMNS), PlanContext("u", "2.x", 0, 0))
    assert CANARY not in text
    assert "  + password        = (sensitive value)\n" in text
    assert "  + extra.api_token = (sensitive value)\n" in text
    assert '  + extra.n         = {"secret": "(sensitive value)"}\n' in text
    assert '  + host            = "h.example"\n' in text
    assert "  + extra.timeout   = 3\n" in text


def test_many_new_fields_are_listed_one_by_one() -> None:
    """A sparse row gaining most of its fields is explained per field, never as one whole-row change."""
    changes = field_changes(
        v(conn_type="x"), v(conn_type="x", host="h", login="l", port=1, extra={"a": 1}), COLUMNS
    )
    assert [(c.path, c.kind) for c in changes] == [
        (("host",), "add"),
        (("login",), "add"),
        (("port",), "add"),
        (("extra", "a"), "add"),
    ]


SECRET_PATHS = st.frozensets(
    st.sampled_from(
        [
            ("login",),
            ("host",),
            ("password",),
            ("extra",),
            ("extra", "sslmode"),
            ("extra", "nested"),
            ("extra", "k"),
        ]
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    connections=st.lists(
        st.tuples(values(), values(), st.booleans(), SECRET_PATHS, SECRET_PATHS, SECRET_PATHS),
        min_size=1,
        max_size=4,
    ),
    with_snapshot=st.booleans(),
)
def test_drift_shortcut_through_the_snapshot_agrees_with_the_full_comparison(
    connections: list[tuple[Values, Values, bool, frozenset[Any], frozenset[Any], frozenset[Any]]],
    with_snapshot: bool,
) -> None:
    """A snapshot form identical to the applied record means no drift; otherwise drift is computed in full.

    Each record was made at the last apply (with that run's secret paths); the snapshot form is
    the row recorded with this run's declared secret paths. Several connections, among them one
    named like a field ("extra"), some drifted and some not: either way detect_drift gives one answer.
    """
    digester = Digester.from_secret(b"k" * 32, source="test")
    names = ["a", "extra", "host", "z"]
    rows, applied, snapshot = [], {}, {}
    for row_id, (conn_id, item) in enumerate(zip(names, connections, strict=False), start=1):
        declared, stored, same, applied_paths, declared_paths, row_paths = item
        fields = declared.fields if same else stored.fields
        rows.append(StoredRow(row_id, conn_id, Values(fields, row_paths), f"fp{row_id}"))
        applied[conn_id] = recorded_form(Values(declared.fields, applied_paths), digester, COLUMNS)
        snapshot[conn_id] = recorded_form(Values(fields, row_paths | declared_paths), digester, COLUMNS)

    def to_recorded(v: Values) -> dict[str, Any]:
        return recorded_form(v, digester, COLUMNS)

    managed = frozenset(applied)
    full = detect_drift(applied, rows, to_recorded, managed)
    shortcut = detect_drift(applied, rows, to_recorded, managed, current=snapshot if with_snapshot else None)
    assert shortcut == full


def test_drift_of_a_connection_named_extra_after_a_drifted_one() -> None:
    """Regression: the long path for one connection must not change what the next is compared with."""
    digester = Digester.from_secret(b"k" * 32, source="test")

    def to_recorded(v: Values) -> dict[str, Any]:
        return recorded_form(v, digester, COLUMNS)

    declared_a = v(conn_type="http", host="a", extra={"conn_type": "http", "host": "h"})
    declared_extra = v(conn_type="http", host="h")
    applied = {"a": to_recorded(declared_a), "extra": to_recorded(declared_extra)}
    rows = [
        StoredRow(1, "a", v(conn_type="http", host="a2", extra={"conn_type": "http", "host": "h"}), "f1"),
        StoredRow(2, "extra", v(conn_type="http", host="h2"), "f2"),
    ]
    snapshot = {r.conn_id: to_recorded(r.values) for r in rows}
    for current in (None, snapshot):
        drift = detect_drift(applied, rows, to_recorded, frozenset(applied), current=current)
        assert [d.conn_id for d in drift] == ["a", "extra"]
