"""Check connections against what each Airflow connection type accepts.

The rules live in JSON Schema files, one per conn_type (``schemas/conn_types/``): the
top-level fields a type uses, the extra keys its provider hook reads and their value types.
Unknown extra keys and unused fields are warnings with a did-you-mean suggestion; wrong value
types of known keys are errors; an unknown type and a legacy alias are notes. Messages name
keys and expected types, never values.

A connection can be given as its TOML table (secret references as ``{from_env = ...}``
tables, ``extra_json`` as text) or as a loaded DesiredConnection's fields (SecretRef objects,
``extra`` already parsed); a secret reference counts as text of unknown content.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from declarative_conns.config.findings import Finding, quote_key
from declarative_conns.config.resources import schemas_dir, validity_check
from declarative_conns.core.model import JSON_SCALARS, SecretRef, is_reference_table
from declarative_conns.errors import InputError

_SCHEMA_SUFFIX = ".schema.json"
_TYPE_NAMES = {
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "object": "a table",
    "array": "an array",
    "null": "null",
}


class _RuleError(Exception):
    """Raise when a conn_type schema's x-dconn keywords are malformed."""


@dataclass(frozen=True)
class _KeyRule:
    """How to check the value of one field or extra key."""

    #: The key's schema, with the root's $defs.
    schema: Mapping[str, Any]
    accepts_text: bool
    expected: str
    is_valid: Callable[[Any], bool]


@dataclass(frozen=True)
class _TypeRule:
    """The compiled rules of one conn_type."""

    conn_type: str
    schema: Mapping[str, Any]
    fields: Mapping[str, _KeyRule]
    extras: Mapping[str, _KeyRule]
    folded_extras: Mapping[str, _KeyRule]
    extra_patterns: tuple[re.Pattern[str], ...] = ()
    unused_fields: frozenset[str] = frozenset()
    field_hints: Mapping[str, str] = field(default_factory=dict)
    passthrough: str | None = None
    open_extra: bool = False
    prefix: str | None = None
    case_insensitive: bool = False
    replaced_by: str | None = None
    default_port: int | None = None
    _suggestions: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def suggest_extra(self, name: str) -> str | None:
        """Return the known extra key closest to a name, if one is close enough."""
        # Memoised: difflib is the costliest step, and generated configs repeat the same typo.
        if name not in self._suggestions:
            close = difflib.get_close_matches(name, list(self.extras), n=1, cutoff=0.6)
            self._suggestions[name] = close[0] if close else None
        return self._suggestions[name]

    def find_extra(self, key: str) -> _KeyRule | None:
        """Return the rule of an extra key, honouring the type's case rule."""
        if key in self.extras:
            return self.extras[key]
        return self.folded_extras.get(key.lower()) if self.case_insensitive else None


class TypeRules:
    """Hold the compiled rules of every known conn_type."""

    def __init__(self, rules: Mapping[str, _TypeRule]) -> None:
        self._rules = dict(rules)

    @property
    def conn_types(self) -> list[str]:
        """Return the known conn_types, sorted."""
        return sorted(self._rules)

    def schema(self, conn_type: str) -> Mapping[str, Any] | None:
        """Return the JSON Schema of a conn_type, or None when it is unknown."""
        rule = self._rules.get(conn_type)
        return rule.schema if rule else None

    def default_port(self, conn_type: str) -> int | None:
        """Return the port the provider uses when none is set, if it defines one."""
        rule = self._rules.get(conn_type)
        return rule.default_port if rule else None

    def get(self, conn_type: str) -> _TypeRule | None:
        """Return the compiled rule of a conn_type, or None when it is unknown."""
        return self._rules.get(conn_type)


def load_type_rules(user_schema: Path | None = None) -> TypeRules:
    """Load the built-in rules, then add or replace types from a user's schema file."""
    if user_schema is None:
        return _builtin_rules()
    from jsonschema.exceptions import SchemaError

    rules = dict(_builtin_rules()._rules)
    for name, schema in _read_user_schemas(user_schema).items():
        try:
            rules[name] = _compile_rule(name, schema)
        except (SchemaError, _RuleError, re.error) as exc:
            where = f"conn_types.{name}"
            if isinstance(exc, SchemaError):
                where = ".".join([where, *map(str, exc.absolute_path)])
            detail = exc.message if isinstance(exc, SchemaError) else str(exc)
            raise InputError(f"{user_schema}: {where}: {detail}") from None
    return TypeRules(rules)


