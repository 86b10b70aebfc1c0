"""Load an environment's desired state from its layers: base files first, overlays after.

Each layer is a file or folder as -c/--config takes. Within one layer a key declared twice is an
error naming both files, as for a plain -c folder. Across layers a later one overrides the
fields it names of a key an earlier layer declared; `extra` (and a variable's table `value`)
merge key by key, recursively; `[settings]` merge key by key, later wins, `ignore` lists add up.

`${vars.NAME}` is filled in every string value of a layer (at any depth: extra, arrays, secret
references' arguments, settings) before anything else, so each file is checked with its values
in place. Keys are never filled in: they say which object or field a layer is about, and must
read the same in every environment for overrides and `exclude` to mean anything.

The merged document then goes through the same schema and parsing as one TOML file, and every
connection records which file each of its fields came from (DesiredConnection.origins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from declarative_conns.config.findings import Finding, dotted_path
from declarative_conns.config.interpolate import (
    InterpolationError,
    VarValue,
    has_template,
    interpolate,
    whole_var,
)
from declarative_conns.config.layer_schema import layer_problems, merged_problems
from declarative_conns.config.loader import (
    DesiredObject,
    DesiredState,
    _merge_settings,
    _parse_object,
    _parse_refs,
    _python_value,
    _settings,
    config_files,
    declared_but_ignored,
    ordered_kinds,
    read_toml,
)
from declarative_conns.core.kinds import BY_PLURAL
from declarative_conns.core.model import Address
from declarative_conns.errors import InputError, ProjectError, ValidationFailed

if TYPE_CHECKING:
    from declarative_conns.config.project import Environment

#: Fields whose tables merge key by key across layers, by kind; every other field is replaced.
MERGED_FIELDS: Mapping[str, frozenset[str]] = {
    "connections": frozenset({"extra"}),
    "variables": frozenset({"value"}),
}
#: Top-level keys that are not a kind of object (`[KIND.KEY]`).
_DOCUMENT_KEYS = ("settings", "version")
_KEY_WORDS = {kind.plural: kind.key_label for kind in BY_PLURAL.values()}

FieldPath = tuple[str, ...]


@dataclass
class _Declared:
    """One object while layers merge: its fields, the file that first declared it, field origins."""

    fields: dict[str, Any]
    declared_in: Path
    origins: dict[FieldPath, Path] = field(default_factory=dict)


@dataclass
class _Layer:
    """One layer's files combined: objects by kind and key, settings as (value, file)."""

    objects: dict[str, dict[str, _Declared]] = field(default_factory=dict)
    settings: dict[str, tuple[Any, Path]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def load_environment(env: Environment) -> DesiredState:
    """Load one environment's desired state from its layers, vars and exclude patterns."""
    return load_layers(
        env.layers,
        env.vars,
        env.exclude,
        label=f'environment "{env.name}"',
        skip=env.project,
    )


def load_layers(
    layers: Sequence[Path | str],
    variables: Mapping[str, VarValue] | None = None,
    exclude: Sequence[str] = (),
    *,
    label: str = "",
    skip: Path | None = None,
) -> DesiredState:
    """Read, fill in, validate and merge layers in order; drop excluded keys; report every problem.

    `label` names the environment in messages; `skip` is a file never read as a layer even when
    a folder layer holds it (the project's own dconn.toml). Raise ProjectError for a layer that
    does not exist, InputError for bad TOML, ValidationFailed listing every problem.
    """
    where = f"{label}: " if label else ""
    paths = [Path(layer) for layer in layers]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        what = f"layer {missing[0]} does" if len(missing) == 1 else f"layers {', '.join(missing)} do"
        raise ProjectError(f"{where}{what} not exist")
    problems: list[Any] = []
    merged = _Layer()
    for path in paths:
        layer = _read_layer(_layer_files(path, skip, where), variables or {}, label, problems)
        _merge_layer(merged, layer)
    if problems:
        raise ValidationFailed(problems)
    warnings = [f"{where}{w}" for w in _exclude(merged.objects, exclude)]
    desired = _parse(merged)
    return replace(desired, warnings=(*warnings, *desired.warnings))


def origin_of(conn: DesiredObject, path: Sequence[str]) -> Path:
    """Return the file that gave a connection's field (`("extra", "region")`) its value."""
    return _nearest(conn.origins, path) or conn.source


def _nearest(origins: Mapping[FieldPath, Path], path: Sequence[str]) -> Path | None:
    """Return the origin recorded at a path or the nearest path above it."""
    for end in range(len(path), 0, -1):
        found = origins.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


def _layer_files(path: Path, skip: Path | None, where: str) -> list[Path]:
    """Return the files of one layer, without the project file; an empty folder is an error."""
    try:
        listed = config_files(path)
    except InputError as exc:
        raise ProjectError(f"{where}layer {exc}") from None
    files = [f for f in listed if skip is None or f.absolute() != skip.absolute()]
    if not files:
        raise ProjectError(f"{where}layer {path}: the folder holds no *.toml files besides {skip}")
    return files


def _read_layer(
    files: list[Path], variables: Mapping[str, VarValue], label: str, problems: list[Any]
) -> _Layer:
    """Read one layer's files: fill in vars, check each file, refuse a key declared twice."""
    layer = _Layer(files=files)
    for file in files:
        before = len(problems)
        raw = read_toml(file)
        document = _fill(raw, (), file, variables, label, problems)
        if len(problems) > before:
            continue  # an unfilled template would only be reported again, as a wrong type
        file_problems = _naming_vars(layer_problems(document, file), raw, label)
        problems.extend(file_problems)
        if file_problems:
            continue
        _merge_settings(document.get("settings", {}), file, layer.settings, problems)
        for kind, table in document.items():
            if kind in _DOCUMENT_KEYS:
                continue
            objects = layer.objects.setdefault(kind, {})
            for key, fields in table.items():
                if key in objects:
                    first = objects[key].declared_in
                    what = f'{_KEY_WORDS.get(kind, "key")} "{key}"'
                    problems.append(f"{file}: {kind}.{key}: {what} is also declared in {first}")
                    continue
                parsed = _parse_refs(fields, str(file.parent))
                objects[key] = _Declared(parsed, file, {(name,): file for name in parsed})
    return layer


def _naming_vars(problems: list[Any], raw: Mapping[str, Any], label: str) -> list[Any]:
    """Say which var gave a faulty value written as exactly `"${vars.NAME}"` (a string for `port`)."""
    whole = dict(_whole_vars(raw, ()))
    if not whole:
        return problems
    where = f" of {label}" if label else ""
    return [
        replace(p, message=f"{p.message} (the value of ${{vars.{whole[p.path]}}}{where})")
        if isinstance(p, Finding) and p.path in whole
        else p
        for p in problems
    ]


def _whole_vars(value: Any, path: tuple[str | int, ...]) -> Iterable[tuple[str, str]]:
    """Yield (dotted path, var name) of every string that is exactly one `${vars.NAME}`."""
    if isinstance(value, str):
        name = whole_var(value)
        if name is not None:
            yield dotted_path(path), name
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _whole_vars(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _whole_vars(item, (*path, index))


def _fill(
    value: Any,
    path: tuple[str | int, ...],
    file: Path,
    variables: Mapping[str, VarValue],
    label: str,
    problems: list[Any],
) -> Any:
    """Return a TOML value with `${vars.NAME}` filled in every string; report what cannot be."""
    if isinstance(value, str):
        try:
            return interpolate(value, variables, label)
        except InterpolationError as exc:
            problems.append(f"{file}: {_dotted(path)}: {exc}")
            return value
    if isinstance(value, dict):
        for key in value:
            if has_template(key):
                problems.append(
                    f"{file}: {_dotted((*path, key))}: keys are not filled in; ${{vars.NAME}} works in values only"
                )
        return {k: _fill(v, (*path, k), file, variables, label, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, (*path, i), file, variables, label, problems) for i, v in enumerate(value)]
    return value


def _dotted(path: tuple[str | int, ...]) -> str:
    """Return a document path as messages spell it."""
    return ".".join(map(str, path)) or "(document)"


def _merge_layer(merged: _Layer, layer: _Layer) -> None:
    """Lay one layer over the layers before it."""
    merged.files.extend(layer.files)
    for key, (value, file) in layer.settings.items():
        earlier = merged.settings[key][0] if key == "ignore" and key in merged.settings else []
        merged.settings[key] = ([*earlier, *value] if earlier else value, file)
    for kind, objects in layer.objects.items():
        target = merged.objects.setdefault(kind, {})
        for key, declared in objects.items():
            if key in target:
                _override(kind, target[key], declared)
            else:
                target[key] = declared


def _override(kind: str, base: _Declared, over: _Declared) -> None:
    """Replace the fields a later layer names; merge the mergeable ones key by key."""
    mergeable = MERGED_FIELDS.get(kind, frozenset())
    for name, value in over.fields.items():
        # extra and extra_json are one field in two spellings: naming one drops the other.
        other = {"extra": "extra_json", "extra_json": "extra"}.get(name) if kind == "connections" else None
        if other is not None and other not in over.fields and other in base.fields:
            del base.fields[other]
            _forget(base.origins, (other,))
        if name in mergeable and isinstance(base.fields.get(name), dict) and isinstance(value, dict):
            _merge_tables(base.fields[name], value, (name,), over.declared_in, base.origins)
        else:
            base.fields[name] = value
            _forget(base.origins, (name,))
            base.origins[(name,)] = over.declared_in


def _merge_tables(
    base: dict[str, Any], over: Mapping[str, Any], path: FieldPath, file: Path, origins: dict[FieldPath, Path]
) -> None:
    """Merge one table into another key by key, recursively; record where each new value came from."""
    for key, value in over.items():
        here = (*path, key)
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge_tables(base[key], value, here, file, origins)
        else:
            base[key] = value
            _forget(origins, here)
            origins[here] = file


def _forget(origins: dict[FieldPath, Path], path: FieldPath) -> None:
    """Drop the recorded origins at and below a path whose value is replaced."""
    for recorded in [p for p in origins if p[: len(path)] == path]:
        del origins[recorded]


def _exclude(objects: dict[str, dict[str, _Declared]], patterns: Sequence[str]) -> list[str]:
    """Drop every key (of any kind) matching an exclude pattern; warn of patterns matching none."""
    warnings = []
    for pattern in patterns:
        matched = False
        for table in objects.values():
            for key in [k for k in table if fnmatchcase(k, pattern)]:
                del table[key]
                matched = True
        if not matched:
            warnings.append(f'exclude pattern "{pattern}" matches no key of the layers')
    return warnings


def _parse(merged: _Layer) -> DesiredState:
    """Check the merged document against the whole schema and parse it as one TOML file."""
    problems: list[Any] = []
    document: dict[str, Any] = {
        kind: {key: _python_value(d.fields, refs=False) for key, d in table.items()}
        for kind, table in merged.objects.items()
    }
    if merged.settings:
        document["settings"] = {key: value for key, (value, _) in merged.settings.items()}

    def file_of(path: tuple[str, ...]) -> Path:
        if len(path) >= 2 and path[0] in merged.objects and path[1] in merged.objects[path[0]]:
            declared = merged.objects[path[0]][path[1]]
            return _nearest(declared.origins, path[2:]) or declared.declared_in
        return (
            merged.settings[path[1]][1] if path[:1] == ("settings",) and len(path) > 1 else merged.files[-1]
        )

    problems.extend(merged_problems(document, file_of))
    if problems:
        raise ValidationFailed(problems)
    objects: dict[Address, DesiredObject] = {}
    for plural, table in merged.objects.items():
        for key, declared in table.items():
            parsed = _parse_declared(Address(BY_PLURAL[plural].name, key), declared, problems)
            if parsed is not None:
                objects[parsed.address] = parsed
    if problems:
        raise ValidationFailed(problems)
    settings = _settings(merged.settings)
    kinds = ordered_kinds(BY_PLURAL[plural].name for plural in merged.objects)
    return DesiredState(
        objects, settings, tuple(merged.files), declared_but_ignored(objects, settings), kinds
    )


def _parse_declared(address: Address, declared: _Declared, problems: list[Any]) -> DesiredObject | None:
    """Parse one merged object with the loader's own rules; keep where each field came from."""
    # Only extra_json's references are still text to parse: relative to the file that wrote it.
    text_from = declared.origins.get(("extra_json",), declared.declared_in)
    parsed = _parse_object(address, declared.fields, text_from, problems, str(text_from.parent))
    if parsed is None:
        return None
    origins = {(("extra", *p[1:]) if p[0] == "extra_json" else p): f for p, f in declared.origins.items()}
    return replace(parsed, source=declared.declared_in, origins=origins)
