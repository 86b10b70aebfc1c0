"""Validate layered desired state against the connections document's schema.

A layer may name only the fields it changes (`host` of a connection an earlier layer declared),
so each file is checked against the document schema without its objects' `required` fields;
the merged document is then checked against the whole schema, each problem naming the file
that declared what it is about. Messages are the connections document's own (config.schema).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from declarative_conns.config.resources import load_schema, schema_check, validity_check
from declarative_conns.config.schema import _describe

_SCHEMA = "connections.schema.json"


def layer_problems(document: Mapping[str, Any], file: Path) -> list[Any]:
    """Return the schema problems of one layer file, whose objects may be partial."""
    if _partial_check()(document):
        return []
    return _problems(_partial_validator(), document, lambda _path: file)


def merged_problems(document: Mapping[str, Any], file_of: Callable[[tuple[str, ...]], Path]) -> list[Any]:
    """Return the schema problems of the layered document; `file_of(path)` names each one's file."""
    if schema_check(_SCHEMA)(document):
        return []
    return _problems(_full_validator(), document, file_of)


def _problems(
    validator: Any, document: Mapping[str, Any], file_of: Callable[[tuple[str, ...]], Path]
) -> list[Any]:
    """Describe every error of a document, each with the file its path came from."""
    problems: list[Any] = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(str(p) for p in error.absolute_path)
        problems.extend(_describe(error, file_of(path)))
    return problems


def partial_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the document schema with no object's fields required (every other rule kept).

    The `required` of each definition's own object (a connection, variable or pool) goes;
    those nested in conditions (what makes a table a secret reference, extra vs extra_json)
    stay, since they say what a value is rather than what an object must name.
    """
    partial = copy.deepcopy(dict(schema))
    for definition in partial.get("$defs", {}).values():
        if isinstance(definition, dict):
            definition.pop("required", None)
    for table in partial.get("properties", {}).values():
        objects = table.get("additionalProperties") if isinstance(table, dict) else None
        if isinstance(objects, dict):
            objects.pop("required", None)
    return partial


@cache
def _partial_check() -> Callable[[Any], bool]:
    """Compile the fast validity test of the partial schema once per process."""
    return validity_check(partial_schema(load_schema(_SCHEMA)))


@cache
def _partial_validator() -> Any:
    """Compile the partial schema's jsonschema validator (for messages) once per process."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(partial_schema(load_schema(_SCHEMA)))


@cache
def _full_validator() -> Any:
    """Compile the whole schema's jsonschema validator (for messages) once per process."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(_SCHEMA))
