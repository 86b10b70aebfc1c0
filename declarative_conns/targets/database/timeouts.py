"""Bound every wait for the database once connected: nothing waits forever (CONTRACT §13).

No statement waits longer than `--db-timeout` for an answer, except the one that waits for the
apply lock, which may wait `--lock-timeout` more:

- PostgreSQL: TCP keepalives and tcp_user_timeout notice a network that drops packets; with
  psycopg, the watchdog notices a server or proxy that keeps the socket open and never answers
  (see watchdog.py), and the apply's lock statement sets statement_timeout (SET LOCAL, which
  PgBouncer in transaction mode carries, unlike the `options` startup parameter it refuses) for
  the rest of its transaction. psycopg2, the fallback driver, has no watchdog: each of its
  transactions sets statement_timeout as it begins.
- MySQL/MariaDB: PyMySQL's read and write timeouts (mysqlclient's are fixed when connecting, so
  they include the lock's wait), innodb_lock_wait_timeout and lock_wait_timeout, keepalives.
- SQLite: a local file; its busy timeout is the lock timeout.

Whichever notices first, the error is a StatementTimeout naming the limit.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext

from declarative_conns.errors import DatabaseError
from declarative_conns.targets.database.watchdog import watching
from declarative_conns.targets.discovery import DEFAULT_DB_TIMEOUT_SECONDS


class StatementTimeout(exc.SQLAlchemyError, DatabaseError):
    """Raise when the database did not answer a statement within --db-timeout.

    A SQLAlchemy error, so the callers that turn database errors into messages handle it as
    any other; a DconnError, so one that escapes them is still one `Error:` line.
    """


def no_answer_message(seconds: float, lock_wait: float = 0.0) -> str:
    """Say that the database stayed silent, and which options bound the wait."""
    if lock_wait > 0:
        return (
            f"the database did not answer within {lock_wait + seconds:g} s "
            f"(--lock-timeout {lock_wait:g} s + --db-timeout {seconds:g} s)"
        )
    return f"the database did not answer within {seconds:g} s (--db-timeout)"


def install(engine: Engine, driver: str, lock_timeout: float, db_timeout: float) -> None:
    """Give a PostgreSQL or MySQL engine its limits, and the errors that name them."""
    engine.update_execution_options(dconn_db_timeout=db_timeout, dconn_lock_timeout=lock_timeout)
    event.listen(engine, "handle_error", _timeouts_as_errors(db_timeout))
    if driver == "psycopg":
        # The watchdog bounds every wait, and the apply's lock statement sets statement_timeout
        # for the rest of its transaction: no statement per transaction (reads run in autocommit,
        # one round trip each).
        event.listen(engine, "do_connect", _psycopg_connect(db_timeout))
    elif driver == "psycopg2":
        event.listen(engine, "begin", _postgres_statement_timeout)
    else:
        event.listen(engine, "do_connect", _mysql_connect(db_timeout))


def _keepalive(db_timeout: float) -> tuple[int, int, int]:
    """Return TCP keepalive idle, interval (s) and count: a dead peer is noticed within db_timeout."""
    return max(1, int(db_timeout / 3)), max(1, int(db_timeout / 6)), 3


def _ms(seconds: float) -> str:
    """Return seconds as PostgreSQL's milliseconds (at least 1: 0 would mean no limit)."""
    return str(max(1, math.ceil(seconds * 1000)))


def libpq_settings(parsed: URL, driver: str, db_timeout: float) -> dict[str, Any]:
    """Return libpq's TCP keepalive and user-timeout settings, leaving those the URL sets."""
    idle, interval, count = _keepalive(db_timeout)
    args: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
    }
    if _libpq_version(driver) >= 120000:  # older libpq refuses the parameter
        args["tcp_user_timeout"] = int(_ms(db_timeout))
    return {k: v for k, v in args.items() if k not in parsed.query}


def _libpq_version(driver: str) -> int:
    """Return the version of the libpq the driver uses, as libpq numbers it (170002)."""
    if driver == "psycopg":
        import psycopg

        return int(psycopg.pq.version())
    import psycopg2.extensions  # type: ignore[import-untyped]

    return int(psycopg2.extensions.libpq_version())


