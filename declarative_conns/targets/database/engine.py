"""Talk to Airflow's metadata database: the only module that imports SQLAlchemy.

The `connection` table is reflected, never assumed, so every generation works: 1.10 (no
description, no UNIQUE), 2.x/3.0 (description, UNIQUE conn_id), 3.1 (team_id), 3.2+ (team_name).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from declarative_conns.core.model import FIELDS, TableInfo
from declarative_conns.errors import DatabaseError, DconnError, TargetError, ValidationFailed
from declarative_conns.targets.database import column_rules
from declarative_conns.targets.database.column_rules import ColumnLimit
from declarative_conns.targets.database.connect import connect, create_engine, short_reason
from declarative_conns.targets.database.timeouts import lock_mysql, lock_postgres
from declarative_conns.targets.discovery import DEFAULT_DB_TIMEOUT_SECONDS, mask_url

_BATCH = 500


@dataclass
class Database:
    """Hold an engine and the reflected connection table of one target."""

    engine: Engine
    table: sa.Table
    info: TableInfo
    url: str
    limits: Mapping[str, ColumnLimit] = field(default_factory=dict)
    conn_id_collation: str | None = None
    teams: frozenset[str] | None = None
    lock_timeout: float = 30.0

    @property
    def dialect(self) -> str:
        """Return the backend family: sqlite, postgresql or mysql (MariaDB included)."""
        name = self.engine.dialect.name
        return "mysql" if name == "mariadb" else name

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def open_database(
    url: str,
    schema: str | None = None,
    lock_timeout: float = 30.0,
    db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS,
) -> Database:
    """Connect to the target and reflect its connection table; never create anything."""
    engine = create_engine(url, lock_timeout, db_timeout)
    if engine.dialect.name == "sqlite":
        schema = None  # Airflow's schema setting has no meaning for a SQLite file
    try:
        with connect(engine, url) as conn:
            table = _reflect(conn, schema, url)
            limits, collation = _column_limits(conn, table, schema)
            teams = _team_names(conn, table, schema)
    except exc.SQLAlchemyError as error:
        engine.dispose()
        raise DatabaseError(f"cannot read {mask_url(url)}: {short_reason(error, url)}") from None
    except DconnError:
        engine.dispose()
        raise
    return Database(engine, table, _table_info(table), url, limits, collation, teams, lock_timeout)


def _reflect(conn: Connection, schema: str | None, url: str) -> sa.Table:
    """Reflect the connection table, or explain that this is not an Airflow database."""
    try:
        return sa.Table("connection", sa.MetaData(), autoload_with=conn, schema=schema, resolve_fks=False)
    except exc.NoSuchTableError:
        where = f' in schema "{schema}"' if schema else ""
        raise TargetError(
            f"{mask_url(url)} has no connection table{where}: is this Airflow's metadata "
            "database? (`airflow db migrate` creates it)"
        ) from None


def _table_info(table: sa.Table) -> TableInfo:
    """Name the table's Airflow generation from its columns."""
    names = set(table.c.keys())
    if "team_name" in names:
        shape = "3.2+"
    elif "team_id" in names:
        shape = "3.1"
    elif "description" in names:
        shape = "2.x"
    else:
        shape = "1.10"
    return TableInfo(shape, frozenset(n for n in FIELDS if n in names))


def _column_limits(
    conn: Connection, table: sa.Table, schema: str | None
) -> tuple[dict[str, ColumnLimit], str | None]:
    """Return what each text column holds, and the collation that compares conn_ids."""
    if conn.dialect.name in ("mysql", "mariadb"):
        # Reflection cannot tell a TEXT's byte limit or a column's character set: ask MySQL.
        query = sa.text(
            "SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, "
            "CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = 'connection'"
        )
        limits, collation = {}, None
        for name, chars, octets, charset, coll in conn.execute(query, {"schema": schema}):
            if charset is not None:
                limits[name] = ColumnLimit(_int(chars), _int(octets), str(charset))
            if name == "conn_id":
                collation = coll
        return limits, collation
    limits = {}
    for column in table.c:
        length = getattr(column.type, "length", None)
        if isinstance(length, int):
            limits[column.name] = ColumnLimit(length)
    return limits, getattr(table.c.conn_id.type, "collation", None)


def _int(value: Any) -> int | None:
    """Return an integer from information_schema, or None."""
    return None if value is None else int(value)


def _team_names(conn: Connection, table: sa.Table, schema: str | None) -> frozenset[str] | None:
    """Return the names of Airflow 3.2+'s teams, which team_name must reference."""
    if "team_name" not in table.c:
        return None
    if not sa.inspect(conn).has_table("team", schema=schema):
        return None
    team = sa.table("team", sa.column("name"), schema=schema)
    return frozenset(str(name) for (name,) in conn.execute(sa.select(team.c.name)))


def read_rows(conn: Connection, db: Database) -> list[dict[str, Any]]:
    """Return every row of the connection table as stored, ordered by id."""
    table = db.table
    wanted = ["id", "conn_id", *sorted(db.info.columns), "is_encrypted", "is_extra_encrypted"]
    query = sa.select(*(table.c[n] for n in wanted if n in table.c)).order_by(table.c.id)
    return [dict(row._mapping) for row in conn.execute(query)]


