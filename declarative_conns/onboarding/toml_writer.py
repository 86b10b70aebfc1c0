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
calls sensitive (at any depth), every non-empty string becomes ``{ from_env = "VAR" }``. An object
or array under such a key keeps its shape and each string inside it becomes its own reference, as
Airflow's masker hides each string inside it: a reference always yields a string, so hiding a
whole object would turn it into its JSON text and a round trip through ``dconn plan`` would show a
change. Booleans, numbers, nulls and ``""`` stay as they are: the masker shows them too, and a
reference would turn them into strings (``"false"`` is truthy to a hook). VAR is the conn_id and
the field path, upper-cased, each run of other characters than ASCII letters and digits turned into
``_``, with ``_2``, ``_3``... on a collision, and a leading ``_`` if it would start with a digit.

An extra that needs ``extra_json`` and holds secrets keeps both: dconn reads
``{"from_env": "VAR"}`` objects inside ``extra_json`` as references, as it does in ``extra``.

What dconn's document cannot express is left out with a comment at its place and a note in
``RenderedDocument.notes`` (the CLI prints them as warnings), never silently: a key named
``from_env``, ``from_file`` or ``from_command`` inside an extra, since dconn reads such a table as
a secret reference, in ``extra`` and ``extra_json`` alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.exceptions import InvalidStringError

from declarative_conns.core.kinds import CONNECTION
from declarative_conns.core.model import REF_KEYS
from declarative_conns.core.sensitive_words import is_sensitive_key

ConnSpec = dict[str, Any]
#: A variable as Airflow stores it: key, value (the stored text), description, team_name.
VariableSpec = dict[str, Any]
#: A pool: name, slots, description, include_deferred, team_name.
PoolSpec = dict[str, Any]

#: The top-level fields in the order they are written; extra (or extra_json) comes after them.
FIELD_ORDER: tuple[str, ...] = tuple(f for f in CONNECTION.fields if f != "extra")
#: Keys that make dconn read a table as a secret reference, so an extra cannot hold them as data.
REFERENCE_KEYS = frozenset(REF_KEYS)
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
    #: What the document could not express and left out, one sentence each, no values.
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Ref:
    """Stand in for a hidden secret string; renders as ``{ from_env = "VAR" }``."""

    variable: str


@dataclass
class _Namer:
    """Hand out unique variable names and record a placeholder for each."""

    placeholders: list[Placeholder] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def reference(self, conn_id: str, path: str, name: str | None = None) -> _Ref:
        """Return a reference for the secret at ``path`` of ``conn_id``, recording a placeholder.

        The variable is named after `name` when given (a variable's key), else conn_id and path.
        """
        base = (
            _NOT_ALNUM.sub("_", name if name is not None else f"{conn_id}_{path}").strip("_").upper()
            or "VALUE"
        )
        if base[:1].isdigit():
            base = f"_{base}"  # a shell variable name cannot start with a digit
        variable, number = base, 2
        while variable in self.used:
            variable, number = f"{base}_{number}", number + 1
        self.used.add(variable)
        self.placeholders.append(Placeholder(variable=variable, conn_id=conn_id, field=path))
        return _Ref(variable=variable)


