"""Decide which values are secret, by Airflow's own rules, and redact them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from declarative_conns.core.model import SecretRef


class _Hidden:
    """Stand in for a secret inside a redacted value."""

    def __repr__(self) -> str:
        return "(sensitive value)"


#: The marker `redact` puts where a secret was.
HIDDEN = _Hidden()

PathItem = str | int


class SecretRules(Protocol):
    """What a kind of object says about its secrets (core.kinds.Kind)."""

    def is_secret_by_name(self, path: tuple[PathItem, ...]) -> bool:
        """Tell whether a field path is secret by its names alone."""
        ...


def is_sensitive_path(
    path: tuple[PathItem, ...],
    secret_paths: frozenset[tuple[PathItem, ...]],
    kind: SecretRules,
) -> bool:
    """Tell whether the value at a field path is secret: referenced, or secret by its kind's names."""
    if secret_paths:
        # The whole path and its first field first: the common cases, without slicing the rest.
        if path in secret_paths or path[:1] in secret_paths:
            return True
        for n in range(2, len(path)):
            if path[:n] in secret_paths:
                return True
    return kind.is_secret_by_name(path)


def redact(
    value: object,
    path: tuple[PathItem, ...],
    secret_paths: frozenset[tuple[PathItem, ...]],
    kind: SecretRules,
    replace: Callable[[object], object] = lambda _: HIDDEN,
) -> object:
    """Return the value with every secret inside it replaced (by `HIDDEN` unless told)."""
    if value is None:
        return None
    if is_sensitive_path(path, secret_paths, kind):
        return replace(value)
    if isinstance(value, dict):
        return {k: redact(v, (*path, k), secret_paths, kind, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, (*path, i), secret_paths, kind, replace) for i, v in enumerate(value)]
    return value


class MaskedFields(dict[str, Any]):
    """Hold an object's fields: a dict whose repr and str hide every secret value.

    Secret: what the kind names secret (a password, an extra key named like a secret, a
    variable's value under a sensitive key) and every path in `secret_paths` (a value that
    came from a secret reference). A SecretRef holds no value and is shown as the reference it
    is. Only repr and str differ from a dict, so code that reads, compares or serializes fields
    works as with a dict.
    """

    __slots__ = ("_kind", "_path", "_secret_paths")

    def __init__(
        self,
        fields: Mapping[str, Any] = (),  # type: ignore[assignment]
        path: tuple[PathItem, ...] = (),
        secret_paths: frozenset[tuple[PathItem, ...]] = frozenset(),
        kind: str = "connection",
    ) -> None:
        super().__init__(fields)
        self._path = path
        self._secret_paths = secret_paths
        self._kind = kind

    def __repr__(self) -> str:
        from declarative_conns.core.kinds import BY_NAME  # kinds builds on this module

        rules = BY_NAME[self._kind]
        return repr(redact(dict(self), self._path, self._secret_paths, rules, _hide_unless_reference))

    __str__ = __repr__


def _hide_unless_reference(value: object) -> object:
    """Stand in for a secret value; a secret reference (it holds no value) shows as itself."""
    return value if isinstance(value, SecretRef) else HIDDEN


def masked_tree(
    value: Any,
    kind: str = "connection",
    path: tuple[PathItem, ...] = (),
    secret_paths: frozenset[tuple[PathItem, ...]] = frozenset(),
) -> Any:
    """Return a value with each dict in it that holds a secret (at any depth) a MaskedFields of its path.

    The top level is always one. A table below it with no secret key inside (most extras) is a
    plain dict: its repr shows nothing to hide, and a dict of plain values is one object fewer
    for the cyclic GC to walk. `secret_paths` adds what is secret for this object only (a
    variable's value under a key named like a secret), beside what its kind names secret.
    """
    if isinstance(value, dict):
        fields = {
            k: v if v.__class__ in _SCALARS else masked_tree(v, kind, (*path, k), secret_paths)
            for k, v in value.items()
        }
        if path:
            from declarative_conns.core.kinds import BY_NAME  # kinds builds on this module

            rules = BY_NAME[kind]
            if not any(is_sensitive_path((*path, k), secret_paths, rules) for k in fields):
                return fields
        return MaskedFields(fields, path, secret_paths, kind=kind)
    if isinstance(value, list):
        return [
            v if v.__class__ in _SCALARS else masked_tree(v, kind, (*path, i), secret_paths)
            for i, v in enumerate(value)
        ]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})
