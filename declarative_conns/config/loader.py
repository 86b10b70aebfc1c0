"""Load the desired state: TOML files -> validated objects of each kind, secret references kept as references.

A document's `[connections]`, `[variables]` and `[pools]` tables each make their kind managed
(an empty table too); a document without `[variables]` never touches variables. A document with
none of the three manages connections, as every document did before variables and pools.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# tomli, which Python's tomllib is taken from, in its compiled form (pyproject.toml says why).
import tomli as tomllib

from declarative_conns.config.findings import Finding, dotted_path, errors_of, is_within
from declarative_conns.config.schema import validate_document
from declarative_conns.core.kinds import BY_NAME, BY_PLURAL, KINDS
from declarative_conns.core.lifecycle import parse_path
from declarative_conns.core.model import (
    JSON_SCALARS,
    MAX_NESTING,
    REF_KEYS,
    Address,
    SecretRef,
    Settings,
    address_of,
    is_reference_table,
    nesting_exceeds,
)
from declarative_conns.core.planner import is_ignored
from declarative_conns.core.sensitive import MaskedFields, masked_tree
from declarative_conns.errors import InputError, ValidationFailed

__all__ = [
    "DesiredConnection",
    "DesiredObject",
    "DesiredState",
    "check_document",
    "config_files",
    "desired_from_dicts",
    "ignore_findings",
    "load_desired",
    "read_desired",
]

_TOO_DEEP = f"nests deeper than {MAX_NESTING} levels, dconn's limit"


@dataclass(frozen=True, repr=False)
class DesiredObject:
    """Hold one declared object as written, with references parsed, not resolved."""

    address: Address
    source: Path
    #: Declared fields; a connection's `extra` is a dict (from `extra` or `extra_json`); refs are
    #: SecretRefs. Dicts whose repr hides literal secrets (MaskedFields), whoever builds the object;
    #: a plain dict where nothing can be secret (a pool, a variable under a plain key).
    fields: Mapping[str, Any]
    #: Where each field came from when layers were merged: field path -> file; a path absent
    #: here (and every path of an object read from one file) came from `source`.
    origins: Mapping[tuple[str, ...], Path] = field(default_factory=dict)
    #: `ignore_changes`: paths whose differences on the existing object dconn leaves alone.
    ignore_changes: tuple[tuple[str | int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MaskedFields):
            kind, key = self.address.kind, self.address.key
            rules = BY_NAME[kind]
            secret = rules.key_secret_paths(key)
            if not secret and not rules.names_secrets:
                # Nothing here can be a literal secret (a reference shows as itself): a plain dict,
                # which the cyclic GC does not track when its values are plain.
                object.__setattr__(self, "fields", dict(self.fields))
                return
            fields = self.fields if type(self.fields) is dict else dict(self.fields)  # masked_tree copies it
            object.__setattr__(self, "fields", masked_tree(fields, kind, secret_paths=secret))

    @property
    def key(self) -> str:
        """Return the object's key (conn_id, variable key, pool name)."""
        return self.address.key

    @property
    def conn_id(self) -> str:
        """Return the key, by the name connections have used since dconn's first release."""
        return self.address.key

    def __repr__(self) -> str:
        return f"DesiredObject({self.address}, source={str(self.source)!r})"


#: The name of a declared object before variables and pools existed; the same class.
DesiredConnection = DesiredObject


@dataclass(frozen=True)
class DesiredState:
    """Hold every declared object, the kinds the document manages, and the merged settings."""

    objects: Mapping[Address, DesiredObject]
    settings: Settings
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = field(default=())
    #: The kinds whose table the document has (connection, variable, pool), in that order.
    kinds: tuple[str, ...] = ("connection",)

    @property
    def connections(self) -> Mapping[str, DesiredObject]:
        """Return the declared connections by conn_id."""
        return self.of_kind("connection")

    def of_kind(self, kind: str) -> Mapping[str, DesiredObject]:
        """Return the declared objects of one kind by key."""
        return {a.key: o for a, o in self.objects.items() if a.kind == kind}


