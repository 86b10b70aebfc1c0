"""Read the JSON files of ``airflow variables export`` and ``airflow pools export`` into specs.

What Airflow writes and reads back (``cli/commands/variable_command.py``, ``pool_command.py``,
2.11 and 3.3), and this module repeats:

- variables: one JSON object, key -> value. Export decodes each stored text as JSON and writes
  the decoded value unless it is a string (then the stored text, as it is); Airflow 3 writes
  ``{"value": ..., "description": ...}`` for a variable with a description. Import reads an
  object holding ``value`` as that pair, stores a string as it is and anything else as its JSON
  text (``Variable.set(serialize_json=True)``: ``json.dumps(value, indent=2)``).
- pools: one JSON object, name -> ``{"slots", "description", "include_deferred"}`` (and
  ``team_name`` on 3.2+); import refuses an entry without ``slots`` and ``description``.

The specs hold what Airflow's import would store: a variable's value as its stored text. Errors
name the file and the key, never a value (a variable may hold a secret).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from declarative_conns.errors import InputError
from declarative_conns.onboarding.airflow_files import _load_json, _raise_problems, _read_text
from declarative_conns.onboarding.toml_writer import PoolSpec, VariableSpec

_KEY_LIMIT = {"variable": 250, "pool": 256}


def looks_like_pools(path: Path) -> bool:
    """Tell whether a .json file is an `airflow pools export` file: every entry has slots and description."""
    if path.suffix.lower() != ".json":
        return False
    try:
        loaded = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False  # the connection parser reports it
    return (
        isinstance(loaded, dict)
        and bool(loaded)
        and all(isinstance(v, dict) and "slots" in v and "description" in v for v in loaded.values())
    )


def parse_variables_file(path: Path) -> list[VariableSpec]:
    """Return the variables of an `airflow variables export` JSON file, as Airflow's import stores them."""
    specs: list[VariableSpec] = []
    problems: list[str] = []
    for key, entry in _entries(path).items():
        problem = _key_problem(key, "variable")
        if problem:
            problems.append(problem)
            continue
        value, description = entry, None
        if isinstance(entry, dict) and "value" in entry:
            value, description = entry["value"], entry.get("description")
        if description is not None and not isinstance(description, str):
            problems.append(f"variable {key!r}: its description must be a string")
            continue
        text = value if isinstance(value, str) else json.dumps(value, indent=2)
        specs.append({"key": key, "value": text, "description": description})
    _raise_problems(str(path), problems)
    return specs


def parse_pools_file(path: Path) -> list[PoolSpec]:
    """Return the pools of an `airflow pools export` JSON file, as Airflow's import stores them."""
    specs: list[PoolSpec] = []
    problems: list[str] = []
    for name, entry in _entries(path).items():
        problem = _key_problem(name, "pool") or _pool_problem(entry)
        if problem:
            problems.append(problem if problem.startswith("pool ") else f"pool {name!r}: {problem}")
            continue
        specs.append(
            {
                "name": name,
                "slots": entry["slots"],
                "description": entry["description"],
                "include_deferred": bool(entry.get("include_deferred", False)),
                "team_name": entry.get("team_name"),
            }
        )
    _raise_problems(str(path), problems)
    return specs


def _entries(path: Path) -> Mapping[str, Any]:
    """Return the top-level object of a JSON export file."""
    if path.suffix.lower() != ".json":
        raise InputError(f"{path}: Airflow exports variables and pools as .json files")
    loaded = _load_json(path, _read_text(path))
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a JSON object of keys, as Airflow's export writes")
    return loaded


def _key_problem(key: str, kind: str) -> str | None:
    """Say why a key cannot be declared, or return None."""
    if not key or not key.isprintable() or len(key) > _KEY_LIMIT[kind]:
        shown = key[:40] + "..." if len(key) > 40 else key
        return f"{kind} {shown!r}: a key must be 1 to {_KEY_LIMIT[kind]} printable characters"
    return None


def _pool_problem(entry: Any) -> str | None:
    """Say why a pool entry is not what Airflow's import accepts, or return None."""
    if not isinstance(entry, dict) or "slots" not in entry or "description" not in entry:
        return "needs slots and description, as Airflow's pools import does"
    slots = entry["slots"]
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < -1:
        return "slots must be an integer of at least -1"
    if entry["description"] is not None and not isinstance(entry["description"], str):
        return "its description must be a string"
    if not isinstance(entry.get("include_deferred", False), bool):
        return "include_deferred must be true or false"
    team = entry.get("team_name")
    if team is not None and not (isinstance(team, str) and 1 <= len(team) <= 50):
        return "team_name must be a string of 1 to 50 characters"
    return None
