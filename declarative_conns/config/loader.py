"""Load the desired state: TOML files -> validated objects of each kind, secret references kept as references.

A document's `[connections]`, `[variables]` and `[pools]` tables each make their kind managed
(an empty table too); a document without `[variables]` never touches variables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from declarative_conns.config.schema import validate_document
from declarative_conns.core.kinds import BY_NAME, KINDS
from declarative_conns.core.model import JSON_SCALARS, Address, SecretRef, Settings, Values
from declarative_conns.core.planner import is_ignored
from declarative_conns.errors import InputError, SecretError, ValidationFailed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_REF_KEYS = {"from_env": "env", "from_file": "file", "from_command": "command"}


@dataclass(frozen=True, repr=False)
class DesiredObject:
    """Hold one declared object as written, with references parsed, not resolved."""

    address: Address
    source: Path
    #: Declared fields; a connection's `extra` is a dict (from `extra` or `extra_json`); refs are SecretRefs.
    fields: Mapping[str, Any]
    #: Where each field came from when layers were merged: field path -> file; a path absent
    #: here (and every path of an object read from one file) came from `source`.
    origins: Mapping[tuple[str, ...], Path] = field(default_factory=dict)

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
    files = config_files(path)
    problems: list[str] = []
    objects: dict[Address, DesiredObject] = {}
    kinds: set[str] = set()
    settings_seen: dict[str, tuple[Any, Path]] = {}
    for file in files:
        document = _parse_toml(file)
        file_problems = validate_document(document, file)
        problems.extend(file_problems)
        if file_problems:
            continue
        _merge_settings(document.get("settings", {}), file, settings_seen, problems)
        for kind in KINDS:
            if kind.plural not in document:
                continue
            kinds.add(kind.name)
            for key, table in document[kind.plural].items():
                address = Address(kind.name, key)
                if address in objects:
                    first = objects[address].source
                    problems.append(
                        f'{file}: {kind.plural}.{key}: {kind.key_label} "{key}" is also declared in {first}'
                    )
                    continue
                parsed = _parse_object(address, table, file, problems)
                if parsed is not None:
                    objects[address] = parsed
    if problems:
        raise ValidationFailed(problems)
    settings = _settings(settings_seen)
    return DesiredState(
        objects, settings, tuple(files), declared_but_ignored(objects, settings), _ordered(kinds)
    )


def _ordered(kinds: Iterable[str]) -> tuple[str, ...]:
    """Return the kinds a document manages, in plan order (connections, variables, pools).

    A document with none of the three tables manages connections, as every document did before
    variables and pools (an empty file with `prune = true` still deletes every connection).
    """
    present = set(kinds)
    return tuple(k.name for k in KINDS if k.name in present) or ("connection",)


def declared_but_ignored(objects: Mapping[Address, DesiredObject], settings: Settings) -> tuple[str, ...]:
    """Warn about declared objects that match an ignore pattern (they are managed all the same)."""
    return tuple(
        f"{address} matches an ignore pattern but is declared, so dconn manages it"
        for address in sorted(objects)
        if is_ignored(address.key, settings.ignore)
    )


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
    tables = {"connections": connections, "variables": variables, "pools": pools}
    document: dict[str, Any] = {
        name: _python_value(table, refs=False, top=True)
        for name, table in tables.items()
        if table is not None
    }
    if settings is not None:
        document["settings"] = _python_value(settings, refs=False)
    problems = [f"{file}: {where}: keys must be strings" for where in _non_string_keys(document, ())]
    problems = problems or validate_document(document, file)
    if problems:
        raise ValidationFailed(problems)
    parsed: dict[Address, DesiredObject] = {}
    for kind in KINDS:
        table = tables[kind.plural]
        if table is None:
            continue
        for key, fields in _python_value(table, refs=True, top=True).items():
            address = Address(kind.name, key)
            obj = _parse_object(address, fields, file, problems, base)
            if obj is not None:
                parsed[address] = obj
    if problems:
        raise ValidationFailed(problems)
    values = dict(document.get("settings", {}))
    if values.get("type_rules"):
        values["type_rules"] = str(Path(base) / values["type_rules"])
    values["ignore"] = tuple(values.get("ignore", ()))
    merged = Settings(**values)
    kinds = _ordered(k.name for k in KINDS if tables[k.plural] is not None)
    return DesiredState(parsed, merged, (file,), declared_but_ignored(parsed, merged), kinds)


def _python_value(value: Any, *, refs: bool, top: bool = False) -> Any:
    """Return plain JSON-like data: mappings as dicts, tuples as lists; SecretRefs kept or spelled out.

    With `top`, the mapping is conn_id -> fields, and fields set to None are dropped.
    """
    if isinstance(value, SecretRef):
        return value if refs else value.to_json()
    if isinstance(value, Mapping):
        if top:
            return {
                k: {n: _python_value(v, refs=refs) for n, v in fields.items() if v is not None}
                if isinstance(fields, Mapping)
                else _python_value(fields, refs=refs)
                for k, fields in value.items()
            }
        return {k: _python_value(v, refs=refs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_python_value(v, refs=refs) for v in value]
    return value


def _non_string_keys(value: Any, path: tuple[str, ...]) -> Iterable[str]:
    """Yield the dotted path of every mapping key that is not a string (TOML has none)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                yield ".".join((*path, repr(k)))
            else:
                yield from _non_string_keys(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_string_keys(v, (*path, str(i)))


def _parse_toml(file: Path) -> dict[str, Any]:
    """Parse one TOML file; a syntax error names the file, line and column."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        return document
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{file}: invalid TOML: {exc}") from None


def _merge_settings(
    settings: Mapping[str, Any],
    file: Path,
    seen: dict[str, tuple[Any, Path]],
    problems: list[str],
) -> None:
    """Merge one file's [settings]: `ignore` lists add up, other keys must agree across files."""
    for key, value in settings.items():
        if key == "ignore":
            previous = seen.get(key, ([], file))[0]
            seen[key] = ([*previous, *value], file)
        elif key in seen and seen[key][0] != value:
            problems.append(f"{file}: settings.{key}: conflicts with the value in {seen[key][1]}")
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
    address: Address, table: Mapping[str, Any], file: Path, problems: list[str], base: str | None = None
) -> DesiredObject | None:
    """Turn one validated TOML table into a DesiredObject with SecretRefs (relative to `base`)."""
    base = str(file.parent) if base is None else base
    fields: dict[str, Any] = {}
    for name, value in table.items():
        if name == "extra_json":
            where = f"{file}: connections.{address.key}.extra_json"
            extra = _parse_extra_json(value, where, problems)
            if extra is None:
                return None
            fields["extra"] = _parse_refs(extra, base)
        else:
            fields[name] = _parse_refs(value, base)
    return DesiredObject(address, file, fields)


