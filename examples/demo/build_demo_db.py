"""Build the demo's Airflow metadata database: a legacy `connection` table, as teams have them.

The table has Airflow 2.x's columns but not yet its UNIQUE(conn_id) constraint: the state a
MySQL metadata database is left in when the 2.0 upgrade stops at migration 8d48763f6d53
because duplicate conn_ids from 1.10 exist. Rows are encrypted with the demo Fernet key.

Usage: python build_demo_db.py PATH_TO_NEW_SQLITE_FILE FERNET_KEY
"""

from __future__ import annotations

import json
import sqlite3
import sys

from cryptography.fernet import Fernet

DDL = """
CREATE TABLE connection (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conn_id VARCHAR(250),
    conn_type VARCHAR(500),
    description TEXT,
    host VARCHAR(500),
    schema VARCHAR(500),
    login TEXT,
    password TEXT,
    port INTEGER,
    is_encrypted BOOLEAN,
    is_extra_encrypted BOOLEAN,
    extra TEXT
)
"""


def main(path: str, key: str) -> None:
    """Create the database file with its legacy rows."""
    fernet = Fernet(key.encode())

    def enc(text: str) -> str:
        return fernet.encrypt(text.encode()).decode()

    rows = [
        # A drifted host: someone edited it in the UI.
        (
            "warehouse",
            "postgres",
            "Analytics warehouse",
            "wh-old.internal",
            "analytics",
            "etl",
            enc("demo-warehouse-password"),
            5432,
            True,
            True,
            enc(json.dumps({"sslmode": "prefer"})),
        ),
        # The same conn_id three times: Airflow 1.10 allowed it, 2.0's upgrade refuses it.
        (
            "legacy_s3",
            "aws",
            None,
            None,
            None,
            None,
            None,
            None,
            False,
            True,
            enc(json.dumps({"region_name": "eu-west-1"})),
        ),
        (
            "sqlite_default",
            "sqlite",
            None,
            "sqlite_default.db",
            None,
            None,
            None,
            None,
            False,
            False,
            None,
        ),
        (
            "orders_mysql",
            "mysql",
            "Orders service",
            "orders.internal",
            "orders",
            "reporting",
            enc("demo-orders-password"),
            3306,
            True,
            False,
            None,
        ),
        (
            "legacy_s3",
            "aws",
            None,
            None,
            None,
            None,
            None,
            None,
            False,
            True,
            enc(json.dumps({"region_name": "us-east-1"})),
        ),
        ("legacy_s3", "s3", None, None, None, None, None, None, False, False, None),
        # Nobody declared this one: dconn leaves it alone and counts it.
        ("old_ftp", "ftp", None, "ftp.example.com", None, "anonymous", None, 21, False, False, None),
    ]
    db = sqlite3.connect(path)
    with db:
        db.execute(DDL)
        db.executemany(
            "INSERT INTO connection (conn_id, conn_type, description, host, schema, login, password,"
            " port, is_encrypted, is_extra_encrypted, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    db.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