@contextmanager
def transaction(db: Database, *, write: bool) -> Iterator[Connection]:
    """Open one transaction; for writes, take dconn's apply lock first."""
    try:
        with db.engine.connect() as raw_conn:
            conn = raw_conn.execution_options(dconn_write=write)
            with conn.begin():
                yield conn
    except exc.SQLAlchemyError as error:
        if write and db.dialect == "sqlite" and "database is locked" in str(error):
            # SQLite's busy timeout is the lock timeout: BEGIN IMMEDIATE waited that long.
            raise DatabaseError(_lock_message(db, db.lock_timeout)) from None
        raise DatabaseError(
            f"{mask_url(db.url)}: {short_reason(error, db.url)}; nothing was changed"
        ) from None


def _lock_message(db: Database, timeout: float) -> str:
    """Say that another apply holds the lock, and how long dconn waited."""
    return (
        f"another dconn apply (or a writer) holds the lock on {mask_url(db.url)}; waited {timeout:g} s "
        "(--lock-timeout); nothing was changed"
    )


def check_lengths(db: Database, conn_id: str, row: Mapping[str, Any]) -> list[str]:
    """Return why the database would refuse (or mangle) a row, before anything is written."""
    return column_rules.row_problems(db.limits, db.dialect, db.teams, conn_id, row)


def check_conn_ids(db: Database, declared: Iterable[str], existing: Iterable[str]) -> None:
    """Refuse declared conn_ids that the table's collation takes for another conn_id."""
    problems = conn_id_collisions(db, declared, existing)
    if problems:
        raise ValidationFailed(problems)


def conn_id_collisions(db: Database, declared: Iterable[str], existing: Iterable[str]) -> list[str]:
    """Return the conn_id collisions under the table's collation (see column_rules)."""
    return column_rules.conn_id_collisions(db.conn_id_collation, declared, existing)


#: MySQL's named locks are server-wide: name the lock after the database, so applies to two
#: Airflow databases on one server do not wait for each other (names hold 64 characters).
MYSQL_LOCK_NAME = "LEFT(CONCAT('dconn_apply:', DATABASE()), 64)"


def acquire_lock(conn: Connection, db: Database, timeout: float) -> None:
    """Serialise applies on one database; raise DatabaseError when the wait times out."""
    if db.dialect == "sqlite":
        return  # BEGIN IMMEDIATE already holds the write lock
    got = (
        lock_mysql(conn, MYSQL_LOCK_NAME, timeout)
        if db.dialect == "mysql"
        else lock_postgres(conn, _PG_LOCK_KEY, timeout)
    )
    if not got:
        raise DatabaseError(_lock_message(db, timeout))


def release_lock(conn: Connection, db: Database) -> None:
    """Release MySQL's session lock; PostgreSQL's ends with the transaction, and a lost session's with it."""
    if db.dialect == "mysql" and not conn.invalidated:
        conn.execute(sa.text(f"SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})"))


#: Advisory lock key shared by every dconn process: the bytes of "dconn_ap" as a bigint.
_PG_LOCK_KEY = int.from_bytes(b"dconn_ap", "big")


def delete_rows(conn: Connection, db: Database, row_ids: Sequence[int]) -> None:
    """Delete rows by id, in batches."""
    table = db.table
    for start in range(0, len(row_ids), _BATCH):
        conn.execute(table.delete().where(table.c.id.in_(row_ids[start : start + _BATCH])))


def update_rows(conn: Connection, db: Database, rows: Sequence[Mapping[str, Any]]) -> None:
    """Update rows by id with one executemany; each mapping holds `id` and every column to set."""
    if not rows:
        return
    table = db.table
    columns = [c for c in rows[0] if c != "id"]
    statement = (
        table.update()
        .where(table.c.id == sa.bindparam("_row_id"))
        .values({c: sa.bindparam(f"_v_{c}") for c in columns})
    )
    params = [{"_row_id": r["id"], **{f"_v_{c}": r[c] for c in columns}} for r in rows]
    for start in range(0, len(params), _BATCH * 10):
        conn.execute(statement, params[start : start + _BATCH * 10])


def insert_rows(conn: Connection, db: Database, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows in batched multi-row statements."""
    for start in range(0, len(rows), _BATCH * 10):
        conn.execute(db.table.insert(), list(rows[start : start + _BATCH * 10]))


def row_ids_of(conn: Connection, db: Database, conn_ids: Sequence[str]) -> dict[str, int]:
    """Return the lowest row id of each given conn_id."""
    table = db.table
    found: dict[str, int] = {}
    for start in range(0, len(conn_ids), _BATCH):
        chunk = conn_ids[start : start + _BATCH]
        query = (
            sa.select(table.c.conn_id, sa.func.min(table.c.id))
            .where(table.c.conn_id.in_(chunk))
            .group_by(table.c.conn_id)
        )
        found.update({c: int(i) for c, i in conn.execute(query)})
    return found
