"""Answer "is this document valid?" fast, so that jsonschema runs only to explain problems.

jsonschema walks a document at tens of microseconds per value: seconds for a TOML file of
10,000 connections or a state file of as many rows. `compile_check` turns a JSON Schema
(draft 2020-12) that uses only the keywords below into nested closures that return what
`Draft202012Validator(schema).is_valid(document)` returns, at a fraction of the cost. Callers
use it as a gate: True means valid, and only on False do they run jsonschema, whose errors
they report. A schema that uses any other keyword compiles to None: callers then use
jsonschema alone, so a schema edit can make dconn slower but never accept an invalid document.

Supported: type, properties, patternProperties, additionalProperties, required,
minProperties, maxProperties, propertyNames, items (without prefixItems), minItems,
maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, const, enum, anyOf, allOf, oneOf, not, if/then/else, and $ref to a
local "#/..." pointer (recursion included). Annotations (title, description, $comment,
default, examples, x-...) are ignored, as jsonschema ignores them.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)
_ROOT_ONLY = frozenset({"$schema", "$id", "$defs"})


class _Unsupported(Exception):
    """The schema uses a keyword this module does not implement."""


def compile_check(schema: Mapping[str, Any] | bool) -> Check | None:
    """Return a validity check equivalent to jsonschema's for this schema, or None."""
    try:
        return _Compiler(schema).compile(schema, root=True)
    except (_Unsupported, re.error, TypeError, KeyError, ValueError):
        return None


