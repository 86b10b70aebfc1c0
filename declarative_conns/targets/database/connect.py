"""Open connections to Airflow's metadata database: drivers, URL spellings, errors.

Airflow's own URL works as written (`postgres://`, `postgresql+psycopg2://`, `mysql+mysqldb://`):
it is served by whichever driver dconn has installed. Errors become one line that never holds
the URL's password. Connecting gives up after CONNECT_TIMEOUT_SECONDS; what bounds the waits
once connected is in timeouts.py.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from declarative_conns.errors import DatabaseError, TargetError
from declarative_conns.targets.database import timeouts
from declarative_conns.targets.discovery import (
    DEFAULT_DB_TIMEOUT_SECONDS,
    backend_family,
    mask_url,
    parse_url,
    parse_url_or_none,
)

CONNECT_TIMEOUT_SECONDS = 10

#: Drivers per backend family: (SQLAlchemy's name, module), dconn's own first.
_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}
_EXTRAS = {"postgresql": ("PostgreSQL", "postgres"), "mysql": ("MySQL/MariaDB", "mysql")}


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
    parsed = parse_url_or_none(url) if url else None
    password = parsed.password if parsed is not None else None
    if not password or len(str(password)) < 4:  # drivers never echo it; don't mangle words
        return []
    return sorted({str(password), quote(str(password), safe="")}, key=len, reverse=True)


def connect(engine: Engine, url: str) -> Connection:
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


def create_engine(url: str, lock_timeout: float, db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS) -> Engine:
    """Build an engine for Airflow's URL, mapped onto the drivers dconn has installed."""
    parsed = parse_url(url)
    family = backend_family(parsed)
    if family == "sqlite":
        return _sqlite_engine(parsed.database or "", lock_timeout)
    driver = _driver(family, parsed.drivername.partition("+")[2])
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if driver == "psycopg":
        # No server-side prepared statements: PgBouncer in transaction mode (the Helm chart's
        # default pooler) cannot keep them across transactions.
        args["prepare_threshold"] = None
    if family == "mysql":
        # utf8mb4 on the wire whatever the URL says: it can carry every character a column holds.
        args["charset"] = "utf8mb4"
        args.update(timeouts.mysql_settings(driver, CONNECT_TIMEOUT_SECONDS, lock_timeout, db_timeout))
    # MySQL's dialect also serves MariaDB (it asks the server which it is).
    parsed = parsed.set(drivername=f"{family}+{driver}")
    # Round trips: Airflow's tables have no hstore column, so no probe for the type (3 round trips);
    # reads need no transaction of their own (2 more): a write opens one explicitly.
    options: dict[str, Any] = (
        {"use_native_hstore": False, "isolation_level": "AUTOCOMMIT"} if family == "postgresql" else {}
    )
    try:
        if family == "postgresql":  # asks the driver which libpq it has: it may fail to load
            args.update(timeouts.libpq_settings(parsed, driver, db_timeout))
        engine = sa.create_engine(parsed, connect_args=args, poolclass=sa.pool.NullPool, **options)
    except ImportError as error:
        label, extra = _EXTRAS[family]
        raise TargetError(
            f"the {label} driver {driver} cannot be loaded ({error}): "
            f"pip install 'declarative-conns[{extra}]'"
        ) from None
    timeouts.install(engine, driver, lock_timeout, db_timeout)
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
