"""What run_compat.py declares to dconn and adds with Airflow's CLI, and how it compares them."""

from __future__ import annotations

import json
from typing import Any

TEAM = "analytics"
#: Values of the secret references in the declared document (test values, not real secrets).
SECRETS = {"COMPAT_PASSWORD": "p@ss wörd/:%?#&=", "COMPAT_API_KEY": "key-🚀-123"}
LONG_HOST = ("h" * 62 + ".") * 7 + "h" * 59  # exactly 500 characters: VARCHAR(500) full
FIELDS = ("conn_type", "description", "host", "schema", "login", "password", "port", "extra")
EXTRA_ALL_TYPES: dict[str, Any] = {
    "string": "text",
    "empty": "",
    "integer": 42,
    "negative": -7,
    "big": 9007199254740993,
    "float": 1.5,
    "exponent": 1e-07,
    "yes": True,
    "no": False,
    "array": [1, "two", 3.0, False, [], {}],
    "nested": {"deep": {"list": ["a", {"b": 1}]}},
    "empty_object": {},
    "unicode": "東京 🚀 Entrepôt",
    "api_key": SECRETS["COMPAT_API_KEY"],
    "token": "literal-token-value",
}


def declared_toml(team: bool) -> str:
    """Return the document dconn applies: every field, every JSON type, secrets by reference."""
    extra = json.dumps({k: v for k, v in EXTRA_ALL_TYPES.items() if k != "api_key"}, ensure_ascii=False)
    team_line = f'team_name = "{TEAM}"\n' if team else ""
    return f"""version = 1

[connections.compat_full]
conn_type = "postgres"
description = "Entrepôt — analytics ✓ 100% \\"quoted\\"\\nsecond line"
host = "db.example.internal"
schema = "analytics"
login = "etl_üser"
password = {{ from_env = "COMPAT_PASSWORD" }}
port = 5432
extra = {_toml_inline(json.loads(extra))[:-1]}, api_key = {{ from_env = "COMPAT_API_KEY" }} }}
{team_line}
[connections.compat_nulls]
conn_type = "http"
extra_json = '{{"nothing": null, "list": [null, 1, "x"], "obj": {{"inner": null}}}}'

[connections.compat_minimal]
conn_type = "dconn_custom_type"

[connections.compat_empty_extra]
conn_type = "http"
host = "empty.example"
extra = {{}}

[connections.compat_long]
conn_type = "http"
host = "{LONG_HOST}"
schema = "{"s" * 500}"
login = "{"l" * 3000}"

[connections."compat.odd-id:with/slash#(1)!\\\\back"]
conn_type = "generic"
host = "odd.example"
port = 1
"""


