"""Properties of the generic core over connections, variables and pools: diff, plan, apply, render."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.diff import field_changes
from declarative_conns.core.digests import run_digester
from declarative_conns.core.drift import detect_drift
from declarative_conns.core.kinds import BY_NAME, POOL, VARIABLE
from declarative_conns.core.model import Address, Settings, StoredObject, Values, canonical_json
from declarative_conns.core.operations import Create, Delete, DeleteReason, Plan, Reencrypt, Update
from declarative_conns.core.planner import Planned, compute_plan, is_ignored, make_plan, state_after_apply
from declarative_conns.core.recorded import recorded_form
from declarative_conns.core.state import State
from declarative_conns.output.report import render_json, render_markdown
from declarative_conns.output.text import PlanContext, render_text
from tests.strategies import (
    CANARY,
    FIELDS,
    KEYS,
    any_values,
    declared_objects,
    stored_form,
    stored_objects,
)

KINDS = ("connection", "variable", "pool")
DIGESTER = Digester.from_secret(b"property-key", source="state")
ignores = st.sampled_from([(), ("a",), ("*_default",), ("db*", "etl")])


@st.composite
def objects(draw: Any) -> tuple[str, str, Values]:
    """Draw one declared object of any kind: its kind, key and values."""
    kind = draw(st.sampled_from(KINDS))
    key = draw(KEYS[kind])
    return kind, key, draw(any_values(kind, key, referenced=True))


@given(objects())
def test_diff_of_an_object_with_itself_is_empty(drawn: tuple[str, str, Values]) -> None:
    """field_changes(x, x) is empty for a connection, a variable or a pool, and for an equal copy of x."""
    kind, _, x = drawn
    assert field_changes(x, x, BY_NAME[kind], FIELDS[kind]) == ()
    copy = Values({name: value for name, value in reversed(list(x.fields.items()))}, x.secret_paths)
    assert field_changes(x, copy, BY_NAME[kind], FIELDS[kind]) == ()
    assert field_changes(x, copy, BY_NAME[kind], BY_NAME[kind].fields) == ()


@settings(max_examples=200, deadline=None)
@given(declared_objects(), st.booleans())
def test_a_target_holding_the_declaration_plans_nothing(
    declared: dict[Address, Values], rotate: bool
) -> None:
    """Planned against objects read back from exactly the declaration (tables as JSON text), nothing is done."""
    stored = [
        StoredObject(a, i, stored_form(a.kind, a.key, val), f"fp{i}", 0)
        for i, (a, val) in enumerate(sorted(declared.items()), start=1)
    ]
    plan = compute_plan(
        declared, stored, Settings(prune=True), KINDS, FIELDS, managed=frozenset(declared), rotate=rotate
    )
    assert plan.operations == ()
    assert set(plan.unchanged) == set(declared)
    assert plan.unmanaged == plan.ignored == plan.old_key == ()


def simulate(plan: Plan, stored: list[StoredObject]) -> list[StoredObject]:
    """Carry a plan out on in-memory tables, as a database target does.

    An update or a create writes only the fields dconn manages on that key (default_pool: slots
    and include_deferred); what is written is read back as the target reads it (a variable's
    table as JSON text); every write encrypts with the ring's first key.
    """
    rows = {(o.address.kind, o.row_id): o for o in stored}
    next_id = max((o.row_id or 0 for o in stored), default=0) + 1
    for op in plan.operations:
        kind = BY_NAME[op.address.kind]
        key_index = None if kind is POOL else 0
        if isinstance(op, Delete):
            del rows[(op.address.kind, op.row_id)]
            continue
        if isinstance(op, Reencrypt):
            old = rows[(op.address.kind, op.row_id)]
            rows[(op.address.kind, op.row_id)] = replace(old, fingerprint="new", key_index=key_index)
            continue
        written = kind.managed_fields(op.address.key, FIELDS[op.address.kind])
        if isinstance(op, Update):
            row_id = op.row_id
            fields = dict(rows[(op.address.kind, row_id)].values.fields)
        else:
            assert isinstance(op, Create)
            row_id, next_id = next_id, next_id + 1
            fields = {}
        fields.update({name: op.values.fields.get(name) for name in written})
        values = stored_form(op.address.kind, op.address.key, Values(fields))
        rows[(op.address.kind, row_id)] = StoredObject(op.address, row_id, values, "new", key_index)
    return list(rows.values())


def managed_fields_equal(address: Address, stored: Values, want: Values) -> bool:
    """Tell whether a stored object holds the declared values in every field dconn manages on it."""
    kind = BY_NAME[address.kind]
    fields = kind.managed_fields(address.key, FIELDS[address.kind])
    have = kind.aligned(stored.fields, want.fields)
    return canonical_json({f: have.get(f) for f in fields}) == canonical_json(
        {f: want.fields.get(f) for f in fields}
    )


@settings(max_examples=300, deadline=None)
@given(
    declared=declared_objects(),
    stored=stored_objects(),
    prune=st.booleans(),
    dedupe=st.booleans(),
    rotate=st.booleans(),
    ignore=ignores,
    data=st.data(),
)
def test_applying_the_plan_yields_the_declaration(
    declared: dict[Address, Values],
    stored: list[StoredObject],
    prune: bool,
    dedupe: bool,
    rotate: bool,
    ignore: tuple[str, ...],
    data: st.DataObject,
) -> None:
    """After the plan, each declared object of every kind exists once as declared; default_pool is never deleted."""
    candidates = sorted({o.address for o in stored} | {Address("pool", "default_pool")})
    managed = frozenset(data.draw(st.sets(st.sampled_from(candidates)), label="managed"))
    chosen = Settings(prune=prune, dedupe=dedupe, ignore=ignore)
    plan = compute_plan(declared, stored, chosen, KINDS, FIELDS, managed=managed, rotate=rotate)
    after = simulate(plan, stored)

    def rows_of(address: Address, objects: list[StoredObject]) -> list[StoredObject]:
        return [o for o in objects if o.address == address]

    for address, want in declared.items():
        (found,) = rows_of(address, after)
        assert managed_fields_equal(address, found.values, want)
    default_pool = Address("pool", "default_pool")
    assert bool(rows_of(default_pool, after)) == bool(
        rows_of(default_pool, stored) or default_pool in declared
    )
    assert not [
        op
        for op in plan.operations
        if isinstance(op, Delete) and op.address == default_pool and op.reason is not DeleteReason.DUPLICATE
    ]
    for address in {o.address for o in stored} - declared.keys():
        if is_ignored(address.key, ignore):
            assert [o.values for o in rows_of(address, after)] == [o.values for o in rows_of(address, stored)]
        elif (prune or address in managed) and address != default_pool:
            assert rows_of(address, after) == []
        elif dedupe:
            assert len(rows_of(address, after)) == 1
    again = compute_plan(declared, after, chosen, KINDS, FIELDS, managed=managed, rotate=rotate)
    assert again.operations == ()


def context_of(plan: Plan, verbose: bool) -> PlanContext:
    """Return a heading context with a few objects of each kind the plan manages."""
    return PlanContext("sqlite:///x.db", "Airflow 2.x table", "2.x", {k: (3, 4) for k in plan.kinds}, verbose)


@settings(max_examples=200, deadline=None)
@given(
    declared=declared_objects(),
    stored=stored_objects(),
    applied=declared_objects(),
    prune=st.booleans(),
    rotate=st.booleans(),
    verbose=st.booleans(),
)
def test_no_render_contains_a_secret(
    declared: dict[Address, Values],
    stored: list[StoredObject],
    applied: dict[Address, Values],
    prune: bool,
    rotate: bool,
    verbose: bool,
) -> None:
    """Text, JSON and markdown of any plan over every kind, drift included, never show a secret; nor does its repr."""
    managed = frozenset(applied) | frozenset(o.address for o in stored[:2])
    plan = compute_plan(
        declared, stored, Settings(prune=prune), KINDS, FIELDS, managed=managed, rotate=rotate
    )
    records = {a: recorded_form(val, DIGESTER, BY_NAME[a.kind], FIELDS[a.kind]) for a, val in applied.items()}

    def to_recorded(address: Address, values: Values) -> dict[str, Any]:
        return recorded_form(values, DIGESTER, BY_NAME[address.kind], FIELDS[address.kind])

    plan = replace(plan, drift=detect_drift(records, stored, to_recorded, managed, BY_NAME))
    context = context_of(plan, verbose)
    for text in (
        render_text(plan, context),
        render_json(plan, context),
        render_markdown(plan, context),
        repr(plan),
    ):
        assert CANARY not in text


# --- Drift of variables and pools through a plan, an apply and the next plan -------------------

VARIABLE_FIELDS = {"variable": FIELDS["variable"]}
POOL_FIELDS = {"pool": FIELDS["pool"]}


def plan_run(
    declared: dict[Address, Values],
    stored: list[StoredObject],
    fields: dict[str, tuple[str, ...]],
    ring: KeyRing,
    previous: State | None,
) -> tuple[Planned, Digester]:
    """Plan as api.plan does: the run's digester from the ring and the state, then make_plan."""
    digester, same_key = run_digester(ring, previous)
    planned = make_plan(
        declared,
        stored,
        Settings(),
        tuple(fields),
        fields,
        previous,
        ring,
        digester,
        same_key,
        target={},
        shape="2.x",
    )
    return planned, digester


