"""Validate dconn.toml against `schemas/project.schema.json`, each problem phrased for people.

Every problem names the file and the dotted path, as for the connections document. Values of
the target settings (URLs, credentials, the Fernet key) are never echoed: they may be secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from declarative_conns.config.resources import load_schema, schema_check
from declarative_conns.core.model import REF_SPELLING

_SCHEMA = "project.schema.json"
_SECRET_KEYS = frozenset({"db_url", "api_url", "api_token", "api_username", "api_password", "fernet_key"})
_NAME_RULES = {
    "environments": "invalid environment name: use up to 64 letters, digits, _ . - (starting with a letter or digit)",
    "vars": "invalid var name: use letters, digits and _, not starting with a digit",
}


def project_problems(document: Mapping[str, Any], file: Path) -> list[str]:
    """Return every schema problem of a project document, each as `file: dotted.path: message`."""
    if schema_check(_SCHEMA)(document):
        return []
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error, file) for error in errors]


@cache
def _validator() -> Any:
    """Compile the project schema once per process (jsonschema: the validator whose errors we phrase)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(_SCHEMA))


def _describe(error: Any, file: Path) -> str:
    """Phrase one jsonschema error, naming its file and path, never echoing a secret."""
    path = [str(p) for p in error.absolute_path]
    where = ".".join(path) or "(document)"
    if "propertyNames" in error.schema_path:
        return (
            f"{file}: {where}.{error.instance}: {_NAME_RULES.get(path[-1] if path else '', 'invalid name')}"
        )
    if error.validator == "anyOf" and isinstance(error.instance, dict):
        # A table here is meant as a secret reference: report what is wrong with it as one.
        as_reference = [e for e in error.context if e.path or e.validator != "type"]
        if as_reference:
            from jsonschema.exceptions import best_match

            return _describe(best_match(as_reference), file)
    return f"{file}: {where}: {_message(error, _is_secret(path))}"


def _is_secret(path: list[str]) -> bool:
    """Tell whether a document path holds a value that may be secret (so it is never echoed)."""
    # Deeper than the setting itself is a reference's variable name, path or command: printable.
    return len(path) == 3 and path[0] == "environments" and path[2] in _SECRET_KEYS


def _message(error: Any, secret: bool) -> str:
    """Phrase one jsonschema error; echo the value only when it is short and not secret."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    shown = "the value" if secret or not _printable(value) else repr(value)
    if kind == "anyOf":
        if value == "":
            return f"must not be empty: give the value or a secret reference ({REF_SPELLING})"
        return f"must be a string or a secret reference ({REF_SPELLING})"
    if kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"{shown} is not of type {' or '.join(repr(n) for n in names)}"
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        extras = ", ".join(repr(e) for e in sorted(set(value) - set(known)))
        if "from_env" in known:
            return f"unknown key {extras}: a secret reference is {REF_SPELLING}"
        return f"unknown key {extras}"
    if kind == "required":
        missing = [name for name in expected if name not in value]
        if missing == ["environments"]:
            return "declares no environments: add at least one [environments.NAME]"
        return "missing " + ", ".join(repr(m) for m in missing)
    if kind == "not":
        first, second = expected["required"]
        return f"declare either {first} or {second}, not both"
    if kind == "dependentRequired":
        found = re.fullmatch(r"'(.+)' is a dependency of '(.+)'", error.message)
        return f"{found.group(2)} needs {found.group(1)}" if found else error.message
    if kind in ("minProperties", "maxProperties"):
        if "from_env" in error.schema.get("properties", {}):
            return "a secret reference has exactly one of from_env, from_file, from_command"
        return "declares no environments: add at least one [environments.NAME]"
    return _limit_message(kind, expected, shown, error)


def _limit_message(kind: str, expected: Any, shown: str, error: Any) -> str:
    """Phrase the errors of limits: bounds, lengths, patterns, constants."""
    if kind in ("minimum", "exclusiveMinimum"):
        return f"{shown} must be {'at least' if kind == 'minimum' else 'more than'} {expected}"
    if kind == "pattern" and list(error.absolute_path)[-1:] == ["state"]:
        return f"{shown}: a state in the database is db or db:NAME (letters, digits, _ . -)"
    if kind == "pattern":
        return f"{shown} does not match {expected!r}"
    if kind == "minItems" and list(error.absolute_path)[-1:] == ["config"]:
        return "list at least one layer (a file or folder)"
    if kind in ("minLength", "minItems"):
        return "must not be empty"
    if kind == "maxLength":
        return f"{shown} is too long (at most {expected})"
    if kind == "const":
        return f"{shown} must be {expected!r}"
    return f"{shown} is not valid ({kind})"


def _printable(value: Any) -> bool:
    """Tell whether a value is a short scalar worth echoing in a message."""
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80
