"""The pure rules that refuse a row before the database would: lengths, charsets, collations."""

from __future__ import annotations

import pytest

from declarative_conns.targets.database.column_rules import ColumnLimit, conn_id_collisions, row_problems

MYSQL_TEXT = ColumnLimit(65535, 65535, "utf8mb4")


@pytest.mark.parametrize(
    ("limit", "dialect", "value", "problem"),
    [
        (ColumnLimit(500), "sqlite", "h" * 500, None),
        (ColumnLimit(500), "sqlite", "h" * 501, "501 characters, the column holds 500"),
        (MYSQL_TEXT, "mysql", "é" * 32767, None),
        (MYSQL_TEXT, "mysql", "é" * 32768, "65536 bytes, the column holds 65535 bytes (utf8mb4)"),
        (ColumnLimit(500, 1500, "utf8mb3"), "mysql", "東京 é", None),
        (ColumnLimit(500, 1500, "utf8mb3"), "mysql", "go 🚀", "utf8mb3 cannot store (beyond U+FFFF"),
        (ColumnLimit(500, 2000, "utf8mb4"), "mysql", "go 🚀", None),
        (ColumnLimit(500, 500, "latin1"), "mysql", "café €", None),
        (ColumnLimit(500, 500, "latin1"), "mysql", "東京", "latin1 cannot store"),
        (None, "postgresql", "a\x00b", "holds a NUL character"),
        (None, "mysql", "a\x00b", None),
    ],
)
def test_each_backend_limit_is_checked(
    limit: ColumnLimit | None, dialect: str, value: str, problem: str | None
) -> None:
    """Characters, MySQL bytes and character sets, and PostgreSQL's NUL: each refused with a reason."""
    found = row_problems({"login": limit} if limit else {}, dialect, None, "c", {"login": value})
    if problem is None:
        assert found == []
    else:
        (message,) = found
        assert message.startswith('connection "c" field login: ') and problem in message


def test_encrypted_values_are_measured_as_stored_and_never_shown() -> None:
    """A Fernet token's length is what must fit; the message says so and shows no value."""
    token = "gAAAAA" + "x" * 5100
    (message,) = row_problems(
        {"password": ColumnLimit(5000)}, "sqlite", None, "c", {"password": token, "is_encrypted": True}
    )
    assert message == 'connection "c" field password: 5106 characters once encrypted, the column holds 5000'
    assert "gAAAAA" not in message


def test_unknown_team_is_named() -> None:
    """team_name must name an existing team (Airflow 3.2+'s foreign key)."""
    assert row_problems({}, "sqlite", frozenset({"analytics"}), "c", {"team_name": "analytics"}) == []
    (message,) = row_problems({}, "sqlite", frozenset({"analytics"}), "c", {"team_name": "ops"})
    assert message.startswith('connection "c" field team_name: there is no team "ops"')


@pytest.mark.parametrize(
    ("collation", "a", "b", "collide"),
    [
        ("utf8mb4_general_ci", "MyConn", "myconn", True),
        ("utf8mb4_unicode_ci", "cafe", "Café", True),
        ("utf8mb4_0900_as_ci", "cafe", "café", False),
        ("utf8mb4_0900_as_ci", "Cafe", "cafe", True),
        ("utf8mb3_bin", "MyConn", "myconn", False),
        ("utf8mb4_0900_as_cs", "MyConn", "myconn", False),
        (None, "MyConn", "myconn", False),
        ("NOCASE", "MyConn", "myconn", True),
        ("NOCASE", "É", "é", False),
    ],
)
def test_conn_id_collisions_follow_the_collation(
    collation: str | None, a: str, b: str, collide: bool
) -> None:
    """Case folds under *_ci, accents too unless *_as_ci; *_bin, *_cs and no collation are exact."""
    assert bool(conn_id_collisions(collation, [a, b], [])) is collide
    assert bool(conn_id_collisions(collation, [a], [b])) is collide
    assert conn_id_collisions(collation, [a], [a]) == []
