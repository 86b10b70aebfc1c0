"""Load the desired state: TOML files -> validated, with secret references kept as references."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from declarative_conns.config.schema import validate_document
from declarative_conns.config.secrets import Resolver, references, resolve_desired
from declarative_conns.core.diff import is_ignored
from declarative_conns.core.model import (
    FIELDS,
    SecretRef,
    Settings,
    TableInfo,
)
from declarative_conns.errors import InputError, ValidationFailed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DesiredConnection",
    "DesiredState",
    "Resolver",  # resolution lives with the resolvers (secrets.py); importable from here as before
    "check_against_table",
    "config_files",
    "desired_from_dicts",
    "load_desired",
    "references",
    "resolve_desired",
]

_REF_KEYS = {"from_env": "env", "from_file": "file", "from_command": "command"}


@dataclass(frozen=True, repr=False)
class DesiredConnection:
    """Hold one declared connection as written, with references parsed, not resolved."""

    conn_id: str
    source: Path
    #: Declared fields; `extra` is a dict (from `extra` or `extra_json`); refs are SecretRefs.
    fields: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"DesiredConnection({self.conn_id!r}, source={str(self.source)!r})"


@dataclass(frozen=True)
class DesiredState:
    """Hold every declared connection and the merged settings of the loaded files."""

    connections: Mapping[str, DesiredConnection]
    settings: Settings
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = field(default=())


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
    connections: dict[str, DesiredConnection] = {}
    settings_seen: dict[str, tuple[Any, Path]] = {}
    for file in files:
        document = _parse_toml(file)
        file_problems = validate_document(document, file)
        problems.extend(file_problems)
        if file_problems:
            continue
        _merge_settings(document.get("settings", {}), file, settings_seen, problems)
        for conn_id, table in document.get("connections", {}).items():
            if conn_id in connections:
                first = connections[conn_id].source
                problems.append(
                    f'{file}: connections.{conn_id}: conn_id "{conn_id}" is also declared in {first}'
                )
                continue
            parsed = _parse_connection(conn_id, table, file, problems)
            if parsed is not None:
                connections[conn_id] = parsed
    if problems:
        raise ValidationFailed(problems)
    settings = _settings(settings_seen)
    warnings = tuple(
        f'connection "{c}" matches an ignore pattern but is declared, so dconn manages it'
        for c in sorted(connections)
        if is_ignored(c, settings.ignore)
    )
    return DesiredState(connections, settings, tuple(files), warnings)


def desired_from_dicts(
    connections: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    source: str = "<python>",
    *,
    base_dir: Path | str | None = None,
) -> DesiredState:
    """Build a validated desired state from Python mappings, as if they were one TOML document.

    Same schema, rules and messages as a TOML file, `source` standing for the file name. A
    reference is a `SecretRef` or a `{"from_env": ...}`-style dict; relative `from_file`
    paths and `from_command`s resolve in `base_dir` (default: the current directory). A
    top-level field set to None is not declared. Raise ValidationFailed listing every problem.
    """
    file = Path(source)
    base = str(Path(base_dir) if base_dir is not None else Path.cwd())
    document: dict[str, Any] = {"connections": _python_value(connections, refs=False, top=True)}
    if settings is not None:
        document["settings"] = _python_value(settings, refs=False)
    problems = [f"{file}: {where}: keys must be strings" for where in _non_string_keys(document, ())]
    problems = problems or validate_document(document, file)
    if problems:
        raise ValidationFailed(problems)
    parsed: dict[str, DesiredConnection] = {}
    for conn_id, table in _python_value(connections, refs=True, top=True).items():
        conn = _parse_connection(conn_id, table, file, problems, base)
        if conn is not None:
            parsed[conn_id] = conn
    if problems:
        raise ValidationFailed(problems)
    values = dict(document.get("settings", {}))
    if values.get("type_rules"):
        values["type_rules"] = str(Path(base) / values["type_rules"])
    values["ignore"] = tuple(values.get("ignore", ()))
    merged = Settings(**values)
    warnings = tuple(
        f'connection "{c}" matches an ignore pattern but is declared, so dconn manages it'
        for c in sorted(parsed)
        if is_ignored(c, merged.ignore)
    )
    return DesiredState(parsed, merged, (file,), warnings)


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


def _parse_connection(
    conn_id: str, table: Mapping[str, Any], file: Path, problems: list[str], base: str | None = None
) -> DesiredConnection | None:
    """Turn one validated TOML table into a DesiredConnection with SecretRefs (relative to `base`)."""
    base = str(file.parent) if base is None else base
    fields: dict[str, Any] = {}
    for name, value in table.items():
        if name == "extra_json":
            extra = _parse_extra_json(value, f"{file}: connections.{conn_id}.extra_json", problems)
            if extra is None:
                return None
            fields["extra"] = _parse_refs(extra, base)
        else:
            fields[name] = _parse_refs(value, base)
    return DesiredConnection(conn_id, file, fields)


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


def check_against_table(desired: DesiredState, table: TableInfo) -> None:
    """Refuse fields the target's connection table has no column for (e.g. description on 1.10)."""
    lacking = {name for name in FIELDS if not table.manages(name)}
    if not lacking or not any(lacking & conn.fields.keys() for conn in desired.connections.values()):
        return  # the common case, decided without a loop over every field of every connection
    problems = []
    for conn_id, conn in sorted(desired.connections.items()):
        for name in conn.fields:
            if name in FIELDS and not table.manages(name):
                problems.append(
                    f"{conn.source}: connections.{conn_id}.{name}: the target's connection table "
                    f"(Airflow {table.shape}) has no {name} column"
                )
    if problems:
        raise ValidationFailed(problems)