def _parse_extra_json(text: str, where: str, problems: list[str]) -> dict[str, Any] | None:
    """Parse `extra_json`; it must be a JSON object (or null/empty, meaning no extra)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
        return None
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a JSON object")
        return None
    return value


def _parse_refs(value: Any, base: str) -> Any:
    """Replace every `{ from_... = ... }` table by a SecretRef, at any depth."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _REF_KEYS:
            key, target = next(iter(value.items()))
            if isinstance(target, (str, list)):
                return SecretRef(_REF_KEYS[key], tuple(target) if isinstance(target, list) else target, base)  # type: ignore[arg-type]
        return {k: _parse_refs(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_parse_refs(v, base) for v in value]
    return value


def references(desired: DesiredState) -> Iterable[tuple[Address, tuple[str | int, ...], SecretRef]]:
    """Yield (address, field path, reference) for every secret reference declared."""
    for address, obj in sorted(desired.objects.items()):
        yield from ((address, path, ref) for path, ref in _walk_refs(obj.fields, ()))


def _walk_refs(value: Any, path: tuple[str | int, ...]) -> Iterable[tuple[tuple[str | int, ...], SecretRef]]:
    """Yield (path, ref) pairs inside a value."""
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_refs(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_refs(v, (*path, i))


Resolver = Callable[[SecretRef], str]


def resolve_desired(desired: DesiredState, resolver: Resolver) -> dict[Address, Values]:
    """Resolve every reference (once each) and normalize; report every failing reference."""
    cache: dict[SecretRef, str] = {}
    problems: list[str] = []
    resolved: dict[Address, Values] = {}
    for address, obj in sorted(desired.objects.items()):
        kind = BY_NAME[address.kind]
        secret_paths: set[tuple[str | int, ...]] = set(kind.key_secret_paths(address.key))
        fields = {
            name: value
            if value.__class__ in JSON_SCALARS
            else _resolve_value(value, (name,), address, resolver, cache, secret_paths, problems)
            for name, value in obj.fields.items()
        }
        resolved[address] = Values(kind.normalize(fields), frozenset(secret_paths))
    if problems:
        raise SecretError(
            "could not resolve "
            + (
                "; ".join(problems)
                if len(problems) < 4
                else "; ".join(problems[:3]) + f"; and {len(problems) - 3} more"
            )
        )
    return resolved


def _resolve_value(
    value: Any,
    path: tuple[str | int, ...],
    address: Address,
    resolver: Resolver,
    cache: dict[SecretRef, str],
    secret_paths: set[tuple[str | int, ...]],
    problems: list[str],
) -> Any:
    """Return a value with its references replaced by what they point at."""
    if isinstance(value, SecretRef):
        secret_paths.add(path)
        if value not in cache:
            try:
                cache[value] = resolver(value)
            except SecretError as exc:
                where = ".".join(map(str, path))
                problems.append(f"{address} field {where}: {exc}")
                return None
        return cache[value]
    if isinstance(value, dict):
        return {
            k: _resolve_value(v, (*path, k), address, resolver, cache, secret_paths, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve_value(v, (*path, i), address, resolver, cache, secret_paths, problems)
            for i, v in enumerate(value)
        ]
    return value
