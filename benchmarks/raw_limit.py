"""The raw limit: the least a Python process must do for the work `dconn apply` does.

Imports tomllib, SQLAlchemy and cryptography, nothing of dconn, and in one process parses the
same TOML document dconn is given (any tool must read its input; a password `{ from_env = ... }`
is taken from the environment), then:

- create: inserts the declared rows, password and extra Fernet-encrypted, in one
  transaction (one executemany), then reads every row back and decrypts it;
- update: reads and decrypts the stored rows, then updates every declared row with newly
  encrypted values in one transaction (executemany by id);
- delete: reads and decrypts the stored rows, then deletes those the document does not declare
  (with the pruning document: all of them) by id in one transaction.

It prints one JSON line with its phase timings on stdout. The benchmark measures it as a
whole process, the same way it measures dconn, and pinned to the same CPU.

With `--kind variable` the same work on the `variable` table (the value Fernet-encrypted, a
table stored as JSON text and parsed when read back).

Usage: raw_limit.py --url URL --config TOML --n N [--mode create|update|delete] [--kind variable]
(key in DCONN_FERNET_KEY; N is the number of rows it must read back, a check of the work)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet

if sys.version_info >= (3, 11):
    import tomllib
else:  # the benchmark's Python is 3.11+; dconn itself reads TOML with tomli on 3.10
    import tomli as tomllib

_COLUMNS = (
    "id",
    "conn_id",
    "conn_type",
    "description",
    "host",
    "schema",
    "login",
    "password",
    "port",
    "is_encrypted",
    "is_extra_encrypted",
    "extra",
)
TABLE = sa.table("connection", *(sa.column(c) for c in _COLUMNS))
_VARIABLE_COLUMNS = ("id", "key", "val", "description", "is_encrypted")
VARIABLE = sa.table("variable", *(sa.column(c) for c in _VARIABLE_COLUMNS))


class Spec:
    """What differs between kinds: the table, its key column, and how rows are made and read."""

    def __init__(self, kind: str) -> None:
        self.variables = kind == "variable"
        self.table = VARIABLE if self.variables else TABLE
        self.key = "key" if self.variables else "conn_id"
        self.columns = _VARIABLE_COLUMNS if self.variables else _COLUMNS

    def declared(self, config: Path) -> list[dict[str, Any]]:
        """Parse the document; return its rows before encryption."""
        return declared_variables(config) if self.variables else declared_rows(config)

    def encrypted(self, declared: list[dict[str, Any]], fernet: Fernet) -> list[dict[str, Any]]:
        """Return the rows as Airflow stores them."""
        if not self.variables:
            return encrypted_rows(declared, fernet)
        return [
            {**r, "val": fernet.encrypt(r["val"].encode()).decode(), "is_encrypted": True} for r in declared
        ]

    def read_back(self, conn: sa.Connection, fernet: Fernet) -> list[dict[str, Any]]:
        """Read every row and decrypt it (a variable's JSON text parsed, as a comparison needs)."""
        if not self.variables:
            return read_back(conn, fernet)
        found = []
        for row in conn.execute(sa.select(VARIABLE).order_by(VARIABLE.c.id)):
            values = dict(row._mapping)
            if values["is_encrypted"]:
                values["val"] = fernet.decrypt(values["val"].encode()).decode()
            if values["val"][:1] in "{[":
                values["val"] = json.loads(values["val"])
            found.append(values)
        return found


def declared_variables(config: Path) -> list[dict[str, Any]]:
    """Parse the TOML document; return its variables as rows: a table as JSON text, as Variable.set writes it."""
    with config.open("rb") as file:
        document = tomllib.load(file)
    return [
        {
            "key": key,
            "val": v["value"] if isinstance(v["value"], str) else json.dumps(v["value"], indent=2),
            "description": v.get("description"),
        }
        for key, v in document.get("variables", {}).items()
    ]


def declared_rows(config: Path) -> list[dict[str, Any]]:
    """Parse the TOML document; return its connections as rows, before encryption."""
    with config.open("rb") as file:
        document = tomllib.load(file)
    out = []
    for conn_id, fields in document.get("connections", {}).items():
        row = {"conn_id": conn_id, **fields}
        if isinstance(row["password"], dict):
            row["password"] = os.environ[row["password"]["from_env"]]
        row["extra"] = json.dumps(row["extra"])
        out.append(row)
    return out


def encrypted_rows(declared: list[dict[str, Any]], fernet: Fernet) -> list[dict[str, Any]]:
    """Return the rows as Airflow stores them: password and extra as Fernet tokens."""
    out = []
    for row in declared:
        row["password"] = fernet.encrypt(row["password"].encode()).decode()
        row["extra"] = fernet.encrypt(row["extra"].encode()).decode()
        row["is_encrypted"] = True
        row["is_extra_encrypted"] = True
        out.append(row)
    return out


def read_back(conn: sa.Connection, fernet: Fernet) -> list[dict[str, Any]]:
    """Read every row and decrypt its password and extra, as any reader of the table must."""
    found = []
    for row in conn.execute(sa.select(TABLE).order_by(TABLE.c.id)):
        values = dict(row._mapping)
        if values["password"] and values["is_encrypted"]:
            values["password"] = fernet.decrypt(values["password"].encode()).decode()
        if values["extra"] and values["is_extra_encrypted"]:
            values["extra"] = json.loads(fernet.decrypt(values["extra"].encode()))
        found.append(values)
    return found


def main() -> None:
    """Do the raw work once and report the phase timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--mode", choices=("create", "update", "delete"), default="create")
    parser.add_argument("--kind", choices=("connection", "variable"), default="connection")
    args = parser.parse_args()
    spec = Spec(args.kind)
    table = spec.table
    start = time.perf_counter()
    declared = spec.declared(args.config)
    timings: dict[str, float] = {"parse": time.perf_counter() - start}
    fernet = Fernet(os.environ["DCONN_FERNET_KEY"].split(",")[0].encode())
    engine = sa.create_engine(args.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if args.mode == "create":
            new = spec.encrypted(declared, fernet)
            with conn.begin():
                conn.execute(table.insert(), new)
            timings["write"] = time.perf_counter() - start
            with conn.begin():
                found = spec.read_back(conn, fernet)
        else:
            with conn.begin():
                found = spec.read_back(conn, fernet)
                timings["read"] = time.perf_counter() - start
                ids = {r[spec.key]: r["id"] for r in found}
                if args.mode == "update":
                    statement = (
                        table.update()
                        .where(table.c.id == sa.bindparam("_id"))
                        .values({c: sa.bindparam(c) for c in spec.columns if c not in ("id", spec.key)})
                    )
                    rows = spec.encrypted(declared, fernet)
                    params = [{"_id": ids[r.pop(spec.key)], **r} for r in rows]
                    conn.execute(statement, params)
                else:
                    keep = {r[spec.key] for r in declared}
                    gone = [i for key, i in ids.items() if key not in keep]
                    for at in range(0, len(gone), 10_000):
                        conn.execute(table.delete().where(table.c.id.in_(gone[at : at + 10_000])))
    engine.dispose()
    timings["total"] = time.perf_counter() - start
    if len(found) != args.n:
        sys.exit(f"raw_limit: read {len(found)} rows, expected {args.n}")
    print(json.dumps({"mode": args.mode, "n": args.n, **{k: round(v, 4) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
