"""The state file's writer: JSON equal to the document, one line per managed object and row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from declarative_conns.core.model import Address
from declarative_conns.core.state import STATE_FORMAT_VERSION, State
from declarative_conns.files.state import StateFile, dumps_lines

KEYS = st.sampled_from(["a", "rows", "é", 'q"uote', "snapshot"])
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=10,
)
expansions = st.sets(st.sampled_from([("a",), ("rows",), ("snapshot",), ("snapshot", "rows"), ("a", "a")]))
TARGET = {
    "url": "sqlite:///a.db",
    "identity": {"family": "sqlite", "host": None, "port": None, "database": "a.db", "schema": None},
}


@given(values, expansions)
def test_text_is_the_document(document: Any, expand: set[tuple[str, ...]]) -> None:
    """Whatever is expanded, the text parses back to exactly the document."""
    assert json.loads(dumps_lines(document, expand)) == document


def saved_state(tmp_path: Path) -> tuple[StateFile, State, list[dict[str, Any]]]:
    """Save a state managing two connections and a pool; return its file, the state and its snapshot."""
    objects: list[dict[str, Any]] = [
        {
            "kind": "connection",
            "key": f"c{i}",
            "id": i,
            "fingerprint": "f" * 64,
            "fields": {"conn_type": "http"},
        }
        for i in (1, 2)
    ]
    objects.append({"kind": "pool", "key": "p", "id": 1, "fingerprint": "e" * 64, "fields": {"slots": 4}})
    c1, c2, pool = Address("connection", "c1"), Address("connection", "c2"), Address("pool", "p")
    state = State(
        target=TARGET,
        digest_key={"id": "abcd", "source": "fernet"},
        managed={c2, c1, pool},
        applied={c1: {"conn_type": "http", "host": "h"}, c2: {"conn_type": "http"}, pool: {"slots": 4}},
        snapshot={"taken_at": "2026-01-01T00:00:00+00:00", "shape": "2.x", "objects": objects},
    )
    store = StateFile(tmp_path / "state.json")
    store.save(state, None)
    return store, state, objects


def test_state_file_has_a_line_per_object(tmp_path: Path) -> None:
    """A saved state reads back equal, with each applied entry and snapshot object on its line."""
    store, state, objects = saved_state(tmp_path)
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert '   "c1": {"conn_type": "http", "host": "h"},' in lines
    assert '   "p": {"slots": 4}' in lines
    assert f"   {json.dumps(objects[0], ensure_ascii=False)}," in lines
    loaded = store.load()
    assert loaded is not None
    assert loaded.to_json() == json.loads(json.dumps(state.to_json()))
    assert loaded.managed == state.managed and loaded.applied == state.applied


def test_state_file_has_a_line_per_managed_key(tmp_path: Path) -> None:
    """Each managed key is on a line of its own, so adding one object to dconn is a one-line diff in git."""
    store, _, _ = saved_state(tmp_path)
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert '   "c1",' in lines
    assert '   "c2"' in lines


def test_state_document_groups_objects_by_kind(tmp_path: Path) -> None:
    """Format 2 names every object by kind and key: managed keys sorted, applied forms, snapshot objects."""
    store, _, objects = saved_state(tmp_path)
    document = json.loads(store.path.read_text(encoding="utf-8"))
    assert document["format_version"] == STATE_FORMAT_VERSION == 2
    assert document["serial"] == 1
    assert document["managed"] == {"connection": ["c1", "c2"], "pool": ["p"]}
    assert document["applied"] == {
        "connection": {"c1": {"conn_type": "http", "host": "h"}, "c2": {"conn_type": "http"}},
        "pool": {"p": {"slots": 4}},
    }
    assert document["snapshot"]["objects"] == objects


def test_format_1_state_is_read_as_format_2(tmp_path: Path) -> None:
    """A state file of the first release (connections only) loads with its connections addressed."""
    row = {"id": 3, "conn_id": "c1", "fingerprint": "f" * 64, "fields": {"conn_type": "http"}}
    document = {
        "format_version": 1,
        "lineage": "0f1e2d3c-0000-4000-8000-000000000000",
        "serial": 7,
        "written_at": "2026-01-01T00:00:00+00:00",
        "target": TARGET,
        "digest_key": {"id": "abcd", "source": "fernet"},
        "managed": ["c1"],
        "applied": {"c1": {"conn_type": "http"}},
        "snapshot": {"taken_at": "2026-01-01T00:00:00+00:00", "shape": "2.x", "rows": [row]},
    }
    store = StateFile(tmp_path / "state.json")
    store.path.write_text(json.dumps(document), encoding="utf-8")
    loaded = store.load()
    assert loaded is not None
    assert (loaded.lineage, loaded.serial) == (document["lineage"], 7)
    assert loaded.managed == {Address("connection", "c1")}
    assert loaded.applied == {Address("connection", "c1"): {"conn_type": "http"}}
    assert loaded.snapshot["objects"] == [
        {"kind": "connection", "key": "c1", "id": 3, "fingerprint": "f" * 64, "fields": {"conn_type": "http"}}
    ]
    assert loaded.to_json()["format_version"] == 2
