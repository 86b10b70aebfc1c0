"""The pure rules that refuse a row before the database would: lengths, charsets, collations."""

from __future__ import annotations

import pytest

from declarative_conns.targets.database.column_rules import (
    ColumnLimit,
    key_collisions,
    row_problems,
    shown_key,
)

MYSQL_TEXT = ColumnLimit(65535, 65535, "utf8mb4")
OWNER = 'connection "c"'
ENCRYPTED = {"password": "is_encrypted", "extra": "is_extra_encrypted"}


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
    limits = {"login": limit} if limit else {}
    found = row_problems(limits, dialect, None, OWNER, {"conn_id": "c", "login": value}, ENCRYPTED)
    if problem is None:
        assert found == []
    else:
        (message,) = found
        assert message.startswith('connection "c" field login: ') and problem in message


def test_the_key_column_is_checked_like_any_other() -> None:
    """The row includes its key column, and a key too long for it is refused under the key's name."""
    limits = {"conn_id": ColumnLimit(250)}
    assert row_problems(limits, "sqlite", None, OWNER, {"conn_id": "c" * 250}, ENCRYPTED) == []
    (message,) = row_problems(limits, "sqlite", None, OWNER, {"conn_id": "c" * 251}, ENCRYPTED)
    assert message == 'connection "c" field conn_id: 251 characters, the column holds 250'


def test_encrypted_values_are_measured_as_stored_and_never_shown() -> None:
    """A Fernet token's length is what must fit; the message says so and shows no value."""
    token = "gAAAAA" + "x" * 5100
    row = {"conn_id": "c", "password": token, "is_encrypted": True}
    (message,) = row_problems({"password": ColumnLimit(5000)}, "sqlite", None, OWNER, row, ENCRYPTED)
    assert message == 'connection "c" field password: 5106 characters once encrypted, the column holds 5000'
    assert "gAAAAA" not in message


def test_a_value_in_clear_is_not_said_to_be_encrypted() -> None:
    """An encrypted column whose flag is false (no Fernet key) is measured without "once encrypted"."""
    row = {"conn_id": "c", "password": "p" * 5001, "is_encrypted": False}
    (message,) = row_problems({"password": ColumnLimit(5000)}, "sqlite", None, OWNER, row, ENCRYPTED)
    assert message == 'connection "c" field password: 5001 characters, the column holds 5000'


def test_unknown_team_is_named() -> None:
    """team_name must name an existing team (Airflow 3.2+'s foreign key)."""
    teams = frozenset({"analytics"})
    assert (
        row_problems({}, "sqlite", teams, OWNER, {"conn_id": "c", "team_name": "analytics"}, ENCRYPTED) == []
    )
    (message,) = row_problems({}, "sqlite", teams, OWNER, {"conn_id": "c", "team_name": "ops"}, ENCRYPTED)
    assert message.startswith('connection "c" field team_name: there is no team "ops"')


def test_long_keys_are_cut_short_in_messages() -> None:
    """A key of up to 60 characters is shown whole; a longer one is cut to 57 and an ellipsis."""
    assert shown_key("k" * 60) == "k" * 60
    assert shown_key("k" * 61) == "k" * 57 + "..."


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
def test_key_collisions_follow_the_collation(collation: str | None, a: str, b: str, collide: bool) -> None:
    """Case folds under *_ci, accents too unless *_as_ci; *_bin, *_cs and no collation are exact."""
    assert bool(key_collisions(collation, [a, b], [])) is collide
    assert bool(key_collisions(collation, [a], [b])) is collide
    assert key_collisions(collation, [a], [a]) == []


def test_key_collisions_name_the_kind_and_its_key_column() -> None:
    """Collision messages speak of the kind's objects and key column (connections by default)."""
    assert key_collisions("utf8mb4_general_ci", ["MyConn", "myconn"], []) == [
        'connections "MyConn" and "myconn" are one connection here: '
        "the conn_id column's collation utf8mb4_general_ci ignores case"
    ]
    assert key_collisions("utf8mb4_general_ci", ["Slots"], ["slots"], "pool", "pool") == [
        'pool "Slots" is the database\'s pool "slots": the pool column\'s collation utf8mb4_general_ci '
        'ignores case; declare it as "slots", or remove "slots" from the database first'
    ]