def adopted(
    declared: dict[Address, Values],
    stored: list[StoredObject],
    fields: dict[str, tuple[str, ...]],
    ring: KeyRing,
) -> State:
    """Return the state after a first plan and an apply with nothing to do (the objects are adopted)."""
    planned, digester = plan_run(declared, stored, fields, ring, None)
    assert planned.plan.operations == ()
    return state_after_apply(planned.state, planned.plan, declared, stored, [], {}, {}, digester, fields)


def secret_variable(text: str, **fields: Any) -> tuple[Address, Values]:
    """Return a variable whose key makes its value secret, holding a string."""
    address = Address("variable", "api_token")
    return address, Values(
        VARIABLE.normalize({"value": text, **fields}), VARIABLE.key_secret_paths(address.key)
    )


@pytest.mark.parametrize("text", ["12345", "true", '{"a": 1}'])
def test_an_unchanged_secret_variable_holding_json_text_is_not_drift(text: str) -> None:
    """A secret variable declared as a string that reads as JSON ("12345", "true", JSON text) and unchanged is no drift."""
    address, values = secret_variable(text)
    record = {address: recorded_form(values, DIGESTER, VARIABLE, FIELDS["variable"])}

    def to_recorded(_: Address, v: Values) -> dict[str, Any]:
        return recorded_form(v, DIGESTER, VARIABLE, FIELDS["variable"])

    stored = [StoredObject(address, 1, values, "fp1")]
    assert detect_drift(record, stored, to_recorded, frozenset(record), BY_NAME) == ()


