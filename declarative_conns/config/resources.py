"""Find dconn's JSON Schemas (in an installed wheel or a source checkout) and compile their fast gate."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from declarative_conns.errors import DconnError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def schemas_dir() -> Path:
    """Return the folder holding the schemas: inside the package when installed, else the repo's."""
    for candidate in (_PACKAGE_DIR / "schemas", _PACKAGE_DIR.parent / "schemas"):
        if (candidate / "connections.schema.json").is_file():
            return candidate
    raise DconnError("dconn's JSON Schemas are missing from the installation; reinstall dconn")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return one of dconn's JSON Schemas by file name."""
    path = schemas_dir() / name
    with path.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def validity_check(schema: Mapping[str, Any]) -> Callable[[Any], bool]:
    """Return a test of whether a value is valid against a draft 2020-12 schema.

    jsonschema-rs (compiled) answers first; it is stricter than jsonschema in a few corners
    (``\\w`` outside ASCII, NaN), so a value it refuses is judged again by jsonschema, the
    validator whose errors dconn reports.
    """
    import jsonschema_rs

    fast = jsonschema_rs.Draft202012Validator(dict(schema))
    slow: list[Any] = []

    def is_valid(value: Any) -> bool:
        try:
            if fast.is_valid(value):
                return True
        except (ValueError, TypeError, OverflowError):
            pass  # a value jsonschema-rs cannot take (a Python object JSON lacks): jsonschema decides
        if not slow:
            # Imported only here: a valid document never needs it (it costs ~40 ms to import).
            from jsonschema import Draft202012Validator

            slow.append(Draft202012Validator(schema))
        return bool(slow[0].is_valid(value))

    return is_valid


@cache
def schema_check(name: str) -> Callable[[Any], bool]:
    """Return the validity test of one of dconn's schemas, compiled once per process."""
    return validity_check(load_schema(name))
