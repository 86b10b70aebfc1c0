"""The pure plan: declared connections + stored objects -> Plan of typed operations; and drift."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from declarative_conns.core.crypto import Digester
from declarative_conns.core.diff import field_changes
from declarative_conns.core.drift import detect_drift
from declarative_conns.core.kinds import CONNECTION
from declarative_conns.core.model import Address, Settings, StoredObject, Values, canonical_json
from declarative_conns.core.operations import Create, Delete, DeleteReason, Plan, Reencrypt, Update
from declarative_conns.core.planner import compute_plan
from declarative_conns.core.recorded import recorded_form
from declarative_conns.output.text import PlanContext, render_text
from tests.strategies import CANARY, COLUMNS, desired_states, row_sets, values

KINDS = {"connection": CONNECTION}
DEFAULTS = Settings()
Described = tuple[type, str, int | None, DeleteReason | None]


def v(**fields: Any) -> Values:
    """Build normalized connection values from keyword fields."""
    return Values(CONNECTION.normalize(fields))


def conn(conn_id: str) -> Address:
    """Return a connection's address."""
    return Address("connection", conn_id)


def row(row_id: int, conn_id: str, **fields: Any) -> StoredObject:
    """Build a stored connection row."""
    return StoredObject(conn(conn_id), row_id, v(**fields), f"fp{row_id}")


def plan_of(
    desired: dict[str, Values],
    rows: list[StoredObject],
    settings: Settings = DEFAULTS,
    *,
    managed: frozenset[str] = frozenset(),
    rotate: bool = False,
) -> Plan:
    """Plan connections declared by conn_id against rows, as a database target's columns allow."""
    return compute_plan(
        {conn(c): val for c, val in desired.items()},
        rows,
        settings,
        ("connection",),
        {"connection": COLUMNS},
        managed=frozenset(conn(c) for c in managed),
        rotate=rotate,
    )


def described(plan: Plan) -> list[Described]:
    """Return (operation type, conn_id, row_id, delete reason) per operation."""
    return [(type(op), op.address.key, op.row_id, getattr(op, "reason", None)) for op in plan.operations]


def context(rows: int = 0, connections: int = 0, verbose: bool = False) -> PlanContext:
    """Return the heading context of an Airflow 2.x connection table."""
    return PlanContext("u", "Airflow 2.x table", "2.x", {"connection": (connections, rows)}, verbose)