def config_files(path: Path) -> list[Path]:
    """Return the TOML files a -c/--config PATH names: the file, or a folder's *.toml sorted."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.toml") if p.is_file())
        if not files:
            raise InputError(f"{path}: the folder holds no *.toml files")
        return files
    if not path.exists():
        raise InputError(f"{path}: no such file; pass -c/--config with a TOML file or folder")
    return [path]


def load_desired(path: Path) -> DesiredState:
    """Read, validate and merge the TOML files at a path; report every problem at once."""
    desired, findings = read_desired(path)
    if errors_of(findings):
        raise ValidationFailed(findings)
    return desired


def read_desired(path: Path) -> tuple[DesiredState, list[Finding]]:
    """Read the TOML files at a path; return the desired state and every problem, raising for none.

    With problems, the state holds what could be read of each connection (for the conn_type
    checks, which report alongside them); it is not fit to plan. A path that names nothing is
    an InputError.
    """
    files = config_files(path)
    findings: list[Finding] = []
    objects: dict[Address, DesiredObject] = {}
    kinds: set[str] = set()
    settings_seen: dict[str, tuple[Any, Path]] = {}
    for file in files:
        document = _parse_toml(file, findings)
        if document is None:
            continue
        base = str(file.parent)  # where its references' relative paths start, worked out once
        document, problems = check_document(document, file)
        if not any(is_within(p.path, "settings") for p in problems):
            _merge_settings(document.get("settings", {}), file, settings_seen, problems)
        kinds.update(BY_PLURAL[plural].name for plural in BY_PLURAL if plural in document)
        for address, table in _tables(document):
            if address in objects:
                label = BY_PLURAL[_plural(address)].key_label
                message = f"{label} {json.dumps(address.key)} is also declared in {objects[address].source}"
                problems.append(Finding(file, dotted_path([_plural(address), address.key]), message))
                continue
            objects[address] = _parse_object(address, table, file, problems, base)
        findings.extend(_in_path_order(problems))
    settings = _settings(settings_seen)
    return _desired(objects, settings, tuple(files), kinds), findings


def _plural(address: Address) -> str:
    """Return the document table of an address's kind."""
    return next(k.plural for k in KINDS if k.name == address.kind)


def check_document(document: dict[str, Any], file: Path) -> tuple[dict[str, Any], list[Finding]]:
    """Return a document cut to the nesting limit, and every problem of its nesting and schema.

    The limit is checked first: jsonschema descends into `extra` recursively, so a deeper value
    would exhaust Python's stack; the rest of the document is still checked.
    """
    problems: list[Finding] = []
    # One walk of the whole document (its tables are two levels down); each table's only when deep.
    deep = nesting_exceeds(document, MAX_NESTING + 3)
    for address, table in _tables(document) if deep else ():
        if nesting_exceeds(table, MAX_NESTING + 1):  # its fields only when this table is the deep one
            problems.extend(
                Finding(file, dotted_path([_plural(address), address.key, name]), _TOO_DEEP)
                for name, value in table.items()
                if nesting_exceeds(value)
            )
    if problems:
        document = _cut(document, MAX_NESTING + 2)  # the document and [KIND] add two levels
    return document, problems + validate_document(document, file)


def _in_path_order(findings: list[Finding]) -> list[Finding]:
    """Return one document's findings ordered by path, so each connection's problems stand together."""
    return sorted(findings, key=lambda f: f.path)


def _tables(document: Mapping[str, Any]) -> list[tuple[Address, dict[str, Any]]]:
    """Return (address, table) for every object table of a document, however malformed."""
    found = []
    for kind in KINDS:
        tables = document.get(kind.plural)
        if isinstance(tables, dict):
            found += [(address_of(kind.name, key), t) for key, t in tables.items() if isinstance(t, dict)]
    return found


def _cut(value: Any, depth: int) -> Any:
    """Return a copy of a JSON-like value without what nests deeper than `depth` levels."""
    if isinstance(value, dict):
        return {k: _cut(v, depth - 1) for k, v in value.items()} if depth > 0 else {}
    if isinstance(value, (list, tuple)):
        return [_cut(v, depth - 1) for v in value] if depth > 0 else []
    return value


def _desired(
    objects: dict[Address, DesiredObject], settings: Settings, files: tuple[Path, ...], kinds: Iterable[str]
) -> DesiredState:
    """Assemble a DesiredState, with a warning for each declared key an ignore pattern matches."""
    warnings = declared_but_ignored(objects, settings)
    return DesiredState(objects, settings, files, warnings, ordered_kinds(kinds))


