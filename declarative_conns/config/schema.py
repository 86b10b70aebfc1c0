"""Validate a desired-state document against its JSON Schema and phrase each problem for people.

Every problem names its file and dotted path. Values are echoed only when short and not secret:
a password, a secret extra key, `extra_json` or a reference never appear in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from declarative_conns.config.findings import Finding, dotted_path
from declarative_conns.config.resources import load_schema, schema_check
from declarative_conns.core.kinds import CONNECTION
from declarative_conns.core.model import REF_KEYS, REF_SPELLING
from declarative_conns.core.sensitive import is_sensitive_path

_END_OF_TEXT = "(?![\\s\\S])"


def validate_document(document: Mapping[str, Any], file: Path) -> list[Finding]:
    """Return every schema problem of one document, each once, with its file and dotted path.

    The document must nest no deeper than MAX_NESTING (see `loader`): jsonschema descends
    into `extra` recursively.
    """
    if schema_check("connections.schema.json")(document):
        return []
    from jsonschema import Draft202012Validator

    validator = _validator(Draft202012Validator)
    problems: dict[Finding, None] = {}  # ordered and without repeats: one name can break two rules
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        problems.update(dict.fromkeys(_describe(error, file)))
    return list(problems)


_VALIDATORS: dict[str, Any] = {}


def _validator(cls: Any) -> Any:
    """Compile the document schema once per process."""
    if "doc" not in _VALIDATORS:
        _VALIDATORS["doc"] = cls(load_schema("connections.schema.json"))
    return _VALIDATORS["doc"]


def _describe(error: Any, file: Path) -> list[Finding]:
    """Turn one jsonschema error into findings a person can act on, never showing a secret."""
    path = list(error.absolute_path)
    where = dotted_path(path)
    if "propertyNames" in error.schema_path:
        rule = _KEY_RULES.get(str(path[0]) if path else "", _CONN_ID_RULE)
        return [Finding(file, dotted_path([*path, error.instance]), rule)]
    if error.validator == "anyOf" and _offers_secret_ref(error.validator_value):
        inside = [e for e in error.context or () if e.relative_path]
        if inside:  # a reference with a bad variable name, path or argv: say what is wrong in it
            from jsonschema.exceptions import best_match

            return _describe(best_match(inside), file)
        if len(path) == 3 and path[0] == "variables" and path[2] == "value":
            return [
                Finding(
                    file,
                    where,
                    f"must be a string, a table or an array, or a secret reference ({REF_SPELLING})",
                )
            ]
        if _is_secret_location(path) or not _printable(error.instance):
            return [Finding(file, where, f"must be a string or a secret reference ({REF_SPELLING})")]
        expected = f"{error.instance!r}: expected a string"
        return [Finding(file, where, f"{expected} or a secret reference ({REF_SPELLING})")]
    if error.validator == "pattern" and len(path) == 4 and path[2] == "ignore_changes":
        return [Finding(file, where, _ignore_changes_rule(str(path[0]), error.instance))]
    if error.validator in ("anyOf", "oneOf") and error.context:
        # Report the branch that got furthest, as jsonschema's best_match does.
        from jsonschema.exceptions import best_match

        return _describe(best_match(error.context), file)
    return [Finding(file, where, _message(error, _is_secret_location(path)))]


def _ignore_changes_rule(plural: str, value: Any) -> str:
    """Say what an `ignore_changes` path may name on one kind of object."""
    from declarative_conns.core.kinds import BY_PLURAL

    kind = BY_PLURAL[plural]
    inside = {"connection": " or extra.KEY", "variable": " or value.KEY"}.get(kind.name, "")
    shown = repr(value) if _printable(value) else "the path"
    return f"{shown} is not a path dconn manages on a {kind.name}: name a field ({', '.join(kind.fields)}){inside}"


_CONN_ID_RULE = "invalid conn_id: use 1 to 250 letters, digits and _ # ! ( ) - . : / \\ (Airflow's rule)"
_KEY_RULES = {
    "variables": "invalid variable key: use 1 to 250 characters, no control characters",
    "pools": "invalid pool name: use 1 to 256 characters, no control characters",
}


def _offers_secret_ref(branches: Any) -> bool:
    """Tell whether an anyOf is the 'string or secret reference' choice."""
    return any(str(b.get("$ref", "")).endswith("/secret_ref") for b in branches)


def _is_secret_location(path: list[str | int]) -> bool:
    """Tell whether a document path may hold a secret value (so the value is never echoed)."""
    if len(path) >= 3 and path[0] == "variables":
        return path[2] == "value"  # a variable's value may be a secret whatever its key says
    if len(path) < 3 or path[0] != "connections":
        return False
    field_path = tuple(path[2:])
    # `extra` itself, when not a table, is most often JSON text holding the secrets it names.
    return (
        field_path[0] == "extra_json"
        or field_path == ("extra",)
        or is_sensitive_path(field_path, frozenset(), CONNECTION)
    )


def _message(error: Any, secret: bool) -> str:
    """Phrase a jsonschema error; echo the offending value only when it is short and not secret."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    shown = "the value" if secret or not _printable(value) else repr(value)
    if kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"{shown} is not of type {' or '.join(repr(n) for n in names)}"
    if kind == "additionalProperties":
        extras = sorted(set(value) - set(error.schema.get("properties", {})))
        return "unknown field " + ", ".join(repr(e) for e in extras)
    if kind == "required":
        return error.message.replace(repr(value), "").strip() or "a required field is missing"
    if kind in ("minimum", "maximum"):
        return f"{shown} is {'below' if kind == 'minimum' else 'above'} the {kind} {expected}"
    if kind == "pattern" and error.absolute_path and error.path == error.relative_path:
        # The schema ends patterns with (?![\s\S]), the end of text in every dialect; people read $.
        readable = str(expected).replace(_END_OF_TEXT, "$")
        return f"{shown} does not match {readable!r}"
    if kind in ("maxProperties", "minProperties") or error.schema.get("properties", {}).keys() & set(
        REF_KEYS
    ):
        return "a secret reference has exactly one of from_env, from_file, from_command"
    if kind == "not":
        return "declare either extra or extra_json, not both"
    if kind == "const":
        return f"{shown} must be {expected!r}"
    if kind in ("minLength", "maxLength", "minItems"):
        return f"{shown} is too {'short' if kind.startswith('min') else 'long'} ({kind} {expected})"
    return f"{shown} is not valid ({kind})"


def _printable(value: Any) -> bool:
    """Tell whether a value is a short scalar worth echoing in a message."""
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80
