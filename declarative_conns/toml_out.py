"""Render connection specs as a dconn TOML document, for ``dconn export`` and ``dconn convert``.

Layout: ``version = 1``, then one ``[connections.<conn_id>]`` table per connection, sorted by
conn_id, with the fields in the order conn_type, description, host, schema, login, password,
port; ``None`` and ``""`` are left out (dconn treats them as unset). A non-empty extra follows as
its own ``[connections.<conn_id>.extra]`` table, one line per top-level key, nested values as
inline tables and arrays, so a diff of the file shows which key changed. Keys and strings are
quoted and escaped by tomlkit; an empty extra is left out (dconn reads it as NULL).

TOML has no null, and its integers are 64-bit: an extra holding a null, an integer beyond that
range or a lone surrogate anywhere is written as ``extra_json = '<compact JSON>'`` instead, which
keeps it exactly.

Secrets, unless ``include_secrets``: the password, and under every extra key that Airflow's masker
calls sensitive (at any depth), a non-empty string, object or array, become ``{ from_env = "VAR" }``
(an object or array as a whole: the variable must hold its JSON text). Booleans, numbers, nulls and
``""`` under such keys stay as they are: they hold nothing secret, and a reference always yields a
string, which would change them (``"false"`` is truthy to a hook). VAR is the conn_id and the field
path, upper-cased, each run of other characters than ASCII letters and digits turned into ``_``,
with ``_2``, ``_3``... on a collision, and a leading ``_`` if it would start with a digit.

An extra that needs ``extra_json`` *and* holds secrets cannot keep both: ``extra_json`` is one
string and cannot hold a reference. Secrets win: the extra is written as a table with the
references, and each value TOML cannot hold is left out with a comment naming its path, for the
user to restore by hand. Losing a null is the lesser harm; writing the secret is not an option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.exceptions import InvalidStringError

from declarative_conns.sensitive import is_sensitive_key

ConnSpec = dict[str, Any]

#: The top-level fields in the order they are written; extra (or extra_json) comes after them.
FIELD_ORDER: tuple[str, ...] = (
    "conn_type",
    "description",
    "host",
    "schema",
    "login",
    "password",
    "port",
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class Placeholder:
    """Name one secret that the document reads from an environment variable."""

    variable: str
    conn_id: str
    field: str


@dataclass(frozen=True)
class RenderedDocument:
    """Hold a rendered TOML document and the placeholders the user must fill in."""

    text: str
    placeholders: list[Placeholder]


@dataclass(frozen=True)
class _Ref:
    """Stand in for a hidden secret inside an extra; renders as ``{ from_env = "VAR" }``."""

    variable: str
    kind: str  # the JSON type of the hidden value, to tell the user what to put in VAR


@dataclass
class _Namer:
    """Hand out unique variable names and record a placeholder for each."""

    placeholders: list[Placeholder] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def reference(self, conn_id: str, path: str, value: Any) -> _Ref:
        """Return a reference for the secret at ``path`` of ``conn_id``, recording a placeholder."""
        base = _NOT_ALNUM.sub("_", f"{conn_id}_{path}").strip("_").upper()
        if base[:1].isdigit():
            base = f"_{base}"  # a shell variable name cannot start with a digit
        variable, number = base, 2
        while variable in self.used:
            variable, number = f"{base}_{number}", number + 1
        self.used.add(variable)
        self.placeholders.append(Placeholder(variable=variable, conn_id=conn_id, field=path))
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "string"
        return _Ref(variable=variable, kind=kind)


def render_document(
    specs: Sequence[ConnSpec],
    *,
    include_secrets: bool = False,
    header: str = "",
    duplicates: Mapping[str, Sequence[int]] | None = None,
) -> RenderedDocument:
    """Render specs as a dconn TOML document, secrets as placeholders unless include_secrets."""
    ordered = sorted(specs, key=lambda spec: str(spec["conn_id"]))
    conn_ids = [spec["conn_id"] for spec in ordered]
    if len(set(conn_ids)) != len(conn_ids):
        raise ValueError("render_document needs one spec per conn_id")
    namer = _Namer()
    lines = [*_header_lines(header), "version = 1"]
    if not ordered:
        lines.append("# no connections")
    for spec in ordered:
        row_ids = (duplicates or {}).get(spec["conn_id"], ())
        lines.append("")
        lines.extend(_connection_lines(spec, include_secrets, namer, row_ids))
    return RenderedDocument(text="\n".join(lines) + "\n", placeholders=namer.placeholders)


def render_env_example(placeholders: Sequence[Placeholder]) -> str:
    """Render a ``.env.example`` that lists one empty ``VAR=`` per placeholder, with its origin."""
    lines = [
        "# The secrets of the exported connections, read by their { from_env = ... } references.",
        "# Copy this file to .env, fill in the values, and keep that file out of version control.",
    ]
    for placeholder in placeholders:
        lines += [
            "",
            f"# {placeholder.conn_id}: {placeholder.field}",
            f"{placeholder.variable}=",
        ]
    return "\n".join(lines) + "\n"


def _header_lines(header: str) -> list[str]:
    """Return the header as comment lines followed by a blank line, or nothing."""
    lines = []
    for line in header.splitlines():
        if not line.strip():
            lines.append("#")
        else:
            lines.append(line if line.startswith("#") else f"# {line}")
    return [*lines, ""] if lines else []


def _connection_lines(
    spec: ConnSpec, include_secrets: bool, namer: _Namer, row_ids: Sequence[int]
) -> list[str]:
    """Return the lines of one connection's table, its extra table included."""
    conn_id = str(spec["conn_id"])
    table = f"connections.{_key(conn_id)}"
    lines = []
    if row_ids:
        rows = ", ".join(str(row_id) for row_id in row_ids)
        lines.append(
            f"# duplicate rows {rows} of this conn_id exist in the database; "
            "dconn plan will propose deleting them"
        )
    lines.append(f"[{table}]")
    for name in FIELD_ORDER:
        value = spec.get(name)
        if value is None or value == "":
            continue
        if name == "password" and not include_secrets:
            ref = namer.reference(conn_id, name, value)
            lines.append(_assignment(name, ref, [ref]))
        else:
            lines.append(_assignment(name, value, []))
    extra = spec.get("extra")
    if extra:
        lines.extend(_extra_lines(table, conn_id, extra, include_secrets, namer))
    return lines