def mysql_settings(
    driver: str, connect_timeout: float, lock_timeout: float, db_timeout: float
) -> dict[str, Any]:
    """Return the driver's socket timeouts: PyMySQL's change once connected, mysqlclient's cannot."""
    if driver == "pymysql":
        # PyMySQL's connect_timeout stops at the TCP connect; its read timeout bounds the
        # handshake too (as long as connecting may take), then _mysql_connect sets --db-timeout.
        return {"read_timeout": connect_timeout, "write_timeout": db_timeout}
    # mysqlclient takes whole seconds, fixed for the session: the apply lock's wait included.
    waiting = math.ceil(max(lock_timeout, 0) + db_timeout)
    return {"read_timeout": waiting, "write_timeout": math.ceil(db_timeout)}


def _postgres_statement_timeout(conn: Connection) -> None:
    """Bound every statement of the transaction on the server (SET LOCAL: fine behind PgBouncer).

    A write transaction starts by waiting for the apply lock, which may take --lock-timeout
    more; lock_postgres sets the limit back to --db-timeout once the lock is held.
    """
    options = conn.get_execution_options()
    limit = options["dconn_db_timeout"]
    if options.get("dconn_write"):
        limit += max(options["dconn_lock_timeout"], 0)
    conn.exec_driver_sql("SELECT set_config('statement_timeout', %(ms)s, true)", {"ms": _ms(limit)})


def _psycopg_connect(db_timeout: float) -> Any:
    """Return a do_connect hook opening psycopg connections that the watchdog guards."""

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        connection = _watched_psycopg_class().connect(*cargs, **cparams)
        connection.dconn_silence = db_timeout
        return connection

    return connect


@cache
def _watched_psycopg_class() -> type[Any]:
    """Return psycopg's Connection with a limit on the server's silence in every wait."""
    import psycopg

    class NoAnswer(psycopg.OperationalError):
        """Raise when the watchdog ended a wait the server left silent."""

        dconn_no_answer = True

    class WatchedConnection(psycopg.Connection[Any]):
        """Every exchange with the server goes through `wait`: each one is watched."""

        dconn_silence: float = DEFAULT_DB_TIMEOUT_SECONDS
        dconn_lock_wait: float = 0.0
        dconn_silenced = False  # the watchdog shut this socket (maybe just as an answer came)

        def dconn_wait_for_lock(self, seconds: float) -> None:
            """Let the next waits last `seconds` longer (0: back to --db-timeout)."""
            self.dconn_lock_wait = seconds

        def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
            with watching(self.pgconn.socket, self.dconn_silence + self.dconn_lock_wait) as watch:
                try:
                    return super().wait(watch.follow(gen), *args, **kwargs)
                except psycopg.OperationalError:
                    if not (watch.fired or self.dconn_silenced):
                        raise
                    raise NoAnswer(no_answer_message(self.dconn_silence, self.dconn_lock_wait)) from None
                finally:
                    self.dconn_silenced = self.dconn_silenced or watch.fired

    return WatchedConnection


def _mysql_connect(db_timeout: float) -> Any:
    """Return a do_connect hook: after the handshake, strict writes and --db-timeout limits."""
    seconds = math.ceil(db_timeout)

    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        pymysql = dialect.driver == "pymysql"
        connection = (_watched_pymysql_class() if pymysql else dialect.loaded_dbapi.connect)(
            *cargs, **cparams
        )
        cursor = connection.cursor()
        # Strict mode turns a value too long for its column into an error, never a truncation;
        # the lock waits end on the server too (row locks, and table locks a migration holds).
        cursor.execute(
            "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'STRICT_ALL_TABLES', "
            "CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')), "
            f"innodb_lock_wait_timeout = {seconds:d}, lock_wait_timeout = {seconds:d}"
        )
        cursor.close()
        if pymysql:  # connected: from now on, --db-timeout
            connection.dconn_silence = db_timeout
            connection.dconn_wait_for_lock(0.0)
            _tune_keepalive(connection._sock, db_timeout)
        return connection

    return connect