@pytest.mark.parametrize(
    ("desired", "rows", "settings", "expected"),
    [
        ({"a": v(conn_type="http")}, [], Settings(), [(Create, "a", None, None)]),
        ({"a": v(conn_type="http")}, [row(1, "a", conn_type="http")], Settings(), []),
        (
            {"a": v(conn_type="http", host="new")},
            [row(1, "a", conn_type="http", host="old")],
            Settings(),
            [(Update, "a", 1, None)],
        ),
        (
            {"a": v(conn_type="http")},
            [row(3, "a", conn_type="http"), row(7, "a", conn_type="ftp"), row(5, "a", conn_type="s3")],
            Settings(),
            [(Delete, "a", 5, DeleteReason.DUPLICATE), (Delete, "a", 7, DeleteReason.DUPLICATE)],
        ),
        ({}, [row(1, "u", conn_type="ftp")], Settings(), []),
        ({}, [row(1, "u", conn_type="ftp")], Settings(prune=True), [(Delete, "u", 1, DeleteReason.PRUNED)]),
        ({}, [row(1, "aws_default", conn_type="aws")], Settings(prune=True, ignore=("*_default",)), []),
        (
            {},
            [row(1, "u", conn_type="ftp"), row(2, "u", conn_type="ftp")],
            Settings(),
            [(Delete, "u", 2, DeleteReason.DUPLICATE)],
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
def test_plan_operations(
    desired: dict[str, Values], rows: list[StoredObject], settings: Settings, expected: list[Described]
) -> None:
    """Declared, duplicate, unmanaged, pruned and ignored connections get the contract's operations."""
    assert described(plan_of(desired, rows, settings)) == expected


def test_removed_managed_connection_is_deleted() -> None:
    """A conn_id dconn managed that is no longer declared is destroyed, all its rows."""
    rows = [row(1, "gone", conn_type="ftp"), row(2, "gone", conn_type="ftp")]
    plan = plan_of({}, rows, managed=frozenset({"gone"}))
    assert described(plan) == [
        (Delete, "gone", 1, DeleteReason.REMOVED),
        (Delete, "gone", 2, DeleteReason.REMOVED),
    ]


def test_duplicates_kept_row_is_updated() -> None:
    """With duplicates, the lowest id is updated and the others deleted, naming the kept row."""
    rows = [row(2, "a", conn_type="http", host="x"), row(9, "a", conn_type="http", host="y")]
    plan = plan_of({"a": v(conn_type="http", host="y")}, rows)
    assert described(plan) == [(Update, "a", 2, None), (Delete, "a", 9, DeleteReason.DUPLICATE)]
    duplicate = plan.operations[1]
    assert isinstance(duplicate, Delete) and duplicate.kept_row_id == 2
    assert plan.summary.destroy == 1 and plan.summary.duplicates == 1


def test_rotate_reencrypts_old_key_rows_no_other_operation_rewrites() -> None:
    """--rotate re-encrypts each old-key row, except rows an update or delete rewrites and ignored ones."""
    rows = [
        StoredObject(conn("kept"), 1, v(conn_type="x"), "f1", key_index=1),
        StoredObject(conn("changed"), 2, v(conn_type="x"), "f2", key_index=1),
        StoredObject(conn("aws_default"), 3, v(conn_type="x"), "f3", key_index=1),
        StoredObject(conn("current"), 4, v(conn_type="x"), "f4", key_index=0),
    ]
    desired = {"kept": v(conn_type="x"), "changed": v(conn_type="y"), "current": v(conn_type="x")}
    plan = plan_of(desired, rows, Settings(ignore=("*_default",)), rotate=True)
    assert described(plan) == [(Update, "changed", 2, None), (Reencrypt, "kept", 1, None)]
    assert plan.summary.change == 2
    assert described(plan_of(desired, rows, Settings(ignore=("*_default",)))) == [
        (Update, "changed", 2, None)
    ]


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
    assert field_changes(v(**before), v(**after), CONNECTION, COLUMNS) == ()


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
    changes = field_changes(v(conn_type="x", **before), v(conn_type="x", **after), CONNECTION, COLUMNS)
    assert [(c.path, c.kind) for c in changes] == [(path, kind)]


def test_sensitive_change_hides_values() -> None:
    """A changed password or token-like extra is flagged sensitive and its sides are redacted."""
    changes = field_changes(
        v(conn_type="x", password="old-pw", extra={"api_token": "t1"}),
        v(conn_type="x", password="new-pw", extra={"api_token": "t2"}),
        CONNECTION,
        COLUMNS,
    )
    assert all(c.sensitive for c in changes)
    assert "pw" not in repr([(c.before, c.after) for c in changes])
    assert "t1" not in repr([(c.before, c.after) for c in changes])


@given(desired_states)
def test_diff_of_state_with_itself_is_empty(desired: dict[Address, Values]) -> None:
    """A database that holds exactly the desired connections plans no operation."""
    rows = [StoredObject(a, i, val, f"fp{i}") for i, (a, val) in enumerate(sorted(desired.items()), start=1)]
    plan = plan_of({a.key: val for a, val in desired.items()}, rows)
    assert plan.operations == ()
    assert not plan.summary.has_changes


def simulate(plan: Plan, rows: list[StoredObject]) -> list[StoredObject]:
    """Carry a plan out on in-memory rows, as apply does on the table."""
    by_id = {r.row_id: r for r in rows}
    next_id = max((i for i in by_id if i is not None), default=0) + 1
    for op in plan.operations:
        if isinstance(op, Delete):
            del by_id[op.row_id]
        elif isinstance(op, Update):
            by_id[op.row_id] = StoredObject(op.address, op.row_id, op.values, "new")
        elif isinstance(op, Create):
            by_id[next_id] = StoredObject(op.address, next_id, op.values, "new")
            next_id += 1
    return list(by_id.values())


@settings(max_examples=200)
@given(desired_states, row_sets(), st.booleans(), st.booleans())
def test_applying_the_plan_yields_the_desired_state(
    desired: dict[Address, Values], rows: list[StoredObject], prune: bool, dedupe: bool
) -> None:
    """After the plan, each declared conn_id has one row equal to its declaration."""
    by_key = {a.key: val for a, val in desired.items()}
    plan = plan_of(by_key, rows, Settings(prune=prune, dedupe=dedupe))
    after = simulate(plan, rows)
    for address, want in desired.items():
        found = [r for r in after if r.address == address]
        assert len(found) == 1
        assert canonical_json(dict(found[0].values.fields)) == canonical_json(dict(want.fields))
    if prune:
        assert {r.address for r in after} == set(desired)
    if dedupe:
        ids = [r.address for r in after]
        assert len(ids) == len(set(ids))
    again = plan_of(by_key, after, Settings(prune=prune, dedupe=dedupe))
    assert not [op for op in again.operations if op.address in desired]


@settings(max_examples=200)
@given(desired_states, row_sets(), st.booleans())
def test_render_never_contains_a_secret(
    desired: dict[Address, Values], rows: list[StoredObject], prune: bool
) -> None:
    """No text, markdown or JSON rendering of any plan contains a password or secret extra."""
    from declarative_conns.output.report import render_json, render_markdown

    plan = plan_of({a.key: val for a, val in desired.items()}, rows, Settings(prune=prune))
    shown = PlanContext(
        "sqlite:///x.db", "Airflow 2.x table", "2.x", {"connection": (len(rows), len(rows))}, verbose=True
    )
    for text in (render_text(plan, shown), render_markdown(plan, shown), render_json(plan, shown)):
        assert CANARY not in text


def test_values_repr_hides_everything() -> None:
    """The repr of connection values (as in a traceback) shows no field value."""
    assert "s3cr3t" not in repr(v(conn_type="x", password="s3cr3t", host="s3cr3t"))


def test_old_key_rows_are_reported() -> None:
    """Rows decrypted by a key other than the ring's first are listed for rotation."""
    rows = [
        StoredObject(conn("a"), 1, v(conn_type="x"), "f", key_index=1),
        StoredObject(conn("b"), 2, v(conn_type="x"), "f", key_index=0),
    ]
    assert plan_of({}, rows).old_key == (conn("a"),)


def test_created_secret_is_shown_as_sensitive() -> None:
    """A created password, token extra and nested secret render as (sensitive value), others in clear."""
    want = v(
        conn_type="http",
        host="h.example",
        password=CANARY,
        extra={"api_token": CANARY, "n": {"secret": CANARY}, "timeout": 3},
    )
    text = render_text(plan_of({"a": want}, []), context())
    assert CANARY not in text
    assert "  + password        = (sensitive value)\n" in text
    assert "  + extra.api_token = (sensitive value)\n" in text
    assert '  + extra.n         = {"secret": "(sensitive value)"}\n' in text
    assert '  + host            = "h.example"\n' in text
    assert "  + extra.timeout   = 3\n" in text


def test_many_new_fields_are_listed_one_by_one() -> None:
    """A sparse row gaining most of its fields is explained per field, never as one whole-row change."""
    changes = field_changes(
        v(conn_type="x"), v(conn_type="x", host="h", login="l", port=1, extra={"a": 1}), CONNECTION, COLUMNS
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


def connection_recorder(digester: Digester) -> Any:
    """Return drift's to_recorded for connections: (address, values) -> recorded form."""

    def to_recorded(address: Address, values: Values) -> dict[str, Any]:
        assert address.kind == "connection"
        return recorded_form(values, digester, CONNECTION, COLUMNS)

    return to_recorded


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
        rows.append(StoredObject(conn(conn_id), row_id, Values(fields, row_paths), f"fp{row_id}"))
        applied[conn(conn_id)] = recorded_form(
            Values(declared.fields, applied_paths), digester, CONNECTION, COLUMNS
        )
        snapshot[conn(conn_id)] = recorded_form(
            Values(fields, row_paths | declared_paths), digester, CONNECTION, COLUMNS
        )

    to_recorded = connection_recorder(digester)
    managed = frozenset(applied)
    full = detect_drift(applied, rows, to_recorded, managed, KINDS)
    shortcut = detect_drift(
        applied, rows, to_recorded, managed, KINDS, current=snapshot if with_snapshot else None
    )
    assert shortcut == full


def test_drift_of_a_connection_named_extra_after_a_drifted_one() -> None:
    """Regression: the long path for one connection must not change what the next is compared with."""
    digester = Digester.from_secret(b"k" * 32, source="test")
    to_recorded = connection_recorder(digester)
    declared_a = v(conn_type="http", host="a", extra={"conn_type": "http", "host": "h"})
    declared_extra = v(conn_type="http", host="h")
    applied = {
        conn("a"): to_recorded(conn("a"), declared_a),
        conn("extra"): to_recorded(conn("extra"), declared_extra),
    }
    rows = [
        StoredObject(
            conn("a"), 1, v(conn_type="http", host="a2", extra={"conn_type": "http", "host": "h"}), "f1"
        ),
        StoredObject(conn("extra"), 2, v(conn_type="http", host="h2"), "f2"),
    ]
    snapshot = {r.address: to_recorded(r.address, r.values) for r in rows}
    for current in (None, snapshot):
        drift = detect_drift(applied, rows, to_recorded, frozenset(applied), KINDS, current=current)
        assert [d.address.key for d in drift] == ["a", "extra"]
        assert [(d.row_id, d.deleted) for d in drift] == [(1, False), (2, False)]


def test_drift_of_a_deleted_connection_says_deleted() -> None:
    """A managed connection with no row left is drift marked deleted, with no row and no field changes."""
    digester = Digester.from_secret(b"k" * 32, source="test")
    to_recorded = connection_recorder(digester)
    applied = {conn("gone"): to_recorded(conn("gone"), v(conn_type="http"))}
    (drift,) = detect_drift(applied, [], to_recorded, frozenset(applied), KINDS)
    assert (drift.address, drift.row_id, drift.deleted, drift.changes) == (conn("gone"), None, True, ())
    assert detect_drift(applied, [], to_recorded, frozenset(), KINDS) == ()
