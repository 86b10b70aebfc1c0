"""The kinds of object dconn manages — connections, variables, pools — and what sets each apart.

A kind says which fields its objects have (in the order people read them), how declared and
stored values are normalised so that equal objects compare equal, which values are secret by
their name, and which keys are never deleted. The core's decisions work on any kind through this
description: a new kind is one more `Kind` here, a section of the document schema, and a table
(or endpoint) mapping in each target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from declarative_conns.core.model import NO_PATHS, Address, Path
from declarative_conns.core.sensitive_words import is_sensitive_key


@dataclass(frozen=True, eq=False)
class Kind:
    """Describe one kind of object: its fields, how they compare, which are secret."""

    #: How a plan names one object: `connection "warehouse"`.
    name: str
    #: The document's table (`[connections.KEY]`) and the JSON plan's word for several.
    plural: str
    #: What Airflow calls an object's key: conn_id, key, name.
    key_label: str
    #: Every field dconn manages, in reading order.
    fields: tuple[str, ...]
    #: Text fields where unset, NULL and "" are one.
    text_fields: frozenset[str] = frozenset()
    integer_fields: frozenset[str] = frozenset()
    #: Booleans that Airflow stores NOT NULL: unset reads as False.
    boolean_fields: frozenset[str] = frozenset()
    #: Fields always secret (a connection's password).
    secret_fields: frozenset[str] = frozenset()
    #: Fields whose inner keys are secret by their name (a connection's extra).
    named_secret_fields: frozenset[str] = frozenset()
    #: Fields secret when the object's key has a sensitive name (a variable's value).
    secret_when_key_sensitive: frozenset[str] = frozenset()
    #: Structured fields where an empty table or text means "not set" (a connection's extra).
    empty_is_unset: frozenset[str] = frozenset()
    #: Fields stored as text that hold JSON when declared as a table or array (a variable's value).
    json_text_fields: frozenset[str] = frozenset()
    #: Keys dconn changes but never deletes, with the only fields it manages on them.
    protected: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The Airflow version that added a field (for the error when a target lacks it).
    since: Mapping[str, str] = field(default_factory=dict)

    def normalize(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Return field values in canonical form: "" is None in text fields, ports are ints."""
        out: dict[str, Any] = {}
        for name, rule in _rules(self):
            value = raw.get(name)
            if rule is _TEXT:
                value = None if value is None or value == "" else value
            elif rule is _INTEGER:
                value = _integer(value)
            elif rule is _BOOLEAN:
                value = bool(value) if value is not None else False
            elif rule is _EMPTY_IS_UNSET and value in ({}, ""):
                value = None  # an empty extra is no extra
            out[name] = value
        if "conn_type" in out:
            out["conn_type"] = canonical_conn_type(out["conn_type"])
        return out

    def aligned(self, stored: Mapping[str, Any], declared: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return stored fields read as the declaration reads them: JSON text parsed where a table is declared.

        A variable declared as a table or array compares as parsed JSON with the stored text; one
        declared as a string compares as the string it is.
        """
        out: dict[str, Any] | None = None
        for name in self.json_text_fields:
            value, want = stored.get(name), declared.get(name)
            if isinstance(want, dict) and "$digest" in want:
                # A recorded secret: its digest is of the parsed JSON when it says so.
                want = {} if want.get("$json") else None
            if isinstance(value, str) and isinstance(want, (dict, list)):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    continue  # not JSON: it differs from the declared table as the text it is
                out = out if out is not None else dict(stored)
                out[name] = parsed
        return stored if out is None else out

    def stored_text(self, value: Any) -> str:
        """Return a table or array as the JSON text Airflow stores for it, by every target.

        A variable as `Variable.set(serialize_json=True)` writes it (indented by 2); a
        connection's extra as `Connection` writes it (compact `json.dumps`).
        """
        return json.dumps(value, indent=2) if self.json_text_fields else json.dumps(value)

    def key_secret_paths(self, key: str) -> frozenset[Path]:
        """Return the paths secret because of the object's key (a variable named *_password)."""
        if self.secret_when_key_sensitive and is_sensitive_key(key):
            return _key_secret_paths(self)
        return NO_PATHS  # shared: every object of a plan asks

    @property
    def names_secrets(self) -> bool:
        """Tell whether the kind makes fields secret by their names (a connection's password, its
        extra's `api_key`), so that an object holds a secret without any reference or sensitive key."""
        return bool(self.secret_fields or self.named_secret_fields)

    def is_secret_by_name(self, path: Path) -> bool:
        """Tell whether a field path is secret by its names alone: a password, extra.api_key."""
        return _secret_by_name(self, path)

    def managed_fields(self, key: str, available: tuple[str, ...]) -> tuple[str, ...]:
        """Return the fields dconn compares and writes for one key, of those the target has."""
        only = self.protected.get(key)
        return available if only is None else tuple(f for f in available if f in only)

    def can_delete(self, key: str) -> bool:
        """Tell whether dconn may delete the object of a key (never `default_pool`)."""
        return key not in self.protected


_TEXT, _INTEGER, _BOOLEAN, _EMPTY_IS_UNSET, _AS_IS = "text", "integer", "boolean", "empty-is-unset", "as-is"


@cache
def _rules(kind: Kind) -> tuple[tuple[str, str], ...]:
    """Return each field of a kind with the rule `normalize` applies to it (decided once per kind)."""
    rules = []
    for name in kind.fields:
        if name in kind.text_fields:
            rule = _TEXT
        elif name in kind.integer_fields:
            rule = _INTEGER
        elif name in kind.boolean_fields:
            rule = _BOOLEAN
        elif name in kind.empty_is_unset:
            rule = _EMPTY_IS_UNSET
        else:
            rule = _AS_IS
        rules.append((name, rule))
    return tuple(rules)


@cache
def _key_secret_paths(kind: Kind) -> frozenset[Path]:
    """Return a kind's secret paths for a sensitive key, one set per kind."""
    return frozenset((name,) for name in kind.secret_when_key_sensitive)


@lru_cache(maxsize=8192)
def _secret_by_name(kind: Kind, path: Path) -> bool:
    """Decide Kind.is_secret_by_name (cached: the same paths recur in every object of a plan)."""
    if not path:
        return False
    if path[0] in kind.secret_fields:
        return True
    return path[0] in kind.named_secret_fields and any(
        isinstance(p, str) and is_sensitive_key(p) for p in path[1:]
    )


#: Airflow's conn_id rule (3.x): 1-250 letters, digits and _ # ! ( ) - . : / \\ (the document
#: schema states the same rule for validation; tests/test_kinds.py checks that they agree).
CONN_ID_RULE = re.compile(r"[\w#!()\-.:/\\]{1,250}")


def canonical_conn_type(conn_type: str | None) -> str | None:
    """Return the conn_type Airflow stores, folding the `postgresql` spelling to `postgres`."""
    return "postgres" if conn_type == "postgresql" else conn_type


def _integer(value: object) -> object:
    """Fold an integer written as digits into an int; leave anything else for the diff to show."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if value == "":
        return None
    return value


CONNECTION = Kind(
    name="connection",
    plural="connections",
    key_label="conn_id",
    fields=("conn_type", "description", "host", "schema", "login", "password", "port", "extra", "team_name"),
    text_fields=frozenset({"conn_type", "description", "host", "schema", "login", "password", "team_name"}),
    integer_fields=frozenset({"port"}),
    empty_is_unset=frozenset({"extra"}),
    secret_fields=frozenset({"password"}),
    named_secret_fields=frozenset({"extra"}),
    since={"description": "2.0", "team_name": "3.2"},
)

VARIABLE = Kind(
    name="variable",
    plural="variables",
    key_label="key",
    fields=("value", "description", "team_name"),
    text_fields=frozenset({"description", "team_name"}),
    json_text_fields=frozenset({"value"}),
    secret_when_key_sensitive=frozenset({"value"}),
    since={"description": "2.0", "team_name": "3.2"},
)

POOL = Kind(
    name="pool",
    plural="pools",
    key_label="name",
    fields=("slots", "description", "include_deferred", "team_name"),
    text_fields=frozenset({"description", "team_name"}),
    integer_fields=frozenset({"slots"}),
    boolean_fields=frozenset({"include_deferred"}),
    protected={"default_pool": frozenset({"slots", "include_deferred"})},
    since={"include_deferred": "2.7", "team_name": "3.2"},
)

#: Every kind, in the order plans list them.
KINDS: tuple[Kind, ...] = (CONNECTION, VARIABLE, POOL)
BY_NAME: Mapping[str, Kind] = {k.name: k for k in KINDS}
BY_PLURAL: Mapping[str, Kind] = {k.plural: k for k in KINDS}


def kind_named(name: str) -> Kind:
    """Return the kind of a name (`connection`) or plural (`connections`)."""
    kind = BY_NAME.get(name) or BY_PLURAL.get(name)
    if kind is None:
        raise KeyError(name)
    return kind


_KIND_ORDER = {name: i for i, name in enumerate(BY_NAME)}


def plan_order(address: Address) -> tuple[int, str]:
    """Order addresses as plans list them: kind by kind (connections, variables, pools), then by key."""
    return (_KIND_ORDER.get(address.kind, len(_KIND_ORDER)), address.key)