def _toml_inline(value: Any) -> str:
    """Render a JSON value as TOML inline syntax (tables, arrays, strings, numbers, booleans)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def expected_declared(team: bool = False) -> dict[str, dict[str, Any]]:
    """Return what Airflow must read back for every declared connection."""
    full: dict[str, Any] = {
        "conn_type": "postgres",
        "description": 'Entrepôt — analytics ✓ 100% "quoted"\nsecond line',
        "host": "db.example.internal",
        "schema": "analytics",
        "login": "etl_üser",
        "password": SECRETS["COMPAT_PASSWORD"],
        "port": 5432,
        "extra": EXTRA_ALL_TYPES,
    }
    if team:
        full["team_name"] = TEAM
    declared: dict[str, dict[str, Any]] = {
        "compat_full": full,
        "compat_nulls": {
            "conn_type": "http",
            "extra": {"nothing": None, "list": [None, 1, "x"], "obj": {"inner": None}},
        },
        "compat_minimal": {"conn_type": "dconn_custom_type"},
        "compat_empty_extra": {"conn_type": "http", "host": "empty.example"},
        "compat_long": {"conn_type": "http", "host": LONG_HOST, "schema": "s" * 500, "login": "l" * 3000},
        "compat.odd-id:with/slash#(1)!\\back": {"conn_type": "generic", "host": "odd.example", "port": 1},
    }
    if team:
        for conn_id, fields in declared.items():
            fields.setdefault("team_name", None if conn_id != "compat_full" else TEAM)
    return declared


def export_differences(expected: dict[str, dict[str, Any]], exported: dict[str, Any]) -> list[str]:
    """Compare `airflow connections export` JSON with what was declared, field by field.

    Unset, null and "" are one for string fields and {} is null for extra, as the contract says.
    """
    problems = []
    for conn_id, fields in expected.items():
        got = exported.get(conn_id)
        if got is None:
            problems.append(f'connection "{conn_id}" is missing from Airflow\'s export')
            continue
        for name in FIELDS:
            want, have = _norm(name, fields.get(name)), _norm(name, got.get(name))
            if want != have:
                shown = (
                    "(secret differs)" if name == "password" else f"declared {want!r}, Airflow read {have!r}"
                )
                problems.append(f'connection "{conn_id}" field {name}: {shown}')
    return problems


def _norm(name: str, value: Any) -> Any:
    """Put a field in the form the comparison uses."""
    if name == "extra":
        if isinstance(value, str):
            value = json.loads(value) if value else None
        return value or None
    if name == "port":
        return None if value in (None, "") else int(value)
    return value or None


AF_JSON_EXTRA = {
    "str": "x",
    "int": 1,
    "float": 2.5,
    "bool": True,
    "null": None,
    "list": [1, "a", None],
    "o": {"n": False},
}

#: Connections made with `airflow connections add`, by conn_id: its arguments.
ADDED: dict[str, list[str]] = {
    "af_json": [
        "--conn-json",
        json.dumps(
            {
                "conn_type": "af_custom_type",
                "description": "Ajouté par Airflow ✓",
                "host": "json.example",
                "schema": "db",
                "login": "af_user",
                "password": "af-p@ss wörd",
                "port": 6543,
                "extra": AF_JSON_EXTRA,
            },
            ensure_ascii=False,
        ),
    ],
    "af_uri": [
        "--conn-uri",
        "smtp://user%40corp:p%40ss%2Fw%3Ard@mail.example.com:587/relay"
        "?from_email=alerts%40example.com&timeout=30&ssl=false",
    ],
    "af_flags": [
        "--conn-type", "smtp",
        "--conn-host", "smtp.example.com",
        "--conn-login", "bot",
        "--conn-password", "flag-pass",
        "--conn-port", "25",
        "--conn-schema", "s",
        "--conn-description", "added with flags é",
        "--conn-extra", '{"from_email": "x@example.com", "n": [1, 2]}',
    ],
}  # fmt: skip


def added_toml(version: str) -> str:
    """Return the declarations that match what ADDED asked Airflow to store.

    Airflow 2 keeps a URI's query values as strings; Airflow 3 parses them as JSON values.
    """
    uri_extra = '{ from_email = "alerts@example.com", timeout = "30", ssl = "false" }'
    if not version.startswith("2."):
        uri_extra = '{ from_email = "alerts@example.com", timeout = 30, ssl = false }'
    return f"""
[connections.af_json]
conn_type = "af_custom_type"
description = "Ajouté par Airflow ✓"
host = "json.example"
schema = "db"
login = "af_user"
password = "af-p@ss wörd"
port = 6543
extra_json = '{json.dumps(AF_JSON_EXTRA)}'

[connections.af_uri]
conn_type = "smtp"
host = "mail.example.com"
schema = "relay"
login = "user@corp"
password = "p@ss/w:rd"
port = 587
extra = {uri_extra}

[connections.af_flags]
conn_type = "smtp"
description = "added with flags é"
host = "smtp.example.com"
schema = "s"
login = "bot"
password = "flag-pass"
port = 25
extra = {{ from_email = "x@example.com", n = [1, 2] }}
"""