def check_connection(
    rules: TypeRules,
    conn_id: str,
    table: Mapping[str, Any],
    *,
    strict: bool = False,
    file: Path | None = None,
) -> list[Finding]:
    """Check one connection (TOML table or loaded fields) against its conn_type's rules.

    The findings name `file`, the file the connection is declared in.
    """
    conn_type = table.get("conn_type")
    if not isinstance(conn_type, str):
        return []  # the document schema reports a missing or malformed conn_type
    base = f"connections.{quote_key(conn_id)}"
    rule = rules.get(conn_type)
    if rule is None:
        message = f"unknown connection type '{conn_type}'; its fields and extras are not checked"
        return [Finding(file, f"{base}.conn_type", message, "note")]
    findings = list(_check_fields(rule, base, table))
    for path, extra in _extras_of(base, table):
        findings.extend(_check_extra(rule, path, extra))
    findings = [replace(f, file=file) for f in findings] if file is not None else findings
    if strict:
        findings = [replace(f, severity="error") if f.severity == "warning" else f for f in findings]
    return findings


# -- checking -------------------------------------------------------------------------------


def _check_fields(rule: _TypeRule, base: str, table: Mapping[str, Any]) -> Iterator[Finding]:
    """Yield findings on conn_type, the top-level fields and their value types."""
    if rule.replaced_by:
        # A note, not a warning: the provider still reads such rows (it only logs a warning).
        message = f"'{rule.conn_type}' is a legacy alias; use '{rule.replaced_by}'"
        yield Finding(None, f"{base}.conn_type", message, "note")
    for name, value in table.items():
        if name in rule.unused_fields:
            message = f"not used by {rule.conn_type} connections"
            hint = rule.field_hints.get(name)
            yield Finding(
                None,
                f"{base}.{name}",
                f"{message}; did you mean '{hint}'?" if hint else message,
                "warning",
            )
        key_rule = rule.fields.get(name)
        if key_rule is None or name in ("conn_type", "extra"):
            continue
        if type(value) in JSON_SCALARS and key_rule.is_valid(value):
            continue  # the common case, without a generator and a path (this runs per field)
        yield from _check_value(key_rule, f"{base}.{name}", value)


def _extras_of(base: str, table: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield (path, extra object) from ``extra`` and from parseable ``extra_json``."""
    extra = table.get("extra")
    if isinstance(extra, Mapping) and not _is_secret_ref(extra):
        yield f"{base}.extra", extra
    text = table.get("extra_json")
    if isinstance(text, str):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return  # the document layer reports invalid JSON, and JSON nested too deeply
        if isinstance(parsed, dict):
            yield f"{base}.extra_json", parsed


def _check_extra(rule: _TypeRule, base: str, extra: Mapping[str, Any]) -> Iterator[Finding]:
    """Yield findings on the keys and value types of one extra object."""
    if rule.open_extra:
        return
    for key, value in extra.items():
        name = key[len(rule.prefix) :] if rule.prefix and key.startswith(rule.prefix) else key
        key_rule = rule.find_extra(name)
        if key_rule is not None:
            if type(value) in JSON_SCALARS and key_rule.is_valid(value):
                continue  # the common case, as in _check_fields
            yield from _check_value(key_rule, f"{base}.{quote_key(key)}", value)
        elif not any(p.search(name) for p in rule.extra_patterns):
            yield from _unknown_extra(rule, f"{base}.{quote_key(key)}", name)


def _unknown_extra(rule: _TypeRule, path: str, name: str) -> Iterator[Finding]:
    """Yield a warning for an unknown extra key, with a suggestion when one is close."""
    close = rule.suggest_extra(name)
    if rule.passthrough:
        if close:  # other keys are legitimate (e.g. HTTP headers): flag only likely typos
            message = f"unknown for {rule.conn_type} ({rule.passthrough}); did you mean '{close}'?"
            yield Finding(None, path, message, "warning")
        return
    message = f"unknown for {rule.conn_type}"
    yield Finding(None, path, f"{message}; did you mean '{close}'?" if close else message, "warning")


def _check_value(key_rule: _KeyRule, path: str, value: Any) -> Iterator[Finding]:
    """Yield an error when a value does not have the type the key expects."""
    if value is None:  # a JSON null (extra_json): hooks read it as the key being unset
        return
    if type(value) in JSON_SCALARS:  # most values: no secret reference to look for, nothing to stub
        if not key_rule.is_valid(value):
            yield Finding(None, path, f"expected {key_rule.expected}", "error")
        return
    if _is_secret_ref(value):
        if not key_rule.accepts_text:
            message = f"a secret reference gives text, but this key expects {key_rule.expected}"
            yield Finding(None, path, message, "error")
        return
    if not key_rule.is_valid(_stub_secret_refs(value)):
        yield Finding(None, path, f"expected {key_rule.expected}", "error")


def _is_secret_ref(value: Any) -> bool:
    """Tell whether a value is a secret reference: a SecretRef, or a table with one from_* key."""
    if isinstance(value, SecretRef):
        return True
    return is_reference_table(value)


def _stub_secret_refs(value: Any) -> Any:
    """Replace secret references nested in tables and arrays by placeholder text."""
    if _is_secret_ref(value):
        return "<secret>"
    if isinstance(value, Mapping):
        return {k: _stub_secret_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stub_secret_refs(v) for v in value]
    return value


# -- loading --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _builtin_rules() -> TypeRules:
    """Load and compile the shipped schemas once per process."""
    rules: dict[str, _TypeRule] = {}
    for entry in sorted(_schema_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(_SCHEMA_SUFFIX):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            name = schema.get("x-dconn-conn-type", entry.name[: -len(_SCHEMA_SUFFIX)])
            # Not checked against the metaschema on every run: a test checks the shipped schemas.
            rules[name] = _compile_rule(name, schema, check=False)
    return TypeRules(rules)


def _schema_dir() -> Path:
    """Find the conn_type schemas: package data first, then the source checkout."""
    return schemas_dir() / "conn_types"


def _read_user_schemas(path: Path) -> dict[str, Mapping[str, Any]]:
    """Read a user's schema file: one schema naming its type, or {"conn_types": {...}}."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the connection-type schema file ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(document, dict) and isinstance(document.get("x-dconn-conn-type"), str):
        return {document["x-dconn-conn-type"]: document}
    if isinstance(document, dict) and isinstance(document.get("conn_types"), dict):
        schemas = document["conn_types"]
        if all(isinstance(s, dict) for s in schemas.values()):
            return dict(schemas)
    raise InputError(
        f'{path}: expected one JSON Schema with "x-dconn-conn-type", '
        'or an object {"conn_types": {"<conn_type>": <schema>, ...}}'
    )


def _compile_rule(conn_type: str, schema: Mapping[str, Any], check: bool = True) -> _TypeRule:
    """Check a conn_type schema and compile it into validators; raise on a bad schema."""
    if check:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)
    properties = _mapping(schema.get("properties", {}), "properties")
    extra = _mapping(properties.get("extra", {}), "properties.extra")
    defs = schema.get("$defs", {})
    patterns = _mapping(extra.get("patternProperties", {}), "patternProperties")
    extra_keys = _mapping(extra.get("properties", {}), "extra.properties")
    extras = {k: _key_rule(v, defs) for k, v in extra_keys.items() if isinstance(v, dict)}
    return _TypeRule(
        conn_type=conn_type,
        schema=schema,
        fields={k: _key_rule(v, defs) for k, v in properties.items() if isinstance(v, dict)},
        extras=extras,
        folded_extras={k.lower(): v for k, v in extras.items()},
        extra_patterns=tuple(re.compile(p) for p in patterns),
        unused_fields=frozenset(_strings(schema.get("x-dconn-unused-fields", []))),
        field_hints=_mapping(schema.get("x-dconn-field-hints", {}), "x-dconn-field-hints"),
        passthrough=_optional(schema, "x-dconn-extra-passthrough", str),
        open_extra=bool(schema.get("x-dconn-extra-open", False)),
        prefix=_optional(schema, "x-dconn-extra-prefix", str),
        case_insensitive=bool(schema.get("x-dconn-extra-keys-case-insensitive", False)),
        replaced_by=_optional(schema, "x-dconn-replaced-by", str),
        default_port=_optional(schema, "x-dconn-default-port", int),
    )


