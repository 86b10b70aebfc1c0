"""`ignore_changes`: paths of an object whose differences after creation dconn leaves alone.

Terraform's lifecycle rule: for an object that exists, the value at an ignored path is taken
from the target, so the plan neither reports nor reverts a difference there (a token a vault
rotates, a password an operator changes by hand); creating the object still sets it. Drift at
an ignored path is not reported either. Pure: values in, values out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from declarative_conns.core.model import Address, FieldChange, Path, Values

#: Ignored paths per object.
IgnoredPaths = Mapping[Address, tuple[Path, ...]]

_ABSENT = object()


def parse_path(text: str) -> Path:
    """Return the path `extra.token` names: ("extra", "token")."""
    return tuple(text.split("."))


def is_within(path: Path, ignored: Iterable[Path]) -> bool:
    """Tell whether a path is an ignored path or lies inside one."""
    return any(path[: len(i)] == i for i in ignored)


def keep_ignored(want: Values, have: Values, ignored: Sequence[Path]) -> Values:
    """Return the declared values with the target's value (or its absence) at every ignored path."""
    if not ignored:
        return want
    fields = copy.deepcopy(dict(want.fields))
    for path in ignored:
        _put(fields, path, _get(have.fields, path))
    # Sensitive stays sensitive: what the declaration marks secret is still hidden in any render.
    secret = want.secret_paths | {p for p in have.secret_paths if is_within(p, ignored)}
    return Values(fields, frozenset(secret))


def without_ignored(changes: Sequence[FieldChange], ignored: Sequence[Path]) -> tuple[FieldChange, ...]:
    """Return the changes that are not at or inside an ignored path."""
    return tuple(c for c in changes if not is_within(c.path, ignored))


def _get(fields: Mapping[str, Any], path: Path) -> Any:
    """Return the value at a path, _ABSENT when a part of it is missing."""
    value: Any = fields
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return copy.deepcopy(value)


def _put(fields: dict[str, Any], path: Path, value: Any) -> None:
    """Set the value at a path (creating tables on the way), or remove it when _ABSENT."""
    here: Any = fields
    for part in path[:-1]:
        if not isinstance(here.get(part), dict):
            if value is _ABSENT:
                return
            here[part] = {}
        here = here[part]
    if value is _ABSENT:
        here.pop(path[-1], None)
    else:
        here[path[-1]] = value
