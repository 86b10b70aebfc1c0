"""Talk to Airflow's metadata database: the only module that imports SQLAlchemy.

The `connection` table is reflected, never assumed, so every generation works: 1.10 (no
description, no UNIQUE), 2.x/3.0 (description, UNIQUE conn_id), 3.1 (team_id), 3.2+ (team_name).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine, make_url

from .errors import DatabaseError, TargetError
from .model import FIELDS, TableInfo
from .target import mask_url

CONNECT_TIMEOUT_SECONDS = 10
_BATCH = 500


@dataclass
class Database:
    """Hold an engine and the reflected connection table of one target."""

    engine: Engine
    table: sa.Table
    info: TableInfo
    url: str

    @property
    def dialect(self) -> str:
        """Return the backend family: sqlite, postgresql or mysql."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def open_database(url: str, schema: str | None = None, lock_timeout: float = 30.0) -> Database:
    """Connect to the target and reflect its connection table; never create anything."""
    engine = _create_engine(url, lock_timeout)
    try:
        with engine.connect() as conn:
            table = _reflect(conn, schema, url)
    except exc.SQLAlchemyError as error:
        engine.dispose()
        raise DatabaseError(f"cannot read {mask_url(url)}: {short_reason(error)}") from None
    except TargetError:
        engine.dispose()
        raise
    return Database(engine, table, _table_info(table), url)


def short_reason(error: BaseException) -> str:
    """Return the first line of a driver's error, which names the cause without the URL."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def _create_engine(url: str, lock_timeout: float) -> Engine:
    """Build an engine for Airflow's URL, mapped onto the drivers dconn has installed."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise TargetError(f"not a database URL: {mask_url(url)}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed.database or "", lock_timeout)
    if backend in ("postgres", "postgresql"):
        driver = _driver(
            "postgresql", parsed.get_driver_name(), {"psycopg2": "psycopg2", "psycopg": "psycopg"}, "postgres"
        )
        parsed = parsed.set(drivername=f"postgresql+{driver}")
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    elif backend in ("mysql", "mariadb"):
        driver = _driver(
            "mysql", parsed.get_driver_name(), {"mysqldb": "MySQLdb", "pymysql": "pymysql"}, "mysql"
        )
        parsed = parsed.set(drivername=f"mysql+{driver}")
        args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "charset": "utf8mb4"}
    else:
        raise TargetError(
            f"unsupported database {backend!r} in {mask_url(url)}: Airflow's metadata database "
            "is SQLite, PostgreSQL or MySQL/MariaDB"
        )
    return sa.create_engine(parsed, connect_args=args, poolclass=sa.pool.NullPool)


def _driver(backend: str, asked: str, modules: Mapping[str, str], extra: str) -> str:
    """Pick the driver Airflow's URL asked for if installed, else the one dconn ships with."""
    if asked in modules and importlib.util.find_spec(modules[asked]):
        return asked
    for name, module in modules.items():
        if importlib.util.find_spec(module):
            return name
    raise TargetError(f"no {backend} driver is installed: pip install 'declarative-conns[{extra}]'")


def _sqlite_engine(path: str, lock_timeout: float) -> Engine:
    """Open an existing SQLite file read-write, never creating it; writes BEGIN IMMEDIATE."""
    if not path or path == ":memory:":
        raise TargetError("an in-memory SQLite database has no Airflow tables; give a file path")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise TargetError(
            f"database file {path} does not exist; dconn never creates an Airflow database "
            "(run `airflow db migrate`, or check the URL)"
        )

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=lock_timeout)
        conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, see _begin below
        return conn

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE takes SQLite's write lock at the start, so concurrent applies queue up.
        write = conn.get_execution_options().get("dconn_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


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
        raise DatabaseError(f"{mask_url(db.url)}: {short_reason(error)}; nothing was changed") from None


def check_lengths(db: Database, conn_id: str, row: Mapping[str, Any]) -> list[str]:
    """Return the fields whose stored text is longer than their column allows."""
    too_long = []
    for name, value in row.items():
        column = db.table.c.get(name)
        length = getattr(getattr(column, "type", None), "length", None)
        if isinstance(value, str) and length and len(value) > length:
            too_long.append(
                f'connection "{conn_id}" field {name}: {len(value)} characters, the column holds {length}'
            )
    conn_len = getattr(db.table.c.conn_id.type, "length", None)
    if conn_len and len(conn_id) > conn_len:
        too_long.append(f'connection "{conn_id[:40]}...": conn_id longer than {conn_len} characters')
    return too_long


def acquire_lock(conn: Connection, db: Database, timeout: float) -> None:
    """Serialise applies on one database; raise DatabaseError when the wait times out."""
    if db.dialect == "sqlite":
        return  # BEGIN IMMEDIATE already holds the write lock
    if db.dialect == "mysql":
        got = conn.execute(
            sa.text("SELECT GET_LOCK('dconn_apply', :t)"), {"t": int(max(timeout, 0))}
        ).scalar()
    else:
        got = _poll(
            lambda: bool(
                conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY}).scalar()
            ),
            timeout,
        )
    if not got:
        raise DatabaseError(
            f"another dconn apply holds the lock on {mask_url(db.url)}; waited {timeout:g} s "
            "(--lock-timeout); nothing was changed"
        )


def release_lock(conn: Connection, db: Database) -> None:
    """Release MySQL's session lock; PostgreSQL's ends with the transaction."""
    if db.dialect == "mysql":
        conn.execute(sa.text("SELECT RELEASE_LOCK('dconn_apply')"))


#: Advisory lock key shared by every dconn process: the bytes of "dconn_ap" as a bigint.
_PG_LOCK_KEY = int.from_bytes(b"dconn_ap", "big")


def _poll(try_once: Callable[[], bool], timeout: float) -> bool:
    """Call `try_once` until it succeeds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if try_once():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


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