def _extra_lines(
    table: str,
    conn_id: str,
    extra: Mapping[str, Any],
    include_secrets: bool,
    namer: _Namer,
) -> list[str]:
    """Return the lines of a non-empty extra: a table, or extra_json when TOML cannot hold it."""
    refs_by_key: dict[str, list[_Ref]] = {}
    hidden: dict[str, Any] = dict(extra)
    if not include_secrets:
        for key, value in extra.items():
            refs: list[_Ref] = []
            hidden[key] = _hide(value, key, f"extra.{key}", conn_id=conn_id, namer=namer, refs=refs)
            if refs:
                refs_by_key[key] = refs
    lines = []
    if not _representable(hidden):
        if not refs_by_key:
            return [f"extra_json = {_json_string(extra)}"]
        dropped: list[tuple[str, str]] = []
        hidden = _drop_unrepresentable(hidden, "extra", dropped)
        lines = [
            f"# {path} left out: {why}; extra_json cannot hold secret references" for path, why in dropped
        ]
    lines.insert(0, f"[{table}.extra]")
    for key, value in hidden.items():
        lines.append(_assignment(key, value, refs_by_key.get(key, [])))
    return lines


def _hide(value: Any, key: str | None, path: str, *, conn_id: str, namer: _Namer, refs: list[_Ref]) -> Any:
    """Return value with every secret under a sensitive key replaced by a reference."""
    if key is not None and is_sensitive_key(key) and _holds_secret(value):
        ref = namer.reference(conn_id, path, value)
        refs.append(ref)
        return ref
    if isinstance(value, dict):
        return {
            k: _hide(v, k, f"{path}.{k}", conn_id=conn_id, namer=namer, refs=refs) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _hide(v, None, f"{path}.{i}", conn_id=conn_id, namer=namer, refs=refs)
            for i, v in enumerate(value)
        ]
    return value