def test_a_key_rotation_is_not_drift_for_a_secret_variable_holding_a_number() -> None:
    """After `airflow rotate-fernet-key` (new key first, old kept) an unchanged secret variable "12345" is not drift."""
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    address, values = secret_variable("12345")
    declared = {address: values}
    stored = [StoredObject(address, 1, values, "fp1", 0)]
    state = adopted(declared, stored, VARIABLE_FIELDS, KeyRing.from_setting(old))
    ring = KeyRing.from_setting(f"{new},{old}")
    for _ in range(2):
        planned, _ = plan_run(declared, stored, VARIABLE_FIELDS, ring, state)
        assert planned.plan.drift == () and planned.warnings == ()
        state = planned.state


def test_declared_default_pool_is_not_drift_after_apply() -> None:
    """default_pool declared by its slots, holding Airflow's own description, shows no drift on the next plan.

    dconn manages only slots and include_deferred on default_pool: a description it never
    writes cannot have been "changed outside dconn", and no action could revert it.
    """
    address = Address("pool", "default_pool")
    declared = {address: Values(POOL.normalize({"slots": 128}))}
    stored = [
        StoredObject(address, 1, Values(POOL.normalize({"slots": 128, "description": "Default pool"})), "fp1")
    ]
    ring = KeyRing()
    state = adopted(declared, stored, POOL_FIELDS, ring)
    planned, _ = plan_run(declared, stored, POOL_FIELDS, ring, state)
    assert planned.plan.operations == ()
    assert planned.plan.drift == ()


@pytest.mark.parametrize("value", ["", {}, []])
def test_a_variable_declared_empty_is_created_holding_it(value: Any) -> None:
    """value = "" (or {} or []) creates a variable holding it; a NULL val is no variable to Airflow's Variable.get."""
    address = Address("variable", "flag")
    declared = {address: Values(VARIABLE.normalize({"value": value}))}
    (op,) = compute_plan(declared, [], Settings(), ("variable",), VARIABLE_FIELDS).operations
    assert isinstance(op, Create)
    assert op.values.fields["value"] == value
