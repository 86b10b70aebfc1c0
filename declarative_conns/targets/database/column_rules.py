"""What the database would refuse or mangle, found before anything is written (pure).

airflow_db reads each text column's limits (reflection, and information_schema on MySQL) and
the conn_id column's collation; the rules here decide, without a database, whether a row fits.
Messages name the connection and field with sizes only, never a value (it may be a secret).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ColumnLimit:
    """Say what a text column holds: characters, bytes, and (MySQL) its character set."""

    chars: int | None
    octets: int | None = None
    charset: str | None = None


def row_problems(
    limits: Mapping[str, ColumnLimit],
    dialect: str,
    teams: frozenset[str] | None,
    owner: str,
    row: Mapping[str, Any],
    encrypted: Mapping[str, str],
) -> list[str]:
    """Return why a row (as it will be stored, encrypted or not) does not fit its table.

    Checks every text column (the key's included) against its length (characters, and bytes for
    MySQL's TEXT), its MySQL character set, PostgreSQL's ban on NUL, and Airflow 3.2+'s team
    names. `owner` names the object (`connection "x"`); `encrypted` maps each encrypted column
    to its flag. Messages give sizes, never values.
    """
    problems = []
    postgres = dialect == "postgresql"
    for name, value in row.items():
        if not isinstance(value, str):
            continue
        limit = limits.get(name)
        if (
            limit is None or ((limit.chars is None or len(value) <= limit.chars) and not limit.charset)
        ) and not (postgres and "\x00" in value):
            continue  # fits: the common case, without a call (this runs for every field of every row)
        flag = encrypted.get(name)
        problem = _text_problem(limit, dialect, value, encrypted=bool(flag and row.get(flag)))
        if problem:
            problems.append(f"{owner} field {name}: {problem}")
    team = row.get("team_name")
    if team and teams is not None and team not in teams:
        problems.append(
            f'{owner} field team_name: there is no team "{team}" in this Airflow '
            "(create it first: airflow teams create)"
        )
    return problems


def shown_key(key: str) -> str:
    """Return a key for a message, cut short when long."""
    return key if len(key) <= 60 else key[:57] + "..."


def _text_problem(limit: ColumnLimit | None, dialect: str, value: str, encrypted: bool) -> str | None:
    """Return why one text value does not fit its column, or None."""
    once = " once encrypted" if encrypted else ""
    if limit and limit.chars is not None and len(value) > limit.chars:
        return f"{len(value)} characters{once}, the column holds {limit.chars}"
    if limit and limit.charset:
        size = _octets(value, limit.charset)
        if limit.octets is not None and size > limit.octets:
            return f"{size} bytes{once}, the column holds {limit.octets} bytes ({limit.charset})"
        if not _encodable(value, limit.charset):
            return (
                f"holds characters its MySQL character set {limit.charset} cannot store"
                f"{' (beyond U+FFFF, such as emoji)' if limit.charset.startswith('utf8') else ''}; "
                "convert the table to utf8mb4, or remove them"
            )
    if dialect == "postgresql" and "\x00" in value:
        return "holds a NUL character, which PostgreSQL cannot store"
    return None


def _octets(value: str, charset: str) -> int:
    """Return how many bytes MySQL needs for a value in a character set."""
    if charset in ("latin1", "ascii", "binary"):
        return len(value)
    if charset in ("ucs2", "utf16", "utf16le"):
        return len(value.encode("utf-16-le"))
    if charset == "utf32":
        return 4 * len(value)
    return len(value.encode("utf-8"))


def _encodable(value: str, charset: str) -> bool:
    """Tell whether MySQL can store the value's characters in a character set."""
    if charset in ("utf8", "utf8mb3", "ucs2"):
        return all(ord(c) <= 0xFFFF for c in value)
    codec = {"latin1": "cp1252", "ascii": "ascii"}.get(charset)
    if codec is None:
        return True
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def key_collisions(
    collation: str | None,
    declared: Iterable[str],
    existing: Iterable[str],
    noun: str = "connection",
    key_label: str = "conn_id",
) -> list[str]:
    """Return declared keys that a collation takes for another key.

    Airflow gives conn_id no collation of its own, so on MySQL it takes the database's default,
    usually case- and accent-insensitive (utf8mb4_unicode_ci): there "MyConn" and "myconn" are
    one connection to Airflow and the UNIQUE constraint refuses the second.
    """
    fold = _collation_key(collation)
    if fold is None:
        return []
    why = f"the {key_label} column's collation {collation} ignores case"
    problems = []
    first: dict[str, str] = {}
    for key in sorted(declared):
        other = first.setdefault(fold(key), key)
        if other != key:
            problems.append(f'{noun}s "{other}" and "{key}" are one {noun} here: {why}')
    for stored in sorted(set(existing) - set(declared)):
        match = first.get(fold(stored))
        if stored and match is not None:
            problems.append(
                f'{noun} "{match}" is the database\'s {noun} "{stored}": {why}; declare it '
                f'as "{stored}", or remove "{stored}" from the database first'
            )
    return problems


def _collation_key(collation: str | None) -> Callable[[str], str] | None:
    """Return how a collation compares conn_ids, or None when it compares them exactly."""
    name = (collation or "").lower()
    if name == "nocase":  # SQLite: ASCII letters only
        return lambda s: s.translate(_ASCII_LOWER)
    if not name.endswith("_ci"):
        return None
    if "_as_" in name:
        return str.lower
    return lambda s: "".join(
        c for c in unicodedata.normalize("NFKD", s.lower()) if not unicodedata.combining(c)
    )


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
