"""Find the JSON Schemas, in an installed wheel or in a source checkout."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .errors import DconnError

_PACKAGE_DIR = Path(__file__).resolve().parent


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