def render_document(
    specs: Sequence[ConnSpec] | None,
    *,
    include_secrets: bool = False,
    header: str = "",
    comments: Mapping[str, Sequence[str]] | None = None,
    footer: str = "",
    variables: Sequence[VariableSpec] | None = None,
    pools: Sequence[PoolSpec] | None = None,
) -> RenderedDocument:
    """Render specs as a dconn TOML document, secrets as placeholders unless include_secrets.

    Each kind given (None: not rendered) gets its section, an empty one as a comment.
    ``comments`` maps a conn_id to comment lines written right above its table; ``header`` and
    ``footer`` become comment blocks before and after the objects.
    """
    ordered = sorted(specs or (), key=lambda spec: str(spec["conn_id"]))
    conn_ids = [spec["conn_id"] for spec in ordered]
    if len(set(conn_ids)) != len(conn_ids):
        raise ValueError("render_document needs one spec per conn_id")
    namer = _Namer()
    notes: list[str] = []
    lines = [*_comment_lines(header), "version = 1"]
    if specs is not None and not ordered:
        lines.append("# no connections")
    for spec in ordered:
        lines.append("")
        lines.extend(_comment_lines((comments or {}).get(spec["conn_id"], ()), blank=False))
        lines.extend(_connection_lines(spec, include_secrets, namer, notes))
    if variables is not None:
        lines += ["", "[variables]"] + ([] if variables else ["# no variables"])
        for variable in sorted(variables, key=lambda v: str(v["key"])):
            lines += ["", *_variable_lines(variable, include_secrets, namer)]
    if pools is not None:
        lines += ["", "[pools]"] + ([] if pools else ["# no pools"])
        for pool in sorted(pools, key=lambda p: str(p["name"])):
            lines += ["", *_pool_lines(pool)]
    if footer:
        lines.extend(["", *_comment_lines(footer, blank=False)])
    return RenderedDocument("\n".join(lines) + "\n", namer.placeholders, notes)


def render_env_example(placeholders: Sequence[Placeholder]) -> str:
    """Render a ``.env.example`` that lists one empty ``VAR=`` per placeholder, with its origin."""
    lines = [
        "# The secrets of the exported connections, read by their { from_env = ... } references.",
        "# Copy this file to .env, fill in the values, and keep that file out of version control.",
    ]
    if not placeholders:
        lines.append("# (none: the document holds no secret references)")
    for placeholder in placeholders:
        lines += [
            "",
            f"# {printable(placeholder.conn_id)}: {printable(placeholder.field)}",
            f"{placeholder.variable}=",
        ]
    return "\n".join(lines) + "\n"


def printable(text: str) -> str:
    """Return text fit for one comment line: line breaks and lone surrogates escaped."""
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in escaped)


def _comment_lines(text: str | Sequence[str], *, blank: bool = True) -> list[str]:
    """Return text as comment lines (blank lines as a bare #), then a blank line if ``blank``."""
    given = text.splitlines() if isinstance(text, str) else list(text)
    lines = []
    for line in given:
        if not line.strip():
            lines.append("#")
        else:
            lines.append(line if line.startswith("#") else f"# {printable(line)}")
    return [*lines, ""] if lines and blank else lines


def _connection_lines(spec: ConnSpec, include_secrets: bool, namer: _Namer, notes: list[str]) -> list[str]:
    """Return the lines of one connection's table, its extra table included."""
    conn_id = str(spec["conn_id"])
    table = f"connections.{_key(conn_id)}"
    lines = [f"[{table}]"]
    for name in FIELD_ORDER:
        value = spec.get(name)
        if value is None or value == "":
            continue
        if name == "password" and not include_secrets:
            ref = namer.reference(conn_id, name)
            lines.append(_assignment(name, ref))
        else:
            lines.append(_assignment(name, value))
    extra = spec.get("extra")
    if extra:
        lines.extend(_extra_lines(table, conn_id, extra, include_secrets, namer, notes))
    return lines


def _variable_lines(spec: VariableSpec, include_secrets: bool, namer: _Namer) -> list[str]:
    """Return the lines of one variable's table: a sensitive value as a reference, JSON text as a table."""
    key = str(spec["key"])
    lines = [f"[variables.{_key(key)}]"]
    text = str(spec["value"])
    value: Any = text
    if (is_sensitive_key(key) or text == "***") and not include_secrets:
        value = namer.reference(f"variables.{key}", "value", name=key)
    elif text[:1] in ("{", "["):
        value = _json_table(text)
    lines.append(_assignment("value", value))
    lines += [_assignment(n, spec[n]) for n in ("description", "team_name") if spec.get(n)]
    return lines


