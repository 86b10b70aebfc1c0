"""Each kind's endpoint in Airflow's REST API: its path, its key, its fields and how they travel.

A kind is one `Endpoint` in `ENDPOINTS`: the API target reads, writes and locks through this
table only, so variables and pools are rows here, not code elsewhere.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Values


@dataclass(frozen=True)
class Endpoint:
    """Describe one kind's collection in the API (`/connections`) and its objects' fields."""

    kind: str
    #: The collection's path under the API prefix, and the list's key in a page of it.
    path: str
    #: The field holding the object's key: connection_id, key, name.
    key_field: str
    #: dconn's field name -> the API's, where they differ.
    renamed: Mapping[str, str] = field(default_factory=dict)
    #: Fields sent and returned as JSON text (a connection's extra).
    json_text: frozenset[str] = frozenset()
    #: Fields sent as text, holding JSON when declared as a table or array (a variable's value).
    text_or_json: frozenset[str] = frozenset()
    #: Fields Airflow 2's list leaves out: each object is read on its own for them.
    v1_list_omits: frozenset[str] = frozenset()
    #: Fields the API has from an Airflow version on (team_name: 3.2).
    since: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: Fields Airflow 2's API has not.
    not_on_v1: frozenset[str] = frozenset()
    #: The kind's key rule in the API (None: no pattern), and its longest key.
    key_pattern: str | None = None
    key_max: int = 250

    def api_field(self, name: str) -> str:
        """Return the API's name of one of dconn's fields."""
        return self.renamed.get(name, name)

    def fields(self, version: tuple[int, ...]) -> tuple[str, ...]:
        """Return the fields this Airflow version's API takes for the kind, in the kind's order."""
        out = []
        for name in BY_NAME[self.kind].fields:
            if version[0] < 3 and name in self.not_on_v1:
                continue
            if name in self.since and version < self.since[name]:
                continue
            out.append(name)
        return tuple(out)

    def decode(self, item: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        """Return an API object's fields under dconn's names; JSON text parsed (kept as text when it is not JSON)."""
        out: dict[str, Any] = {}
        for name in fields:
            value = item.get(self.api_field(name))
            if name in self.json_text and isinstance(value, str) and value:
                with contextlib.suppress(ValueError):  # not JSON: kept as the text it is
                    value = json.loads(value)
            out[name] = value
        return out

    def encode(self, key: str, values: Values, fields: tuple[str, ...]) -> dict[str, Any]:
        """Return the body that gives an object these values (every field named: unset ones null)."""
        body: dict[str, Any] = {self.key_field: key}
        for name in fields:
            value = values.get(name)
            if name in self.json_text:
                value = None if value is None else json.dumps(value, ensure_ascii=False)
            elif name in self.text_or_json and isinstance(value, (dict, list)):
                value = json.dumps(value, ensure_ascii=False)
            body[self.api_field(name)] = value
        return body


ENDPOINTS: Mapping[str, Endpoint] = {
    "connection": Endpoint(
        "connection",
        "connections",
        "connection_id",
        json_text=frozenset({"extra"}),
        v1_list_omits=frozenset({"extra"}),
        key_pattern=r"[\w.-]+",
        key_max=200,
        since={"team_name": (3, 2)},
        not_on_v1=frozenset({"team_name"}),
    ),
    "variable": Endpoint(
        "variable",
        "variables",
        "key",
        text_or_json=frozenset({"value"}),
        since={"team_name": (3, 2)},
        not_on_v1=frozenset({"team_name"}),
    ),
    "pool": Endpoint(
        "pool",
        "pools",
        "name",
        since={"team_name": (3, 2)},
        not_on_v1=frozenset({"team_name"}),
        key_max=256,
    ),
}

#: The object an apply creates to hold dconn's lock (the kind whose create fails on an existing key).
LOCK_KEY = "dconn_lock"
