"""Decide which values are secret, by Airflow's own rules, and redact them."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

#: Airflow's secrets_masker DEFAULT_SENSITIVE_FIELDS (3.3.2), matched as substrings.
SENSITIVE_NAMES: tuple[str, ...] = (
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "auth_header",
    "authorization",
    "bearer",
    "connection_string",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "proxy",
    "proxies",
    "secret",
    "service_account",
    "service_key",
    "token",
    "keyfile_dict",
    "webhook_url",
)

_NON_WORD = re.compile(r"\W+")


@lru_cache(maxsize=4096)
def is_sensitive_key(name: str) -> bool:
    """Tell whether an extra key names a secret, as Airflow's masker decides it."""
    # Cached: the same few extra keys recur in every connection of a large plan.
    normalized = _NON_WORD.sub("_", name.lower())
    return any(word in normalized for word in SENSITIVE_NAMES)


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
