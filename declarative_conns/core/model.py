"""Plain data shared by every layer: values, secret references, stored objects, settings.

Nothing here does I/O. Values are normalized (core.kinds) so that equal objects compare equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Literal, NamedTuple

Path = tuple[str | int, ...]

#: How deep `extra`, `extra_json` and variable values may nest (CONTRACT §13): deeper in the TOML
#: is a validation error; a deeper stored value is reported by name and its object left alone.
MAX_NESTING = 100


def nesting_exceeds(value: object, limit: int = MAX_NESTING) -> bool:
    """Tell whether a JSON-like value nests deeper than `limit` levels (without recursion)."""
    # Only containers are pushed: the scalars that make up most of a value cost one type test.
    if not isinstance(value, (dict, list, tuple)):
        return False
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth >= limit:
            return True
        children: Iterable[object] = item.values() if isinstance(item, dict) else item  # type: ignore[assignment]
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


#: The secret paths of an object without any: one shared empty set, not one per object (a plan
#: of many objects keeps them all alive at once).
NO_PATHS: frozenset[Path] = frozenset()


def frozen_paths(paths: set[Path] | frozenset[Path]) -> frozenset[Path]:
    """Return paths as a frozenset: the shared NO_PATHS when there are none, else one set per content.

    Objects of a kind mostly have the same few secret paths (a password from a reference), so
    each set is kept once (the first 1,024 different ones) rather than once per object.
    """
    if not paths:
        return NO_PATHS
    frozen = frozenset(paths)
    shared = _SHARED_PATHS.get(frozen)
    if shared is not None:
        return shared
    if len(_SHARED_PATHS) < 1024:
        _SHARED_PATHS[frozen] = frozen
    return frozen


_SHARED_PATHS: dict[frozenset[Path], frozenset[Path]] = {}


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


class Address(NamedTuple):
    """Name one object: its kind and its key (`connection` `warehouse`).

    A named tuple: plans use addresses as keys of many dicts and sets, and a tuple's hash,
    equality and order (kind, then key) are the interpreter's own, with no Python call each.
    """

    kind: str
    key: str

    def __str__(self) -> str:
        return f'{self.kind} "{self.key}"'

    def __repr__(self) -> str:
        return f"Address(kind={self.kind!r}, key={self.key!r})"


@lru_cache(maxsize=1 << 17)
def address_of(kind: str, key: str) -> Address:
    """Return the Address of an object, the same one each time it is asked for (within a bound).

    A run names each object in several places (the document, the target's rows, the state);
    one shared Address instead of one per place is fewer objects for the GC to walk.
    """
    return Address(kind, key)


#: A sort key giving addresses their own order (kind, then key) without a Python-level `<` per
#: comparison: `sorted(addresses, key=address_order)` is `sorted(addresses)`, several times faster.
address_order: Callable[[Address], tuple[str, str]] = attrgetter("kind", "key")


def by_address(item: tuple[Address, Any]) -> tuple[str, str]:
    """Sort key of a mapping's (address, value) items, in address order."""
    return (item[0].kind, item[0].key)


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


def same_json(a: object, b: object) -> bool:
    """Tell whether two JSON-like values are the same JSON, types included (`1` is not `True`).

    `==` alone takes 1 for True and 1.0 for 1; equal reprs as well rule that out (a different
    key order only makes it answer no, never wrongly yes).
    """
    return a is b or (a == b and repr(a) == repr(b))


def canonical_json(value: object) -> str:
    """Return a stable JSON text for comparing values semantically (key order ignored)."""
    return _CANONICAL.encode(value)
