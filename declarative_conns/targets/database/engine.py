"""Talk to Airflow's metadata database: the only module that imports SQLAlchemy.

The `connection` table is reflected, never assumed, so every generation works: 1.10 (no
description, no UNIQUE), 2.x/3.0 (description, UNIQUE conn_id), 3.1 (team_id), 3.2+ (team_name).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine, make_url

from declarative_conns.core.model import FIELDS, TableInfo
from declarative_conns.errors import DatabaseError, DconnError, TargetError, ValidationFailed
from declarative_conns.targets.database import column_rules
from declarative_conns.targets.database.column_rules import ColumnLimit
from declarative_conns.targets.discovery import mask_url

CONNECT_TIMEOUT_SECONDS = 10
#: Longest silence accepted from a MySQL server once connected (beyond the apply lock's wait).
QUERY_SILENCE_SECONDS = 300
_BATCH = 500

#: Drivers per backend family: (SQLAlchemy's name, module), dconn's own first.
_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}
_FAMILIES = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
_EXTRAS = {"postgresql": ("PostgreSQL", "postgres"), "mysql": ("MySQL/MariaDB", "mysql")}


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


def open_database(url: str, schema: str | None = None, lock_timeout: float = 30.0) -> Database:
    """Connect to the target and reflect its connection table; never create anything."""
    engine = _create_engine(url, lock_timeout)
    if engine.dialect.name == "sqlite":
        schema = None  # Airflow's schema setting has no meaning for a SQLite file
    try:
        with _connect(engine, url) as conn:
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


def short_reason(error: BaseException, url: str | None = None) -> str:
    """Return the first line of a driver's error, which names the cause; never the password."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    text = lines[0] if lines else type(original).__name__
    for secret in _password_forms(url):
        text = text.replace(secret, "***")
    return text


def _password_forms(url: str | None) -> list[str]:
    """Return the URL's password as written and as decoded, to scrub from messages."""
    if not url:
        return []
    try:
        password = make_url(url).password
    except (exc.ArgumentError, ValueError):
        return []
    if not password or len(str(password)) < 4:  # drivers never echo it; don't mangle words
        return []
    return sorted({str(password), quote(str(password), safe="")}, key=len, reverse=True)


def _connect(engine: Engine, url: str) -> Connection:
    """Open a connection, turning a refusal or a silent server into one clear error."""
    started = time.monotonic()
    try:
        return engine.connect()
    except exc.DBAPIError as error:
        reason = short_reason(error, url)
        waited = time.monotonic() - started
        if waited >= CONNECT_TIMEOUT_SECONDS - 1 or "timed out" in reason or "timeout" in reason:
            reason = f"no answer within {CONNECT_TIMEOUT_SECONDS} s (connect timeout): {reason}"
        raise DatabaseError(f"cannot read {mask_url(url)}: cannot connect: {reason}") from None
    except TypeError as error:
        # A query parameter that only the URL's own driver knows (e.g. mysqlclient's ssl_mode).
        driver = engine.dialect.driver
        raise DatabaseError(
            f"cannot read {mask_url(url)}: the {driver} driver does not take the URL's parameters "
            f"({str(error).split('() ', 1)[-1]}); install the driver the URL names, or change them"
        ) from None


def _create_engine(url: str, lock_timeout: float) -> Engine:
    """Build an engine for Airflow's URL, mapped onto the drivers dconn has installed."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise TargetError(f"not a database URL: {mask_url(url)}") from None
    backend, _, asked = parsed.drivername.partition("+")
    if backend == "sqlite":
        return _sqlite_engine(parsed.database or "", lock_timeout)
    family = _FAMILIES.get(backend)
    if family is None:
        raise TargetError(
            f"unsupported database {backend!r} in {mask_url(url)}: Airflow's metadata database "
            "is SQLite, PostgreSQL or MySQL/MariaDB"
        )
    driver = _driver(family, asked)
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if driver == "psycopg":
        # No server-side prepared statements: PgBouncer in transaction mode (the Helm chart's
        # default pooler) cannot keep them across transactions.
        args["prepare_threshold"] = None
    if family == "mysql":
        # utf8mb4 on the wire whatever the URL says: it can carry every character a column holds.
        args["charset"] = "utf8mb4"
        # PyMySQL's connect_timeout stops at the TCP connect; this bounds the handshake too.
        # (mysqlclient bounds the handshake by connect_timeout and cannot change this later.)
        waiting = max(lock_timeout, 0) + QUERY_SILENCE_SECONDS
        args["read_timeout"] = CONNECT_TIMEOUT_SECONDS if driver == "pymysql" else waiting
    # MySQL's dialect also serves MariaDB (it asks the server which it is).
    parsed = parsed.set(drivername=f"{family}+{driver}")
    try:
        engine = sa.create_engine(parsed, connect_args=args, poolclass=sa.pool.NullPool)
    except ImportError as error:
        label, extra = _EXTRAS[family]
        raise TargetError(
            f"the {label} driver {driver} cannot be loaded ({error}): "
            f"pip install 'declarative-conns[{extra}]'"
        ) from None
    if family == "mysql":
        event.listen(engine, "connect", _mysql_session(lock_timeout))
    return engine


def _driver(family: str, asked: str) -> str:
    """Pick the driver Airflow's URL names when it is installed, else one dconn can use."""
    drivers = dict(_DRIVERS[family])
    if asked in drivers and _installed(drivers[asked]):
        return asked
    for name, module in _DRIVERS[family]:
        if _installed(module):
            return name
    label, extra = _EXTRAS[family]
    raise TargetError(f"no {label} driver is installed: pip install 'declarative-conns[{extra}]'")


def _installed(module: str) -> bool:
    """Tell whether a driver module can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _mysql_session(lock_timeout: float) -> Callable[[Any, Any], None]:
    """Return a connect hook: strict writes, and a long read timeout once the handshake is done."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if hasattr(dbapi_conn, "_read_timeout"):  # PyMySQL: queries may wait for the apply lock
            dbapi_conn._read_timeout = max(lock_timeout, 0) + QUERY_SILENCE_SECONDS
        cursor = dbapi_conn.cursor()
        # Strict mode turns a value too long for its column into an error, never a truncation.
        cursor.execute(
            "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'STRICT_ALL_TABLES', "
            "CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))"
        )
        cursor.close()

    return on_connect


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
    if db.dialect == "mysql":
        got = conn.execute(
            sa.text(f"SELECT GET_LOCK({MYSQL_LOCK_NAME}, :t)"), {"t": int(max(timeout, 0))}
        ).scalar()
    else:
        got = _poll(
            lambda: bool(
                conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY}).scalar()
            ),
            timeout,
        )
    if not got:
        raise DatabaseError(_lock_message(db, timeout))


def release_lock(conn: Connection, db: Database) -> None:
    """Release MySQL's session lock; PostgreSQL's ends with the transaction."""
    if db.dialect == "mysql":
        conn.execute(sa.text(f"SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})"))


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