def _key_rule(schema: Mapping[str, Any], defs: Any) -> _KeyRule:
    """Compile the schema of one key; carry the root's $defs so local $refs resolve."""
    rooted = {"$defs": defs, **schema} if defs else dict(schema)
    is_valid = validity_check(rooted)
    return _KeyRule(rooted, _accepts_text(schema, defs), _expected(schema), is_valid)


def _accepts_text(schema: Any, defs: Any) -> bool:
    """Tell whether some string value can satisfy a schema (for secret references)."""
    if not isinstance(schema, Mapping):
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and isinstance(defs, Mapping):
        return _accepts_text(defs.get(ref.removeprefix("#/$defs/")), defs)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return any(_accepts_text(s, defs) for s in schema[combinator])
    if "const" in schema:
        return isinstance(schema["const"], str)
    if "enum" in schema:
        return any(isinstance(v, str) for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return True
    return "string" in ([kind] if isinstance(kind, str) else kind)


def _expected(schema: Mapping[str, Any]) -> str:
    """Describe in words what a schema expects, from the schema alone (never the value)."""
    text = schema.get("x-dconn-expected")
    if isinstance(text, str):
        return text
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if kinds:
        words = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds)
        if "integer" in kinds and ("minimum" in schema or "maximum" in schema):
            low, high = schema.get("minimum", "…"), schema.get("maximum", "…")
            words += f" from {low} to {high}"
        return words
    return "a value of the documented type"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """Return value as a dict, or raise _RuleError naming where it was expected."""
    if not isinstance(value, dict):
        raise _RuleError(f"{where}: expected an object")
    return value


def _strings(value: Any) -> list[str]:
    """Return value as a list of strings, or raise _RuleError."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _RuleError("x-dconn-unused-fields: expected an array of field names")
    return value


def _optional(schema: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    """Return an optional x-dconn keyword, checking its type."""
    value = schema.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise _RuleError(f"{key}: expected {'an integer' if kind is int else 'text'}")
    return value
