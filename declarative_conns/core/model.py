"""Plain data shared by every layer: connection values, secret references, plans.

Nothing here does I/O. Values are normalized so that equal connections compare equal:
"" and None are one, ``port`` is an int, an empty ``extra`` is None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

#: Every column dconn manages, in the order people read them.
FIELDS: tuple[str, ...] = (
    "conn_type",
    "description",
    "host",
    "schema",
    "login",
    "password",
    "port",
    "extra",
    "team_name",
)
STRING_FIELDS: frozenset[str] = frozenset(FIELDS) - {"port", "extra"}
#: Fields a given table shape may lack; declaring one the table lacks is an error.
OPTIONAL_COLUMNS: tuple[str, ...] = ("description", "team_name")

Path = tuple[str | int, ...]

#: How deep `extra`, `extra_json` and variable values may nest (CONTRACT §13): deeper in the TOML
#: is a validation error; a deeper stored value is reported by name and its object left alone.
MAX_NESTING = 100


def nesting_exceeds(value: object, limit: int = MAX_NESTING) -> bool:
    """Tell whether a JSON-like value nests deeper than `limit` levels (without recursion)."""
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


RefKind = Literal["env", "file", "command"]


@dataclass(frozen=True)
class SecretRef:
    """Point at a secret kept outside the configuration: a variable, a file or a command."""

    kind: RefKind
    target: str | tuple[str, ...]
    base_dir: str = "."

    def describe(self) -> str:
        """Return how the reference reads in the TOML, safe to print."""
        if self.kind == "command":
            assert isinstance(self.target, tuple)
            return "from_command " + " ".join(self.target)
        return f"from_{self.kind} {self.target}"

    def to_json(self) -> dict[str, Any]:
        """Return the reference as its TOML/JSON spelling."""
        value = list(self.target) if isinstance(self.target, tuple) else self.target
        return {f"from_{self.kind}": value}


def canonical_conn_type(conn_type: str | None) -> str | None:
    """Return the conn_type Airflow stores, folding the `postgresql` spelling to `postgres`."""
    if conn_type == "postgresql":
        return "postgres"
    return conn_type


@dataclass(frozen=True, repr=False)
class Values:
    """Hold one connection's normalized field values; secrets in clear, so the repr hides all."""

    fields: Mapping[str, Any]
    #: Paths (("password",), ("extra", "key")) whose value came from a secret reference.
    secret_paths: frozenset[Path] = frozenset()

    def __repr__(self) -> str:
        return f"Values(<{len(self.fields)} fields hidden>)"

    def get(self, name: str) -> Any:
        """Return one field's value, None when unset."""
        return self.fields.get(name)


@dataclass(frozen=True, repr=False)
class StoredRow:
    """Describe one row of the connection table as read and decrypted."""

    row_id: int
    conn_id: str
    values: Values
    #: Keyed digest of the row exactly as stored (ciphertext included), to detect changes.
    fingerprint: str
    #: Index in the key ring of the key that decrypted this row; None when stored in clear.
    key_index: int | None = None

    def __repr__(self) -> str:
        return f"StoredRow(row_id={self.row_id}, conn_id={self.conn_id!r})"


@dataclass(frozen=True)
class TableInfo:
    """Describe the target's connection table: which Airflow generation, which columns."""

    shape: str
    columns: frozenset[str]

    def manages(self, name: str) -> bool:
        """Tell whether the table has a column for a managed field."""
        return name in self.columns


@dataclass(frozen=True)
class Settings:
    """Hold the `[settings]` of the desired-state document."""

    prune: bool = False
    ignore: tuple[str, ...] = ()
    dedupe: bool = True
    strict: bool = False
    type_rules: str | None = None


class FieldChange(NamedTuple):
    """Describe one field's difference: a path, its two sides, whether to hide them.

    A named tuple, not a frozen dataclass: a plan creating 10,000 connections makes 100,000 of
    them, and a tuple is built in a third of the time.
    """

    path: Path
    before: Any
    after: Any
    sensitive: bool
    kind: Literal["add", "remove", "change"] = "change"

    def __repr__(self) -> str:
        return f"FieldChange(path={self.path!r}, kind={self.kind!r})"


ActionKind = Literal["create", "update", "delete"]
DeleteReason = Literal["duplicate", "removed", "pruned"]


@dataclass(frozen=True)
class Action:
    """Describe one row-level step of a plan."""

    kind: ActionKind
    conn_id: str
    row_id: int | None = None
    changes: tuple[FieldChange, ...] = ()
    #: The full desired values for create/update; what the row holds for delete.
    values: Values | None = None
    reason: str = "declared"
    #: For a duplicate delete: the row of the same conn_id that is kept.
    kept_row_id: int | None = None


@dataclass(frozen=True)
class Drift:
    """Describe a managed connection changed in the database since dconn last applied it."""

    conn_id: str
    row_id: int | None
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class Summary:
    """Count what a plan does, in the words of its summary line."""

    add: int
    change: int
    destroy: int
    duplicates: int

    @property
    def has_changes(self) -> bool:
        """Tell whether applying the plan would change anything."""
        return bool(self.add or self.change or self.destroy)


@dataclass(frozen=True)
class Plan:
    """Hold every step needed to make the database match the configuration, and its context."""

    actions: tuple[Action, ...]
    drift: tuple[Drift, ...] = ()
    unchanged: tuple[str, ...] = ()
    unmanaged: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    #: conn_id -> ((row_id, fingerprint), ...) of every row the plan was computed against.
    expected: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    #: conn_ids of rows encrypted with a key other than the ring's first.
    old_key_rows: tuple[str, ...] = ()

    @property
    def summary(self) -> Summary:
        """Count the plan's actions."""
        kinds = [a.kind for a in self.actions]
        dupes = sum(1 for a in self.actions if a.kind == "delete" and a.reason == "duplicate")
        return Summary(
            add=kinds.count("create"),
            change=kinds.count("update"),
            destroy=kinds.count("delete"),
            duplicates=dupes,
        )


#: The types of plain JSON scalars (bool included, None not): values with nothing inside to
#: redact, resolve or stub, which hot loops handle without a call.
JSON_SCALARS = frozenset({str, int, float, bool})

#: The encoder of canonical_json, built once: it runs several times per connection of a plan.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def canonical_json(value: object) -> str:
    """Return a stable JSON text for comparing values semantically (key order ignored)."""
    return _CANONICAL.encode(value)


def normalize_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Return field values in canonical form: "" is None, port an int, empty extra None."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = raw.get(name)
        if name in STRING_FIELDS:
            value = None if value is None or value == "" else value
        elif name == "port":
            value = _normalize_port(value)
        elif name == "extra":
            value = None if value is None or value in ({}, "") else value
        if name == "conn_type":
            value = canonical_conn_type(value)
        out[name] = value
    return out


def _normalize_port(value: object) -> object:
    """Fold a port written as digits into an int; leave anything else for the diff to show."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if value == "":
        return None
    return value
