"""The state file's writer: JSON equal to the document, one line per connection and row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from declarative_conns.files.state import State, dumps_lines, load_state, save_state

KEYS = st.sampled_from(["a", "rows", "é", 'q"uote', "snapshot"])
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=10,
)
expansions = st.sets(st.sampled_from([("a",), ("rows",), ("snapshot",), ("snapshot", "rows"), ("a", "a")]))


@given(values, expansions)
def test_text_is_the_document(document: Any, expand: set[tuple[str, ...]]) -> None:
    """Whatever is expanded, the text parses back to exactly the document."""
    assert json.loads(dumps_lines(document, expand)) == document


def test_state_file_has_a_line_per_row(tmp_path: Path) -> None:
    """A saved state reads back equal, with each managed id, applied entry and snapshot row on its line."""
    rows = [
        {"id": i, "conn_id": f"c{i}", "fingerprint": "f" * 64, "fields": {"conn_type": "http"}}
        for i in (1, 2)
    ]
    state = State(
        target={
            "url": "sqlite:///a.db",
            "identity": {"family": "sqlite", "host": None, "port": None, "database": "a.db", "schema": None},
        },
        digest_key={"id": "abcd", "source": "fernet"},
        managed=["c1", "c2"],
        applied={"c1": {"conn_type": "http", "host": "h"}, "c2": {"conn_type": "http"}},
        snapshot={"taken_at": "2026-01-01T00:00:00+00:00", "shape": "2.x", "rows": rows},
    )
    path = tmp_path / "state.json"
    save_state(path, state)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert '  "c1",' in lines
    assert '  "c1": {"conn_type": "http", "host": "h"},' in lines
    assert f"   {json.dumps(rows[0], ensure_ascii=False)}," in lines
    loaded = load_state(path)
    assert loaded is not None
    assert loaded.to_json() == json.loads(json.dumps(state.to_json()))