@cache
def _watched_pymysql_class() -> type[Any]:
    """Return PyMySQL's Connection whose read timeouts, once connected, name --db-timeout."""
    import pymysql  # type: ignore[import-untyped]

    class NoAnswer(pymysql.err.OperationalError):  # type: ignore[misc]
        """Raise when the server stayed silent longer than the read timeout."""

        dconn_no_answer = True

    class WatchedConnection(pymysql.connections.Connection):  # type: ignore[misc]
        """PyMySQL reads with a socket timeout; after the handshake it is --db-timeout."""

        dconn_silence: float | None = None  # None while connecting: the connect timeout's error
        dconn_lock_wait: float = 0.0

        def dconn_wait_for_lock(self, seconds: float) -> None:
            """Let the next reads wait `seconds` longer (0: back to --db-timeout)."""
            self.dconn_lock_wait = seconds
            self._read_timeout = (self.dconn_silence or 0) + seconds

        def _read_bytes(self, num_bytes: int) -> bytes:
            try:
                data: bytes = super()._read_bytes(num_bytes)
            except pymysql.err.OperationalError as error:
                if self.dconn_silence is None or not isinstance(error.__context__, TimeoutError):
                    raise
                message = no_answer_message(self.dconn_silence, self.dconn_lock_wait)
                raise NoAnswer(2013, message) from None  # 2013 (server lost): the session is over
            return data

    return WatchedConnection


def _tune_keepalive(sock: socket.socket | None, db_timeout: float) -> None:
    """Probe an idle TCP connection early enough to notice a dead peer (PyMySQL enables keepalive)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle, interval, count = _keepalive(db_timeout)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _timeouts_as_errors(db_timeout: float) -> Any:
    """Return a handle_error hook turning every kind of 'no answer in time' into StatementTimeout."""

    def handle(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        if getattr(original, "dconn_no_answer", False):  # the client stopped waiting
            return StatementTimeout(str(original.args[-1]))
        if _is_server_timeout(original):
            return StatementTimeout(no_answer_message(db_timeout))
        return None

    return handle


def _is_server_timeout(error: BaseException) -> bool:
    """Tell whether the server cancelled a statement for outlasting the limits dconn set."""
    if getattr(error, "sqlstate", None) == "57014":  # PostgreSQL's query_canceled
        return "statement timeout" in str(error)
    args: tuple[Any, ...] = getattr(error, "args", ())
    return bool(args) and args[0] == 1205  # MySQL's ER_LOCK_WAIT_TIMEOUT


@contextmanager
def waiting_for_lock(conn: Connection, seconds: float) -> Iterator[None]:
    """Let the statements inside wait `seconds` (--lock-timeout) longer for an answer."""
    dbapi: Any = conn.connection.dbapi_connection
    if not hasattr(dbapi, "dconn_wait_for_lock"):  # psycopg2, mysqlclient: limits fixed at connect
        yield
        return
    dbapi.dconn_wait_for_lock(max(seconds, 0))
    try:
        yield
    finally:
        dbapi.dconn_wait_for_lock(0.0)


#: One round trip: wait for the lock at most lock_timeout, then back to --db-timeout limits.
_PG_LOCK = sa.text(
    "SELECT set_config('lock_timeout', :wait, true), pg_advisory_xact_lock(:key), "
    "set_config('lock_timeout', '0', true), set_config('statement_timeout', :limit, true)"
)


def lock_postgres(conn: Connection, key: int, timeout: float) -> bool:
    """Wait up to `timeout` for the advisory lock of the transaction; False when it is not free."""
    options = conn.get_execution_options()
    db_timeout, prepared = options["dconn_db_timeout"], max(options["dconn_lock_timeout"], 0)
    if timeout > prepared:  # the transaction began with room for a shorter wait only
        conn.exec_driver_sql(
            "SELECT set_config('statement_timeout', %(ms)s, true)", {"ms": _ms(timeout + db_timeout)}
        )
    try:
        with waiting_for_lock(conn, timeout):
            conn.execute(_PG_LOCK, {"wait": _ms(timeout), "key": key, "limit": _ms(db_timeout)})
    except exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available: lock_timeout
            return False
        raise
    return True


def lock_mysql(conn: Connection, name: str, timeout: float) -> bool:
    """Wait up to `timeout` for the named lock `name` (an SQL expression); False when not free."""
    query = sa.text(f"SELECT GET_LOCK({name}, :t)")
    with waiting_for_lock(conn, timeout):
        return bool(conn.execute(query, {"t": int(max(timeout, 0))}).scalar())
