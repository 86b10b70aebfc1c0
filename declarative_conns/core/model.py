"""Plain data shared by every layer: values, secret references, stored objects, settings.

Nothing here does I/O. Values are normalized (core.kinds) so that equal objects compare equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

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

#: The spelling of each kind of secret reference in a document: `{ from_env = "NAME" }`.
REF_KEYS: dict[str, RefKind] = {"from_env": "env", "from_file": "file", "from_command": "command"}
#: How messages spell a secret reference.
REF_SPELLING = "{ from_env = ... }, { from_file = ... } or { from_command = [...] }"


def is_reference_table(value: object) -> bool:
    """Tell whether a table is a secret reference's spelling: one key, from_env/from_file/from_command."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in REF_KEYS


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


@dataclass(frozen=True, order=True)
class Address:
    """Name one object: its kind and its key (`connection` `warehouse`)."""

    kind: str
    key: str

    def __str__(self) -> str:
        return f'{self.kind} "{self.key}"'


@dataclass(frozen=True, repr=False)
class StoredObject:
    """Describe one object as the target holds it, read and decrypted (a row, or an API object)."""

    address: Address
    #: The row's id in the database; None through an API, which shows no ids.
    row_id: int | None
    values: Values
    #: Keyed digest of the object exactly as stored (ciphertext included), to notice any change.
    fingerprint: str
    #: Index in the key ring of the key that decrypted it; None when stored in clear.
    key_index: int | None = None

    def __repr__(self) -> str:
        return f"StoredObject({self.address}, row_id={self.row_id})"


@dataclass(frozen=True)
class Settings:
    """Hold the `[settings]` of the desired-state document."""

    prune: bool = False
    ignore: tuple[str, ...] = ()
    dedupe: bool = True
    strict: bool = False
    type_rules: str | None = None


ChangeKind = Literal["add", "remove", "change"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """Describe one field's difference: a path, its two sides (redacted), whether they are secret."""

    path: Path
    before: Any
    after: Any
    sensitive: bool
    kind: ChangeKind = "change"

    def __repr__(self) -> str:
        return f"FieldChange(path={self.path!r}, kind={self.kind!r})"


#: The types of plain JSON scalars (bool included, None not): values with nothing inside to
#: redact, resolve or stub, which hot loops handle without a call.
JSON_SCALARS = frozenset({str, int, float, bool})

#: The encoder of canonical_json, built once: it runs several times per connection of a plan.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def canonical_json(value: object) -> str:
    """Return a stable JSON text for comparing values semantically (key order ignored)."""
    return _CANONICAL.encode(value)
