"""The shortcuts large plans take give exactly the results of the plain ways they replace."""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from declarative_conns.core.model import (
    MAX_NESTING,
    NO_PATHS,
    Address,
    address_order,
    by_address,
    frozen_paths,
    nesting_exceeds,
)
from declarative_conns.core.state import State
from declarative_conns.targets.database.rows import _may_nest_too_deep


def _walk_all(value: object, limit: int) -> bool:
    """The walk nesting_exceeds replaced: every child pushed, scalars included."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: object = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)  # type: ignore[attr-defined]
    return False


def _nested(depth: int, rng: random.Random) -> object:
    value: object = rng.choice([1, "x", None, {}, []])
    for _ in range(depth):
        value = rng.choice([{"a": value, "b": 2}, [value, 3], (value,), {"k": [value]}])
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, 50, 98, 99, 100, 101, 102, 150])
def test_nesting_exceeds_agrees_with_the_full_walk(depth: int) -> None:
    rng = random.Random(depth)
    for _ in range(20):
        value = _nested(depth, rng)
        for limit in (0, 1, 2, 50, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1):
            assert nesting_exceeds(value, limit) == _walk_all(value, limit)


@pytest.mark.parametrize("depth", [0, 1, 99, 100, 101, 140])
def test_bracket_count_never_misses_a_value_nested_too_deep(depth: int) -> None:
    rng = random.Random(depth)
    for _ in range(20):
        value = _nested(depth, rng)
        text = json.dumps(value)
        if nesting_exceeds(json.loads(text)):
            assert _may_nest_too_deep(text)
    assert not _may_nest_too_deep('{"a": "[[[["}')
    assert _may_nest_too_deep("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1))


@given(st.lists(st.tuples(st.sampled_from(["connection", "variable", "pool", "a", ""]), st.text(max_size=4))))
def test_address_order_is_the_order_of_addresses(pairs: list[tuple[str, str]]) -> None:
    addresses = [Address(kind, key) for kind, key in pairs]
    assert sorted(addresses, key=address_order) == sorted(addresses)
    items = [(a, i) for i, a in enumerate(dict.fromkeys(addresses))]
    assert sorted(items, key=by_address) == sorted(items, key=lambda item: item[0])


def test_frozen_paths_shares_the_empty_set() -> None:
    assert frozen_paths(set()) is NO_PATHS
    assert frozen_paths({("password",)}) == frozenset({("password",)})


def _state() -> State:
    a, b = Address("connection", "a"), Address("variable", "b")
    return State(
        lineage="L",
        serial=3,
        target={"url": "sqlite://", "identity": {"x": 1}},
        digest_key={"id": "k"},
        managed={a, b},
        applied={a: {"host": "h", "extra": {"k": [1, 2]}}, b: {"val": "v"}},
        snapshot={
            "taken_at": "t1",
            "shape": "2.11",
            "objects": [{"kind": "connection", "key": "a", "id": 1}],
        },
        written_at="w",
    )


def _changes() -> list[tuple[str, object]]:
    a = Address("connection", "a")
    return [
        ("serial", 4),
        ("written_at", "w2"),
        ("before_apply", {a: [[1, "f"]]}),
        ("lineage", "M"),
        ("target", {"url": "sqlite://", "identity": {"x": 2}}),
        ("digest_key", {"id": "other"}),
        ("managed", {a}),
        ("applied", {a: {"host": "h", "extra": {"k": [1, 2]}}}),
        ("applied", {a: {"host": "h", "extra": {"k": [1, 3]}}, Address("variable", "b"): {"val": "v"}}),
        ("sent", {a: {"password": "d"}}),
        (
            "snapshot",
            {"taken_at": "t2", "shape": "2.11", "objects": [{"kind": "connection", "key": "a", "id": 1}]},
        ),
        (
            "snapshot",
            {"taken_at": "t1", "shape": "3.0", "objects": [{"kind": "connection", "key": "a", "id": 1}]},
        ),
        ("snapshot", {"taken_at": "t1", "shape": "2.11", "objects": []}),
    ]


@pytest.mark.parametrize(("member", "value"), _changes())
def test_same_content_agrees_with_comparing_content(member: str, value: object) -> None:
    before = _state()
    after = copy.copy(before)
    setattr(after, member, value)
    assert after.same_content(before) == (after.content() == before.content())
    assert before.same_content(copy.copy(before))
    assert not before.same_content(None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["host", "extra", "login", "password", "unknown", "zzz", "conn_type"]),
            st.lists(st.one_of(st.text(max_size=3), st.integers(-2, 2)), max_size=2),
        ),
        max_size=12,
    )
)
def test_changes_sort_as_by_rank_and_path_json(paths: list[tuple[str, list[str | int]]]) -> None:
    from declarative_conns.core.diff import _in_reading_order
    from declarative_conns.core.kinds import BY_NAME
    from declarative_conns.core.model import FieldChange, canonical_json

    kind = BY_NAME["connection"]
    changes = [FieldChange((name, *rest), None, 1, False, "add") for name, rest in paths]
    rank = {name: i for i, name in enumerate(kind.fields)}
    plain = sorted(changes, key=lambda c: (rank.get(str(c.path[0]), len(rank)), canonical_json(list(c.path))))
    assert [id(c) for c in _in_reading_order(changes, kind)] == [id(c) for c in plain]


@pytest.mark.parametrize("kind_name", ["connection", "variable", "pool"])
def test_a_row_layout_gives_the_fingerprint_worked_out_per_row(kind_name: str) -> None:
    from declarative_conns.core.crypto import Digester
    from declarative_conns.core.kinds import BY_NAME
    from declarative_conns.targets.database.rows import fingerprint, row_layout
    from declarative_conns.targets.database.tables import KIND_TABLES

    spec, kind = KIND_TABLES[kind_name], BY_NAME[kind_name]
    digester = Digester.from_secret(b"k", source="test")
    columns = ["id", spec.key_column, *(spec.column(f) for f in kind.fields), *spec.encrypted.values()]
    raw = {column: f"v-{i}" for i, column in enumerate(columns)}
    layout = row_layout(spec, kind)
    assert fingerprint(raw, spec, kind, digester, layout) == fingerprint(raw, spec, kind, digester)
    assert [field for field, _ in layout.fields] == list(kind.fields)


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=4)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


@given(
    st.sampled_from(["connection", "variable", "pool"]),
    st.dictionaries(
        st.sampled_from(
            ["conn_type", "host", "login", "password", "extra", "port", "val", "description", "slots"]
        ),
        _JSONISH,
        max_size=8,
    ),
    st.sets(st.sampled_from([("password",), ("login",), ("extra", "token"), ("val",)]), max_size=2),
    st.booleans(),
)
def test_created_changes_are_the_changes_from_nothing(
    kind_name: str, fields: dict[str, object], secret: set[tuple[str, ...]], beyond: bool
) -> None:
    from declarative_conns.core.diff import created_changes, field_changes
    from declarative_conns.core.kinds import BY_NAME
    from declarative_conns.core.model import Values

    kind = BY_NAME[kind_name]
    values = Values(fields, frozen_paths(secret))
    names = (*kind.fields, "zzz") if beyond else kind.fields
    if beyond:
        values = Values({**fields, "zzz": 1}, values.secret_paths)
    plain = field_changes(Values({}), values, kind, names)
    assert created_changes(values, kind, names) == plain
    assert [repr(c.after) for c in created_changes(values, kind, names)] == [repr(c.after) for c in plain]


def _entry(key: str, fields: dict[str, object], fingerprint: str = "f1") -> dict[str, object]:
    return {"kind": "connection", "key": key, "id": 1, "fingerprint": fingerprint, "fields": fields}


def test_an_unchanged_snapshot_entry_is_the_last_one_a_changed_one_is_new() -> None:
    from declarative_conns.core.crypto import Digester
    from declarative_conns.core.kinds import BY_NAME
    from declarative_conns.core.model import StoredObject, Values
    from declarative_conns.core.recorded import snapshot_entries

    kind = BY_NAME["connection"]
    digester = Digester.from_secret(b"k", source="test")
    fields = {"connection": ("conn_type", "port", "extra")}
    stored = StoredObject(Address("connection", "a"), 1, Values({"conn_type": "http", "port": 1}), "f1")
    plain = snapshot_entries([stored], digester, {"connection": kind}, fields)[0]
    same = dict(plain)
    assert snapshot_entries([stored], digester, {"connection": kind}, fields, previous=[same])[0] is same
    for previous in (
        {**plain, "fingerprint": "f0"},  # the row changed
        {**plain, "fields": {"conn_type": "http", "port": True}},  # == but not the same JSON
        {**plain, "id": 2},  # another row
    ):
        entry = snapshot_entries([stored], digester, {"connection": kind}, fields, previous=[previous])[0]
        assert entry is not previous and entry == plain


def test_a_snapshot_form_equal_to_its_record_is_read_as_that_record() -> None:
    record = {"conn_type": "http", "extra": {"verify": True}}
    document = State(
        applied={Address("connection", "a"): record, Address("connection", "b"): record}
    ).to_json()
    document["snapshot"] = {
        "shape": "2.x",
        "objects": [
            _entry("a", {"conn_type": "http", "extra": {"verify": True}}),
            _entry("b", {"conn_type": "http", "extra": {"verify": 1}}),  # drifted: 1 == True, not the same
            _entry("c", {"conn_type": "http"}),  # not managed
        ],
    }
    state = State.from_json(json.loads(json.dumps(document)))
    a, b, c = state.snapshot["objects"]
    assert a["fields"] is state.applied[Address("connection", "a")]
    assert (
        b["fields"] is not state.applied[Address("connection", "b")] and b["fields"]["extra"]["verify"] == 1
    )
    assert c["fields"] == {"conn_type": "http"}


def test_only_a_pending_state_keeps_what_the_rows_were_before_its_apply(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from declarative_conns.files.state import StateFile

    store = StateFile(tmp_path / "state.json")
    state = _state()
    state.digest_key = {"id": "k", "source": "fernet"}
    state.snapshot = {"shape": "2.x", "objects": []}
    state.before_apply = {Address("connection", "a"): [[1, "f"]]}
    store.path.write_text(json.dumps(state.to_json()), encoding="utf-8")
    store.pending_path.write_text(json.dumps(state.to_json()), encoding="utf-8")
    loaded, pending = store.load(), store.load_pending()
    assert loaded is not None and loaded.before_apply == {}
    assert pending is not None and pending.before_apply == {Address("connection", "a"): [[1, "f"]]}


def test_resolving_keeps_tables_without_references_and_copies_the_others(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import declarative_conns as dc
    from declarative_conns.config.secrets import resolve_desired, resolve_secret

    monkeypatch.setenv("FAST_PATH_TOKEN", "t-1")
    (tmp_path / "c.toml").write_text(
        '[connections.plain]\nconn_type = "http"\nextra = { timeout = 3, hosts = ["a", "b"] }\n'
        '[connections.ref]\nconn_type = "http"\nextra = { timeout = 3, auth = { from_env = "FAST_PATH_TOKEN" } }\n'
    )
    desired = dc.load(tmp_path / "c.toml")
    values = resolve_desired(desired, resolve_secret)
    plain, ref = Address("connection", "plain"), Address("connection", "ref")
    assert values[plain].fields["extra"] is desired.objects[plain].fields["extra"]
    assert values[ref].fields["extra"] == {"timeout": 3, "auth": "t-1"}
    assert values[ref].fields["extra"] is not desired.objects[ref].fields["extra"]


def test_objects_with_nothing_secret_hold_plain_dicts() -> None:
    """A pool or a variable under a plain key holds plain dicts (untracked by the cyclic GC when
    their values are plain), declared and resolved; a variable under a sensitive key keeps hiding
    its value in every repr."""
    from declarative_conns.config.loader import desired_from_dicts
    from declarative_conns.config.secrets import resolve_desired
    from declarative_conns.core.model import Address
    from declarative_conns.core.sensitive import MaskedFields

    canary = "canary-7f3a-secret"
    desired = desired_from_dicts(
        variables={"bucket": {"value": "s3://b"}, "api_token": {"value": canary}},
        pools={"etl": {"slots": 4}},
    )
    resolved = resolve_desired(desired, lambda ref: "unused")
    for address in (Address("variable", "bucket"), Address("pool", "etl")):
        assert type(desired.objects[address].fields) is dict
        assert type(resolved[address].fields) is dict
    secret = Address("variable", "api_token")
    assert isinstance(desired.objects[secret].fields, MaskedFields)
    assert isinstance(resolved[secret].fields, MaskedFields)
    assert resolved[secret].fields["value"] == canary
    for shown in (repr(desired.objects[secret].fields), repr(resolved[secret]), str(resolved[secret].fields)):
        assert canary not in shown