def _holds_secret(value: Any) -> bool:
    """Tell whether a value under a sensitive key could hide a secret: a string, object or array."""
    return isinstance(value, str | dict | list) and len(value) > 0


def _representable(value: Any) -> bool:
    """Tell whether TOML can hold a JSON value exactly (no null, 64-bit ints, no lone surrogates)."""
    if isinstance(value, bool | float | _Ref):
        return True
    if isinstance(value, int):
        return _INT64_MIN <= value <= _INT64_MAX
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, list):
        return all(_representable(item) for item in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _representable(v) for k, v in value.items())
    return False


def _encodable(text: str) -> bool:
    """Tell whether a string is valid Unicode (JSON allows lone surrogates; TOML does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _drop_unrepresentable(value: Any, path: str, dropped: list[tuple[str, str]]) -> Any:
    """Return value without what TOML cannot hold, recording each dropped path and why."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item_path = f"{path}.{key}"
            if _encodable(key) and (isinstance(item, dict | list) or _representable(item)):
                kept[key] = _drop_unrepresentable(item, item_path, dropped)
            else:
                dropped.append((_printable(item_path), _why(item)))
        return kept
    if isinstance(value, list):
        kept_items = []
        for index, item in enumerate(value):
            if isinstance(item, dict | list) or _representable(item):
                kept_items.append(_drop_unrepresentable(item, f"{path}.{index}", dropped))
            else:
                dropped.append((_printable(f"{path}.{index}"), _why(item)))
        return kept_items
    return value


def _why(value: Any) -> str:
    """Say why TOML cannot hold a value, without showing the value."""
    return "TOML has no null" if value is None else "TOML cannot hold its value"


def _printable(path: str) -> str:
    """Return a path fit for a one-line comment."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8").replace("\n", "\\n")


def _assignment(key: str, value: Any, refs: Sequence[_Ref]) -> str:
    """Return ``key = value``, with a comment naming the variables of its references."""
    line = f"{_key(key)} = {_value(value)}"
    if not refs:
        return line
    notes = [
        f"set ${ref.variable}" + ("" if ref.kind == "string" else f" to the JSON text of the {ref.kind}")
        for ref in refs
    ]
    return f"{line}  # secret: {'; '.join(notes)}"


def _key(key: str) -> str:
    """Return a TOML key, bare when it may be, quoted and escaped otherwise."""
    return tomlkit.key(key).as_string()


def _value(value: Any) -> str:
    """Return the TOML text of a JSON value or a reference, tables and arrays inline."""
    if isinstance(value, _Ref):
        return f'{{ from_env = "{value.variable}" }}'
    if isinstance(value, bool | int | float | str):
        return tomlkit.item(value).as_string()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
        )
    raise TypeError(f"cannot render a {type(value).__name__} as TOML")


def _json_string(extra: Mapping[str, Any]) -> str:
    """Return the compact JSON of an extra as a TOML string, literal ('...') when it can be."""
    text = json.dumps(extra, separators=(",", ":"), ensure_ascii=not _all_encodable(extra))
    try:
        return tomlkit.string(text, literal=True).as_string()
    except InvalidStringError:  # a quote or a control character: fall back to a basic string
        return tomlkit.item(text).as_string()


def _all_encodable(value: Any) -> bool:
    """Tell whether every string in a JSON value is valid Unicode, so JSON may keep it unescaped."""
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, list):
        return all(_all_encodable(item) for item in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _all_encodable(v) for k, v in value.items())
    return True