def ordered_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Return the kinds a document manages, in plan order; connections when it has none of the tables."""
    present = set(kinds)
    return tuple(k.name for k in KINDS if k.name in present) or ("connection",)


def declared_but_ignored(objects: Mapping[Address, DesiredObject], settings: Settings) -> tuple[str, ...]:
    """Return a warning for each declared object an ignore pattern matches (it is managed all the same)."""
    return tuple(f.message for f in ignore_findings(objects.values(), settings))


def ignore_findings(objects: Iterable[DesiredObject], settings: Settings) -> list[Finding]:
    """Return a warning for each declared object an ignore pattern matches (it is managed)."""
    return [
        Finding(
            obj.source,
            dotted_path([_plural(obj.address), obj.key]),
            f"{obj.address} matches an ignore pattern but is declared, so dconn manages it",
            "warning",
        )
        for obj in sorted(objects, key=lambda o: o.address)
        if is_ignored(obj.key, settings.ignore)
    ]


def desired_from_dicts(
    connections: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
    source: str = "<python>",
    *,
    base_dir: Path | str | None = None,
    variables: Mapping[str, Mapping[str, Any]] | None = None,
    pools: Mapping[str, Mapping[str, Any]] | None = None,
) -> DesiredState:
    """Build a validated desired state from Python mappings, as if they were one TOML document.

    Same schema, rules and messages as a TOML file, `source` standing for the file name. A kind
    is managed when its mapping is given (`connections={}` manages connections and declares
    none). A reference is a `SecretRef` or a `{"from_env": ...}`-style dict; relative
    `from_file` paths and `from_command`s resolve in `base_dir` (default: the current
    directory). A top-level field set to None is not declared. Raise ValidationFailed listing
    every problem.
    """
    file = Path(source)
    base = str(Path(base_dir) if base_dir is not None else Path.cwd())
    given = {"connections": connections, "variables": variables, "pools": pools}
    tables = {plural: table for plural, table in given.items() if table is not None}
    document: dict[str, Any] = {
        plural: _python_value(t, refs=False, top=True) for plural, t in tables.items()
    }
    if settings is not None:
        document["settings"] = _python_value(settings, refs=False)
    problems = [Finding(file, where, "keys must be strings") for where in _non_string_keys(document, ())]
    if problems:
        raise ValidationFailed(problems)
    document, problems = check_document(document, file)
    parsed: dict[Address, DesiredObject] = {}
    for plural, table in tables.items():
        for key, fields in _python_value(table, refs=True, top=True).items():
            if isinstance(fields, dict):
                address = address_of(BY_PLURAL[plural].name, key)
                parsed[address] = _parse_object(address, fields, file, problems, base)
    if problems:
        raise ValidationFailed(_in_path_order(problems))
    values = dict(document.get("settings", {}))
    if values.get("type_rules"):
        values["type_rules"] = str(Path(base) / values["type_rules"])
    values["ignore"] = tuple(values.get("ignore", ()))
    return _desired(parsed, Settings(**values), (file,), (BY_PLURAL[p].name for p in tables))


def _python_value(value: Any, *, refs: bool, top: bool = False, depth: int = 0) -> Any:
    """Return plain JSON-like data: mappings as dicts, tuples as lists; SecretRefs kept or spelled out.

    With `top`, the mapping is conn_id -> fields, and fields set to None are dropped. What
    nests deeper than the limit is cut (its container left empty), for check_document to report.
    """
    if isinstance(value, SecretRef):
        return value if refs else value.to_json()
    if depth > MAX_NESTING and isinstance(value, (Mapping, list, tuple)):
        return {} if isinstance(value, Mapping) else []
    if isinstance(value, Mapping):
        if top:
            return {
                k: {n: _python_value(v, refs=refs) for n, v in fields.items() if v is not None}
                if isinstance(fields, Mapping)
                else _python_value(fields, refs=refs)
                for k, fields in value.items()
            }
        return {k: _python_value(v, refs=refs, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_python_value(v, refs=refs, depth=depth + 1) for v in value]
    return value


def _non_string_keys(value: Any, path: tuple[str, ...]) -> Iterable[str]:
    """Yield the dotted path of every mapping key that is not a string (TOML has none)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                yield dotted_path([*path, repr(k)])
            else:
                yield from _non_string_keys(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_string_keys(v, (*path, str(i)))


def _parse_toml(file: Path, findings: list[Finding]) -> dict[str, Any] | None:
    """Parse one TOML file; on failure add a finding naming the file (and line and column)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        findings.append(Finding(file, "", f"cannot read: {exc.strerror}"))
        return None
    try:
        document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        return document
    except UnicodeDecodeError:
        findings.append(Finding(file, "", "not UTF-8 text"))
    except tomllib.TOMLDecodeError as exc:
        findings.append(Finding(file, "", f"invalid TOML: {exc}"))
    except RecursionError:
        findings.append(Finding(file, "", f"invalid TOML: a value {_TOO_DEEP}"))
    return None


def read_toml(file: Path) -> dict[str, Any]:
    """Parse one TOML file; a file that cannot be read or parsed is an error naming it (line, column)."""
    findings: list[Finding] = []
    document = _parse_toml(file, findings)
    if document is None:
        raise ValidationFailed(findings)
    return document


def _merge_settings(
    settings: Mapping[str, Any],
    file: Path,
    seen: dict[str, tuple[Any, Path]],
    findings: list[Any],
) -> None:
    """Merge one file's [settings]: `ignore` lists add up, other keys must agree across files."""
    for key, value in settings.items():
        if key == "ignore":
            previous = seen.get(key, ([], file))[0]
            seen[key] = ([*previous, *value], file)
        elif key in seen and seen[key][0] != value:
            message = f"conflicts with the value in {seen[key][1]}"
            findings.append(Finding(file, dotted_path(["settings", key]), message))
        else:
            seen[key] = (value, file)


def _settings(seen: Mapping[str, tuple[Any, Path]]) -> Settings:
    """Build Settings from merged values, relative paths resolved against their file."""
    values = {k: v for k, (v, _) in seen.items()}
    if "type_rules" in values:
        values["type_rules"] = str(seen["type_rules"][1].parent / values["type_rules"])
    if "ignore" in values:
        values["ignore"] = tuple(values["ignore"])
    return Settings(**values)


def _parse_object(
    address: Address, table: Mapping[str, Any], file: Path, findings: list[Any], base: str | None = None
) -> DesiredObject:
    """Turn one TOML table into a DesiredObject with SecretRefs (relative to `base`).

    An `extra_json` that cannot be used adds a finding and is left out, so the rest of the
    connection can still be checked.
    """
    base = str(file.parent) if base is None else base
    fields: dict[str, Any] = {}
    lifecycle: tuple[tuple[str | int, ...], ...] = ()
    for name, value in table.items():
        if name == "ignore_changes":
            lifecycle = tuple(parse_path(p) for p in value if isinstance(p, str))
        elif name == "extra_json":
            where = dotted_path(["connections", address.key, "extra_json"])
            extra, problem = _parse_extra_json(value)
            if problem:
                findings.append(Finding(file, where, problem))
            elif extra is not None:
                fields["extra"] = _parse_refs(extra, base)
        else:
            fields[name] = value if value.__class__ in JSON_SCALARS else _parse_refs(value, base)
    return DesiredObject(address, file, fields, ignore_changes=lifecycle)


def _parse_extra_json(text: Any) -> tuple[dict[str, Any] | None, str]:
    """Parse `extra_json`: a JSON object (null or empty: no extra); else (None, the problem)."""
    if not isinstance(text, str):
        return None, ""  # the schema reports it
    if not text.strip():
        return {}, ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except RecursionError:  # deeper than Python's own parser goes, so far deeper than the limit
        return None, _TOO_DEEP
    if value is None:
        return {}, ""
    if not isinstance(value, dict):
        return None, "must be a JSON object"
    if nesting_exceeds(value):
        return None, _TOO_DEEP
    return value, ""


#: One SecretRef per reference however many objects name it (they are immutable): a document
#: often takes many secrets from the same few variables or files.
_reference = lru_cache(maxsize=4096)(SecretRef)


def _parse_refs(value: Any, base: str) -> Any:
    """Replace every `{ from_... = ... }` table by a SecretRef, at any depth."""
    if isinstance(value, dict):
        if is_reference_table(value):
            key, target = next(iter(value.items()))
            if isinstance(target, (str, list)):
                return _reference(REF_KEYS[key], tuple(target) if isinstance(target, list) else target, base)
        parsed = {k: v if v.__class__ in JSON_SCALARS else _parse_refs(v, base) for k, v in value.items()}
        # A table with no reference inside is kept as it is (masked_tree copies it anyway).
        return value if all(parsed[k] is v for k, v in value.items()) else parsed
    if isinstance(value, list):
        items = [v if v.__class__ in JSON_SCALARS else _parse_refs(v, base) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
