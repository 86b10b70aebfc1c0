"""The raw limit: the least a Python process must do for the work `dconn apply` does.

Imports SQLAlchemy and cryptography, nothing of dconn, and in one process:

- create: inserts the benchmark's N rows, password and extra Fernet-encrypted, in one
  transaction (one executemany), then reads every row back and decrypts it;
- update: reads and decrypts the N rows, then updates every row with newly encrypted
  values of the changed variant in one transaction (executemany by id);
- delete: reads and decrypts the N rows, then deletes them by id in one transaction.

It prints one JSON line with its phase timings on stdout. The benchmark measures it as a
whole process, the same way it measures dconn.

Usage: raw_limit.py --url URL --n N [--mode create|update|delete]   (key in DCONN_FERNET_KEY)
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import rows

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


def encrypted_rows(n: int, fernet: Fernet, changed: bool) -> list[dict[str, Any]]:
    """Return the N rows as Airflow stores them: password and extra as Fernet tokens."""
    out = []
    for row in rows(n, changed):
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
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--mode", choices=("create", "update", "delete"), default="create")
    args = parser.parse_args()
    fernet = Fernet(os.environ["DCONN_FERNET_KEY"].split(",")[0].encode())
    engine = sa.create_engine(args.url, poolclass=sa.pool.NullPool)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with engine.connect() as conn:
        if args.mode == "create":
            new = encrypted_rows(args.n, fernet, changed=False)
            with conn.begin():
                conn.execute(TABLE.insert(), new)
            timings["write"] = time.perf_counter() - start
            with conn.begin():
                found = read_back(conn, fernet)
            expected = args.n
        else:
            with conn.begin():
                found = read_back(conn, fernet)
                timings["read"] = time.perf_counter() - start
                ids = [r["id"] for r in found]
                if args.mode == "update":
                    changed = encrypted_rows(args.n, fernet, changed=True)
                    statement = (
                        TABLE.update()
                        .where(TABLE.c.id == sa.bindparam("_id"))
                        .values({c: sa.bindparam(c) for c in _COLUMNS if c not in ("id", "conn_id")})
                    )
                    params = [
                        {"_id": i, **{k: v for k, v in r.items() if k != "conn_id"}}
                        for i, r in zip(ids, changed, strict=True)
                    ]
                    conn.execute(statement, params)
                else:
                    for at in range(0, len(ids), 10_000):
                        conn.execute(TABLE.delete().where(TABLE.c.id.in_(ids[at : at + 10_000])))
            expected = args.n
    engine.dispose()
    timings["total"] = time.perf_counter() - start
    if len(found) != expected:
        sys.exit(f"raw_limit: read {len(found)} rows, expected {expected}")
    print(json.dumps({"mode": args.mode, "n": args.n, **{k: round(v, 4) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