def _is_integer(value: Any) -> bool:
    """Tell whether jsonschema's 2020-12 type checker calls a value an integer."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    """Tell whether jsonschema calls a value a number (booleans are not)."""
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": _is_integer,
    "number": _is_number,
}


def _equal(one: Any, two: Any) -> bool:
    """Compare as jsonschema does for const and enum: True is not 1, containers recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return one.keys() == two.keys() and all(_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    return bool(one == two)


def _unique(value: Any) -> bool:
    """Tell whether a list's items are distinct as jsonschema's uniqueItems decides it."""
    if not isinstance(value, list):
        return True
    if all(isinstance(item, str) for item in value):
        return len(set(value)) == len(value)
    # Rare (not all text): compare every pair, with jsonschema's notion of equality.
    return not any(_equal(a, b) for i, a in enumerate(value) for b in value[i + 1 :])


def _any(checks: tuple[Check, ...]) -> Check:
    """Combine checks: valid when one is (tried in order)."""
    if len(checks) == 1:
        return checks[0]

    def check(v: Any) -> bool:
        # A loop, not any() over a generator: these closures run for every value of a document.
        for c in checks:  # noqa: SIM110
            if c(v):
                return True
        return False

    return check


def _all(checks: list[Check]) -> Check:
    """Combine checks: valid when every one is."""
    if not checks:
        return lambda _v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    frozen = tuple(checks)

    def check(v: Any) -> bool:
        for c in frozen:  # noqa: SIM110 - a loop is faster than all() over a generator
            if not c(v):
                return False
        return True

    return check


class _Compiler:
    """Compile one schema document; $refs resolve against its root."""

    def __init__(self, root: Mapping[str, Any] | bool) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, node: Any, root: bool = False) -> Check:
        """Return the check of one (sub)schema."""
        if node is True:
            return lambda _v: True
        if node is False:
            return lambda _v: False
        if not isinstance(node, Mapping):
            raise _Unsupported(repr(node))
        checks: list[Check] = []
        # The type check first: it is cheap and rejects most wrong values at once.
        for keyword, value in sorted(node.items(), key=lambda item: item[0] != "type"):
            if keyword in _ANNOTATIONS or keyword.startswith("x-") or keyword in ("then", "else"):
                continue
            if keyword in _ROOT_ONLY:
                if not root:
                    raise _Unsupported(keyword)
                continue
            checks.append(self._keyword(keyword, value, node))
        return _all(checks)

    def _keyword(self, keyword: str, value: Any, node: Mapping[str, Any]) -> Check:
        """Return the check of one keyword of a schema object."""
        if keyword == "$ref":
            return self._ref(value)
        method = getattr(self, "_k_" + keyword, None) if keyword.isalpha() else None
        if method is None:
            raise _Unsupported(keyword)
        check: Check = method(value, node)
        return check

    # -- structure ----------------------------------------------------------------------

    def _ref(self, ref: str) -> Check:
        if ref not in self.refs:
            cell: list[Check] = []
            self.refs[ref] = lambda v: cell[0](v)  # noqa: PLW0108 - late-bound, so a schema may recurse
            cell.append(self.compile(self._resolve(ref)))
        return self.refs[ref]

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/") or "%" in ref:
            raise _Unsupported(ref)
        node: Any = self.root
        for escaped in ref[2:].split("/"):
            part = escaped.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def _k_type(self, names: str | list[str], _node: Mapping[str, Any]) -> Check:
        tests = tuple(_TYPES[n] for n in ([names] if isinstance(names, str) else names))
        if len(tests) == 1:
            return tests[0]
        return _any(tests)

    def _k_properties(self, props: Mapping[str, Any], node: Mapping[str, Any]) -> Check:
        compiled = {name: self.compile(sub) for name, sub in props.items()}

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, item in v.items():
                sub = compiled.get(key)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def _k_patternProperties(self, patterns: Mapping[str, Any], _node: Mapping[str, Any]) -> Check:
        compiled = [(re.compile(p), self.compile(sub)) for p, sub in patterns.items()]

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            return all(sub(item) for rx, sub in compiled for k, item in v.items() if rx.search(k))

        return check

    def _k_additionalProperties(self, extra: Any, node: Mapping[str, Any]) -> Check:
        known = frozenset(node.get("properties", {}))
        joined = "|".join(node.get("patternProperties", {}))
        pattern = re.compile(joined) if joined else None
        sub = self.compile(extra)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, item in v.items():
                if key in known or (pattern is not None and pattern.search(key)):
                    continue
                if not sub(item):
                    return False
            return True

        return check

    def _k_required(self, names: list[str], _node: Mapping[str, Any]) -> Check:
        needed = tuple(names)
        if len(needed) == 1:
            (only,) = needed
            return lambda v: not isinstance(v, dict) or only in v
        return lambda v: not isinstance(v, dict) or all(n in v for n in needed)

    def _k_minProperties(self, least: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) >= least

    def _k_maxProperties(self, most: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) <= most

    def _k_propertyNames(self, names: Any, _node: Mapping[str, Any]) -> Check:
        sub = self.compile(names)
        return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)

    def _k_items(self, items: Any, node: Mapping[str, Any]) -> Check:
        if "prefixItems" in node:
            raise _Unsupported("prefixItems")
        sub = self.compile(items)
        return lambda v: not isinstance(v, list) or all(sub(i) for i in v)

    def _k_uniqueItems(self, unique: bool, _node: Mapping[str, Any]) -> Check:
        return _unique if unique else lambda _v: True

    def _k_minItems(self, least: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) >= least

    def _k_maxItems(self, most: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) <= most

    # -- scalars ------------------------------------------------------------------------

    def _k_minLength(self, least: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= least

    def _k_maxLength(self, most: int, _node: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) <= most

    def _k_pattern(self, pattern: str, _node: Mapping[str, Any]) -> Check:
        search = re.compile(pattern).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def _k_minimum(self, least: Any, _node: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or bool(v >= least)

    def _k_maximum(self, most: Any, _node: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or bool(v <= most)

    def _k_exclusiveMinimum(self, least: Any, _node: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or bool(v > least)

    def _k_exclusiveMaximum(self, most: Any, _node: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or bool(v < most)

    def _k_const(self, const: Any, _node: Mapping[str, Any]) -> Check:
        return lambda v: _equal(v, const)

    def _k_enum(self, options: list[Any], _node: Mapping[str, Any]) -> Check:
        return lambda v: any(_equal(v, o) for o in options)

    # -- logic --------------------------------------------------------------------------

    def _k_anyOf(self, subs: list[Any], _node: Mapping[str, Any]) -> Check:
        return _any(tuple(self.compile(s) for s in subs))

    def _k_allOf(self, subs: list[Any], _node: Mapping[str, Any]) -> Check:
        return _all([self.compile(s) for s in subs])

    def _k_oneOf(self, subs: list[Any], _node: Mapping[str, Any]) -> Check:
        checks = tuple(self.compile(s) for s in subs)
        return lambda v: sum(1 for c in checks if c(v)) == 1

    def _k_not(self, sub: Any, _node: Mapping[str, Any]) -> Check:
        check = self.compile(sub)
        return lambda v: not check(v)

    def _k_if(self, condition: Any, node: Mapping[str, Any]) -> Check:
        test = self.compile(condition)
        then = self.compile(node["then"]) if "then" in node else None
        otherwise = self.compile(node["else"]) if "else" in node else None

        def check(v: Any) -> bool:
            branch = then if test(v) else otherwise
            return branch is None or branch(v)

        return check