def _json_table(text: str) -> Any:
    """Return JSON text as the table or array it holds, when TOML keeps it exactly; else the text.

    dconn compares a declared table with the stored text as parsed JSON, so either spelling plans
    no change; the table reads better in a review.
    """
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text
    dropped: list[tuple[str, str]] = []
    _without_reference_keys(parsed, "value", dropped)
    if isinstance(parsed, (dict, list)) and parsed and _representable(parsed) and not dropped:
        return parsed
    return text


def _pool_lines(spec: PoolSpec) -> list[str]:
    """Return the lines of one pool's table (default_pool: only what dconn manages on it)."""
    name = str(spec["name"])
    lines = [f"[pools.{_key(name)}]", _assignment("slots", spec["slots"])]
    if spec.get("description") and name != "default_pool":
        lines.append(_assignment("description", spec["description"]))
    if spec.get("include_deferred"):
        lines.append(_assignment("include_deferred", True))
    if spec.get("team_name") and name != "default_pool":
        lines.append(_assignment("team_name", spec["team_name"]))
    return lines


def _extra_lines(
    table: str,
    conn_id: str,
    extra: Mapping[str, Any],
    include_secrets: bool,
    namer: _Namer,
    notes: list[str],
) -> list[str]:
    """Return the lines of a non-empty extra: a table, or extra_json when TOML cannot hold it."""
    dropped: list[tuple[str, str]] = []
    extra = _without_reference_keys(extra, "extra", dropped)
    refs: list[_Ref] = []
    hidden: dict[str, Any] = dict(extra)
    if not include_secrets:
        for key, value in extra.items():
            path = f"extra.{key}"
            hidden[key] = _hide(value, path, is_sensitive_key(key), conn_id=conn_id, namer=namer, refs=refs)
    as_json = not _representable(hidden)
    lines = [f"# {path} left out: {why}" for path, why in dropped]
    notes.extend(
        f"connection {printable(conn_id)!r}: {path} left out ({why}); restore it by hand if it matters"
        for path, why in dropped
    )
    if as_json:
        # extra_json reads references like extra does, so a null can sit beside a secret.
        return [*lines, f"extra_json = {_json_string(_references_as_json(hidden))}"]
    if hidden:
        lines.append(f"[{table}.extra]")
        lines.extend(_assignment(key, value) for key, value in hidden.items())
    return lines


def _without_reference_keys(value: Any, path: str, dropped: list[tuple[str, str]]) -> Any:
    """Return value without keys that dconn would read as a secret reference, recording each."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in REFERENCE_KEYS:
                dropped.append((printable(f"{path}.{key}"), "dconn reads it as a secret reference"))
            else:
                kept[key] = _without_reference_keys(item, f"{path}.{key}", dropped)
        return kept
    if isinstance(value, list):
        return [_without_reference_keys(item, f"{path}.{i}", dropped) for i, item in enumerate(value)]
    return value


def _hide(value: Any, path: str, secret: bool, *, conn_id: str, namer: _Namer, refs: list[_Ref]) -> Any:
    """Return value with every non-empty string at or under a sensitive key replaced by a reference.

    `***` is what a REST API shows for a key Airflow hides (its own list may name more keys than
    dconn's): it becomes a reference too, never a value that would overwrite the secret.
    """
    if (secret or value == "***") and isinstance(value, str) and value:
        ref = namer.reference(conn_id, path)
        refs.append(ref)
        return ref
    if isinstance(value, dict):
        return {
            k: _hide(v, f"{path}.{k}", secret or is_sensitive_key(k), conn_id=conn_id, namer=namer, refs=refs)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _hide(v, f"{path}.{i}", secret, conn_id=conn_id, namer=namer, refs=refs)
            for i, v in enumerate(value)
        ]
    return value


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


def _references_as_json(value: Any) -> Any:
    """Return a value with each reference spelled as its JSON object, for extra_json."""
    if isinstance(value, _Ref):
        return {"from_env": value.variable}
    if isinstance(value, dict):
        return {k: _references_as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_references_as_json(v) for v in value]
    return value


def _assignment(key: str, value: Any) -> str:
    """Return ``key = value``; a reference reads for itself, so it needs no comment."""
    return f"{_key(key)} = {_value(value)}"


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
