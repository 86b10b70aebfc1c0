"""Nothing hangs: a database that stops answering ends plan and apply with one error (CONTRACT §13).

The silent database is a real server behind tests/blackhole.py, a proxy that stops forwarding in
both directions while keeping every socket open, as a hung server, pooler or cloud SQL proxy does:
TCP keepalives are answered and nothing is ever reset.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from declarative_conns.cli import app
from declarative_conns.cli.common import DEFAULT_DB_TIMEOUT
from declarative_conns.errors import DatabaseError
from declarative_conns.targets.database.target import MYSQL_LOCK_NAME, PG_LOCK_KEY
from declarative_conns.targets.database.timeouts import StatementTimeout
from declarative_conns.targets.discovery import DEFAULT_DB_TIMEOUT_SECONDS
from tests.blackhole import Blackhole
from tests.conftest import AirflowDb
from tests.helpers import open_target, run_dconn

CANARY = "canary-hung-41d7"
SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
DOC = '[connections.web]\nconn_type = "http"\nhost = "web.internal"\npassword = "pw"\n'

#: What a client sends first once connected (SQLAlchemy asks the server's version).
AFTER_CONNECTING = b"version()"
#: The read of the connection table, after connecting and reflecting it.
READING_ROWS = b"order by connection.id"
#: The first write of an apply, inside its transaction and under the apply lock.
WRITING_ROWS = b"insert into connection"

Silent = Callable[[str, bytes], tuple[AirflowDb, str]]


@pytest.fixture
def silent_after(make_db: Any) -> Iterator[Silent]:
    """Return a factory: (backend, marker) -> (database, URL through a proxy silent from `marker` on).

    The URL's user has the canary as password; the proxies close (ending the server sessions they
    hold open) before the databases are dropped.
    """
    cleanups: list[Callable[[], None]] = []

    def make(backend: str, marker: bytes) -> tuple[AirflowDb, str]:
        db = make_db(backend, "2.x")
        url = sa.make_url(db.url)
        proxy = Blackhole((str(url.host), int(url.port or 0)), silent_when=marker)
        cleanups.append(proxy.close)
        if backend == "mysql":
            url = url.set(username=_mysql_user(db, url.database or "", cleanups))
        through = url.set(host="127.0.0.1", port=proxy.port, password=CANARY)
        return db, through.render_as_string(hide_password=False)

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def _mysql_user(db: AirflowDb, database: str, cleanups: list[Callable[[], None]]) -> str:
    """Create a MariaDB user whose password is the canary, for this test's database only."""
    user = f"dconn_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as conn:
        for host in ("127.0.0.1", "localhost"):
            conn.exec_driver_sql(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{CANARY}'")
            conn.exec_driver_sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")

    def drop() -> None:
        with db.engine.begin() as conn:
            for host in ("127.0.0.1", "localhost"):
                conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'{host}'")

    cleanups.insert(0, drop)  # after the proxies close (cleanups run in reverse)
    return user


def dconn(cwd: Path, url: str, *args: str) -> tuple[Any, float]:
    """Run dconn against `url` with a one-connection TOML; return the result and seconds taken."""
    (cwd / "connections.toml").write_text(DOC, encoding="utf-8")
    started = time.monotonic()
    result = run_dconn(*args, cwd=cwd, env={"DCONN_DB_URL": url, "DCONN_FERNET_KEY": ""}, timeout=60)
    elapsed = time.monotonic() - started
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result, elapsed


def error_line(result: Any) -> str:
    """Return the one `Error:` line dconn printed (warnings may come before it), checking exit 1."""
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.endswith(errors[0] + "\n"), result.stderr
    return errors[0]


@pytest.mark.parametrize("backend", SERVERS)
@pytest.mark.parametrize("marker", [AFTER_CONNECTING, READING_ROWS], ids=["after-connecting", "mid-session"])
def test_plan_ends_when_the_database_stops_answering(
    silent_after: Silent, tmp_path: Path, backend: str, marker: bytes
) -> None:
    """plan --db-timeout 3 against a server gone silent ends in about 3 s with one error, no state."""
    _, url = silent_after(backend, marker)
    result, elapsed = dconn(tmp_path, url, "plan", "--db-timeout", "3")
    line = error_line(result)
    assert "the database did not answer within 3 s (--db-timeout)" in line
    assert 3 <= elapsed < 12, elapsed
    assert not (tmp_path / ".dconn" / "state.json").exists()


@pytest.mark.parametrize("backend", SERVERS)
def test_apply_ends_when_the_database_stops_answering_mid_transaction(
    silent_after: Silent, tmp_path: Path, backend: str
) -> None:
    """An apply whose server goes silent at its first write ends with one error; nothing is written."""
    db, url = silent_after(backend, WRITING_ROWS)
    result, elapsed = dconn(tmp_path, url, "apply", "--auto-approve", "--db-timeout", "2")
    line = error_line(result)
    assert "the database did not answer within 2 s (--db-timeout)" in line
    assert elapsed < 10, elapsed
    assert db.rows() == []
    assert not (tmp_path / ".dconn" / "state.json").exists()


@pytest.mark.parametrize("backend", SERVERS)
def test_silent_lock_wait_ends_after_lock_and_db_timeouts(
    silent_after: Silent, tmp_path: Path, backend: str
) -> None:
    """The statement waiting for the apply lock may wait --lock-timeout + --db-timeout, then ends."""
    lock_call = b"pg_advisory_xact_lock" if backend == "postgres" else b"get_lock("
    db, url = silent_after(backend, lock_call)
    result, elapsed = dconn(
        tmp_path, url, "apply", "--auto-approve", "--lock-timeout", "1", "--db-timeout", "2"
    )
    line = error_line(result)
    assert "did not answer within 3 s (--lock-timeout 1 s + --db-timeout 2 s)" in line
    assert 3 <= elapsed < 11, elapsed
    assert db.rows() == []


@contextmanager
def holding(db: AirflowDb, statement: str, release: str | None = None, seconds: float = 30) -> Iterator[None]:
    """Hold a lock `statement` takes, in another session, until the block ends (or `seconds` pass)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with db.engine.connect() as conn:
            conn.exec_driver_sql(statement)
            taken.set()
            done.wait(seconds)
            if release:
                conn.exec_driver_sql(release)
            conn.rollback()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize(
    ("backend", "statement"),
    [
        pytest.param(
            "postgres", "LOCK TABLE connection IN ACCESS EXCLUSIVE MODE", marks=pytest.mark.postgres
        ),
        pytest.param("mysql", "LOCK TABLES connection WRITE", marks=pytest.mark.mysql),
    ],
)
def test_statement_blocked_on_the_server_ends_within_db_timeout(
    make_db: Any, tmp_path: Path, backend: str, statement: str
) -> None:
    """A read blocked by another session's table lock (a migration's, say) ends after --db-timeout."""
    db = make_db(backend, "2.x")
    with holding(db, statement, "UNLOCK TABLES" if backend == "mysql" else None):
        result, elapsed = dconn(tmp_path, db.url, "plan", "--db-timeout", "2")
    line = error_line(result)
    assert "the database did not answer within 2 s (--db-timeout)" in line
    assert elapsed < 10, elapsed


@pytest.mark.parametrize("backend", SERVERS)
def test_lock_wait_may_outlast_db_timeout(make_db: Any, backend: str) -> None:
    """Waiting for the apply lock is bounded by --lock-timeout, not cut short by --db-timeout."""
    db = make_db(backend, "2.x")
    if backend == "postgres":
        lock, release = f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})", None
    else:
        lock, release = f"SELECT GET_LOCK({MYSQL_LOCK_NAME}, 0)", f"DO RELEASE_LOCK({MYSQL_LOCK_NAME})"
    waiting = open_target(db.url, lock_timeout=10, db_timeout=1)
    try:
        with holding(db, lock, release, seconds=2.5):
            started = time.monotonic()
            with waiting.session(10):
                waited = time.monotonic() - started
    finally:
        waiting.close()
    assert 2 <= waited < 8, waited


@pytest.mark.postgres
def test_postgres_limits_are_per_transaction_and_in_tcp(make_db: Any) -> None:
    """The apply's statement_timeout is SET LOCAL (PgBouncer-safe); keepalives and tcp_user_timeout are on.

    Reads run in autocommit (no transaction to SET LOCAL in): the watchdog bounds them.
    """
    db = make_db("postgres", "2.x")
    opened = open_target(db.url, lock_timeout=5, db_timeout=7)
    try:
        with opened.reading() as conn:
            reading = conn.exec_driver_sql("SHOW statement_timeout").scalar()
            params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        with opened.session(5) as session:
            under_lock = session.conn.exec_driver_sql(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
            ).one()
        with opened.reading() as conn:
            after = conn.exec_driver_sql("SELECT current_setting('statement_timeout')").scalar()
    finally:
        opened.close()
    assert (reading, tuple(under_lock)) == ("0", ("7s", "0"))
    assert after == "0"  # SET LOCAL: nothing is left on the session
    assert params["keepalives"] == "1" and params["tcp_user_timeout"] == "7000"


@pytest.mark.postgres
def test_server_statement_timeout_is_a_statement_timeout(make_db: Any) -> None:
    """PostgreSQL cancelling a statement for --db-timeout reads as 'did not answer', exit 1 material."""
    db = make_db("postgres", "2.x")
    opened = open_target(db.url, db_timeout=0.5)
    try:
        with (
            pytest.raises(DatabaseError, match=r"did not answer within 0\.5 s \(--db-timeout\)"),
            opened.reading() as conn,
        ):
            conn.exec_driver_sql("SELECT pg_sleep(3)")
        # Raw, for callers that map SQLAlchemy errors themselves:
        with pytest.raises(StatementTimeout), opened.engine.connect() as raw:
            raw.exec_driver_sql("SELECT pg_sleep(3)")
    finally:
        opened.close()


@pytest.mark.parametrize("value", ["0", "-1", "inf"])
def test_db_timeout_must_be_positive(value: str, tmp_path: Path) -> None:
    """--db-timeout 0 (or less, or infinite) is one error line, before any database is touched."""
    result = CliRunner().invoke(
        app, ["plan", "--db-url", f"sqlite:///{tmp_path}/none.db", "--db-timeout", value]
    )
    assert result.exit_code == 1
    assert f"Error: --db-timeout must be a number of seconds above 0, not {float(value):g}" in result.output


def test_db_timeout_default_is_the_contracts() -> None:
    """The CLI's default (kept light to import) is discovery's: 60 s, as CONTRACT §13 says."""
    assert DEFAULT_DB_TIMEOUT == DEFAULT_DB_TIMEOUT_SECONDS == 60


@pytest.mark.postgres
def test_postgres_lock_wait_queues_on_the_server(make_db: Any) -> None:
    """The waiting apply queues for the advisory lock in one statement (no polling), then gets it."""
    db = make_db("postgres", "2.x")
    waiting = open_target(db.url, lock_timeout=10)
    got: list[float] = []

    def wait_for_lock() -> None:
        with waiting.session(10):
            got.append(time.monotonic())

    def queued() -> int:
        with db.engine.connect() as conn:
            query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            return int(conn.exec_driver_sql(query).scalar() or 0)

    try:
        with holding(db, f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"):
            waiter = threading.Thread(target=wait_for_lock)
            waiter.start()
            deadline = time.monotonic() + 5
            while not queued():
                assert time.monotonic() < deadline, "the waiter never queued for the lock"
                time.sleep(0.05)
            released = time.monotonic()
        waiter.join(10)
    finally:
        waiting.close()
    assert got and got[0] - released < 1
