"""Airflow's tables for each kind, reflected (never assumed) in one query per server.

Every generation works: `connection` of 1.10 (no description, no UNIQUE), 2.x/3.0, 3.1
(team_id) and 3.2+ (team_name); `variable` (description since 2.x); `slot_pool`
(include_deferred since 2.7). On PostgreSQL and MySQL one query on information_schema gives
every column, its type, length, character set and collation; SQLite is a local file, reflected
by SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from declarative_conns.core.kinds import BY_NAME
from declarative_conns.targets.database.column_rules import ColumnLimit


@dataclass(frozen=True)
class KindTable:
    """Say how one kind is stored: its table, key column, and which fields map to which columns."""

    kind: str
    table: str
    key_column: str
    #: field -> column, where they differ (a variable's value lives in `val`).
    columns: Mapping[str, str] = field(default_factory=dict)
    #: Encrypted columns and the flag column telling whether each row's value is encrypted.
    encrypted: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str:
        """Return the column of a field."""
        return self.columns.get(name, name)


KIND_TABLES: Mapping[str, KindTable] = {
    "connection": KindTable(
        "connection",
        "connection",
        "conn_id",
        encrypted={"password": "is_encrypted", "extra": "is_extra_encrypted"},
    ),
    "variable": KindTable(
        "variable", "variable", "key", columns={"value": "val"}, encrypted={"val": "is_encrypted"}
    ),
    "pool": KindTable("pool", "slot_pool", "pool"),
}
_TABLE_NAMES = ("connection", "variable", "slot_pool", "team", "dconn_state")


@dataclass
class Reflected:
    """Hold what one query (or SQLite's reflection) told of the tables."""

    tables: dict[str, sa.Table]
    limits: dict[str, dict[str, ColumnLimit]]
    collations: dict[str, str | None]

    def fields(self, kind: str) -> tuple[str, ...]:
        """Return the fields of a kind whose columns the table has, in the kind's order."""
        spec = KIND_TABLES[kind]
        table = self.tables.get(spec.table)
        if table is None:
            return ()
        return tuple(f for f in BY_NAME[kind].fields if spec.column(f) in table.c)


def reflect(conn: Connection, schema: str | None) -> Reflected:
    """Reflect Airflow's tables that exist (and dconn's state table), in as few queries as the server allows."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return _reflect_sqlite(conn)
    if dialect in ("mysql", "mariadb"):
        query = sa.text(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, "
            "CHARACTER_OCTET_LENGTH, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) "
            "AND TABLE_NAME IN :names ORDER BY TABLE_NAME, ORDINAL_POSITION"
        ).bindparams(sa.bindparam("names", expanding=True))
    else:
        query = sa.text(
            "SELECT c.table_name, c.column_name, c.data_type, c.udt_name, c.character_maximum_length, "
            "c.character_octet_length, NULL, c.collation_name, "
            "CASE WHEN c.column_name = 'id' THEN 'PRI' ELSE '' END "
            "FROM information_schema.columns c WHERE c.table_schema = COALESCE(:schema, current_schema()) "
            "AND c.table_name IN :names ORDER BY c.table_name, c.ordinal_position"
        ).bindparams(sa.bindparam("names", expanding=True))
    columns: dict[str, list[sa.Column[Any]]] = {}
    limits: dict[str, dict[str, ColumnLimit]] = {}
    collations: dict[str, str | None] = {}
    mysql = dialect in ("mysql", "mariadb")
    for table, name, data_type, column_type, chars, octets, charset, collation, key in conn.execute(
        query, {"schema": schema, "names": list(_TABLE_NAMES)}
    ):
        columns.setdefault(table, []).append(
            sa.Column(name, _type(str(data_type), str(column_type or ""), chars), primary_key=key == "PRI")
        )
        if chars is not None or charset is not None:
            limit = (
                ColumnLimit(_int(chars), _int(octets), str(charset))
                if mysql and charset
                else ColumnLimit(_int(chars))
            )
            limits.setdefault(table, {})[name] = limit
        if name == KIND_TABLES.get(_kind_of(table), KindTable("", "", "")).key_column:
            collations[table] = collation
    metadata = sa.MetaData(schema=schema)
    tables = {name: sa.Table(name, metadata, *cols) for name, cols in columns.items()}
    return Reflected(tables, limits, collations)


def _kind_of(table: str) -> str:
    """Return the kind stored in a table, or ''."""
    return next((k for k, spec in KIND_TABLES.items() if spec.table == table), "")


def _type(data_type: str, column_type: str, length: Any) -> sa.types.TypeEngine[Any]:
    """Map an information_schema type to the SQLAlchemy type that binds and reads it right."""
    name = data_type.lower()
    if name in ("boolean", "bool") or column_type.lower().startswith("tinyint(1)"):
        return sa.Boolean()
    if "int" in name:
        return sa.Integer()
    if name == "uuid":
        return sa.Uuid()
    if "char" in name:
        return sa.String(int(length)) if length else sa.String()
    if "text" in name:
        return sa.Text()
    if "timestamp" in name or "datetime" in name:
        return sa.DateTime()
    return sa.types.NullType()


def _reflect_sqlite(conn: Connection) -> Reflected:
    """Reflect the tables of a SQLite file with SQLAlchemy (a local file: no round trips to save)."""
    metadata = sa.MetaData()
    existing = set(sa.inspect(conn).get_table_names())
    tables: dict[str, sa.Table] = {}
    limits: dict[str, dict[str, ColumnLimit]] = {}
    collations: dict[str, str | None] = {}
    for name in _TABLE_NAMES:
        if name not in existing:
            continue
        table = sa.Table(name, metadata, autoload_with=conn, resolve_fks=False)
        tables[name] = table
        limits[name] = {
            c.name: ColumnLimit(length)
            for c in table.c
            if isinstance(length := getattr(c.type, "length", None), int)
        }
        spec = KIND_TABLES.get(_kind_of(name))
        if spec is not None and spec.key_column in table.c:
            collations[name] = getattr(table.c[spec.key_column].type, "collation", None)
    return Reflected(tables, limits, collations)


def _int(value: Any) -> int | None:
    """Return an integer from information_schema, or None."""
    return None if value is None else int(value)


def connection_shape(table: sa.Table | None) -> str:
    """Name the connection table's Airflow generation from its columns."""
    names = set(table.c.keys()) if table is not None else set()
    if "team_name" in names:
        return "3.2+"
    if "team_id" in names:
        return "3.1"
    if "description" in names:
        return "2.x"
    return "1.10"
