"""The benchmark's connections: N realistic Airflow connections, as TOML and as plain rows.

Both sides of the comparison use these same values: `run.py` writes them as dconn TOML
documents, `raw_limit.py` encrypts and stores them directly. Stdlib only, so importing this
module costs the raw process nothing measurable.

Variables (`--kind variables`): every third a string with a description, a JSON table, or a
value under a key named like a secret; "changed" alters every value.

A connection is one of four kinds (i mod 4): postgres with a literal password, mysql with a
password from an environment variable, http with a literal token, postgres from an env var.
Each has host, schema, login, password, port and an extra of three keys. The "changed"
variant (every row changed) alters host, password and one extra value of every connection.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

#: Passwords from the environment are shared by many connections, as teams share service
#: accounts; the set stays small so the environment of the benchmarked process stays small.
ENV_SECRETS = 16


def env_name(i: int) -> str:
    """Return the name of the environment variable connection i reads its password from."""
    return f"DCONN_BENCH_PW_{i % ENV_SECRETS:02d}"


def env_secrets(changed: bool) -> dict[str, str]:
    """Return the environment the benchmarked processes need for the from_env passwords."""
    mark = "v2" if changed else "v1"
    return {env_name(i): f"env-secret-{i:02d}-{mark}" for i in range(ENV_SECRETS)}


def conn_id(i: int) -> str:
    """Return the conn_id of connection i."""
    return f"bench_{i:06d}"


def connection(i: int, changed: bool = False) -> dict[str, Any]:
    """Return connection i's declared fields; a secret from the environment as a reference."""
    mark = "v2" if changed else "v1"
    host_suffix = "new.internal" if changed else "internal"
    kind = i % 4
    if kind == 2:
        return {
            "conn_type": "http",
            "description": f"Partner API {i}",
            "host": f"api-{i}.partner.{host_suffix}",
            "schema": "https",
            "login": f"svc_{i}",
            "password": f"token-{i}-{mark}",
            "port": 443,
            "extra": {"timeout": 60 if changed else 30, "verify": True, "max_redirects": 5},
        }
    password: Any = {"from_env": env_name(i)} if kind in (1, 3) else f"pw-{i}-{mark}"
    if kind == 1:
        return {
            "conn_type": "mysql",
            "description": f"Orders shard {i}",
            "host": f"mysql-{i}.{host_suffix}",
            "schema": "orders",
            "login": f"reporting_{i}",
            "password": password,
            "port": 3306,
            "extra": {"charset": "utf8mb4", "ssl_mode": "REQUIRED", "client": "mysqlclient"}
            if not changed
            else {"charset": "utf8mb4", "ssl_mode": "VERIFY_CA", "client": "mysqlclient"},
        }
    return {
        "conn_type": "postgres",
        "description": f"Warehouse replica {i}",
        "host": f"pg-{i}.{host_suffix}",
        "schema": "analytics",
        "login": f"etl_{i}",
        "password": password,
        "port": 5432,
        "extra": {
            "sslmode": "verify-full" if changed else "require",
            "connect_timeout": 10,
            "application_name": f"airflow-{i}",
        },
    }


def resolved(i: int, changed: bool = False) -> dict[str, Any]:
    """Return connection i with its password resolved, as it is stored (before encryption)."""
    fields = connection(i, changed)
    password = fields["password"]
    if isinstance(password, dict):
        fields["password"] = env_secrets(changed)[password["from_env"]]
    return fields


def rows(n: int, changed: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the N rows as Airflow stores them, before encryption: extra as JSON text."""
    for i in range(n):
        fields = resolved(i, changed)
        fields["conn_id"] = conn_id(i)
        fields["extra"] = json.dumps(fields["extra"])
        yield fields


def variable_key(i: int) -> str:
    """Return the key of variable i; every third is named like a secret (sensitive, as Airflow decides)."""
    return f"bench_token_{i:06d}" if i % 3 == 2 else f"bench_var_{i:06d}"


def variable(i: int, changed: bool = False) -> dict[str, Any]:
    """Return variable i's declared fields: a string with a description, a JSON table, or a secret."""
    mark = "v2" if changed else "v1"
    if i % 3 == 0:
        return {"value": f"s3://bucket-{i}/{mark}", "description": f"Where job {i} writes"}
    if i % 3 == 1:
        return {"value": {"enabled": True, "max_rows": 5000 + i + changed, "regions": ["eu", "us"]}}
    return {"value": f"token-{i}-{mark}"}


def toml_document(
    n: int, changed: bool = False, changed_ids: Collection[int] = (), kind: str = "connection"
) -> str:
    """Return a dconn TOML document declaring connections (or variables) 0..n-1; `changed_ids` alone changed."""
    parts = ["# Generated by benchmarks/workload.py.\nversion = 1\n"]
    for i in range(n):
        if kind == "variable":
            parts.append(f"\n[variables.{variable_key(i)}]\n")
            fields = variable(i, changed or i in changed_ids)
        else:
            parts.append(f"\n[connections.{conn_id(i)}]\n")
            fields = connection(i, changed or i in changed_ids)
        for name, value in fields.items():
            parts.append(f"{name} = {_toml_value(value)}\n")
    return "".join(parts)


def prune_document(kind: str = "connection") -> str:
    """Return a document that declares nothing and prunes everything: delete every row."""
    table = "variables" if kind == "variable" else "connections"
    return f"version = 1\n\n[settings]\nprune = true\n\n[{table}]\n"


def _toml_value(value: Any) -> str:
    """Spell a str, int, bool, list or flat table as TOML (json.dumps quotes strings compatibly)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
    return "{ " + inner + " }"
