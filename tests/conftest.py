"""Shared fixtures: Airflow-shaped databases on SQLite, PostgreSQL and MariaDB/MySQL.

Server tests create and drop their own uniquely named database. Outside CI they skip with a
reason when the server is unreachable; with CI=true they fail instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.airflow_tables import create_airflow_tables

PG_ADMIN_URL = os.environ.get("DCONN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("DCONN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class AirflowDb:
    """An Airflow-shaped database made for one test: its URL, engine, table and Fernet key."""

    url: str
    engine: sa.Engine
    table: sa.Table
    fernet_key: str
    backend: str
    shape: str

    def rows(self) -> list[dict[str, object]]:
        """Return every row of the connection table, as stored, ordered by id."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(self.table).order_by(self.table.c.id))]


def _server_unavailable(admin_url: str, what: str) -> None:
    """Skip (or, in CI, fail) when a database server cannot be reached."""
    try:
        engine = sa.create_engine(admin_url, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        message = f"{what} is unreachable at {admin_url}: {str(exc).splitlines()[0]}"
        if IN_CI:
            pytest.fail(message + " (CI=true: server tests must run)")
        pytest.skip(message)


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[object]:
    """Return a factory: make_db(backend, shape) -> AirflowDb, cleaned up after the test."""
    cleanups: list[object] = []

    def make(backend: str = "sqlite", shape: str = "2.x") -> AirflowDb:
        key = Fernet.generate_key().decode()
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'airflow-{uuid.uuid4().hex[:8]}.db'}"
            engine = sa.create_engine(url)
        else:
            admin_url = PG_ADMIN_URL if backend == "postgres" else MYSQL_ADMIN_URL
            _server_unavailable(admin_url, "PostgreSQL" if backend == "postgres" else "MariaDB/MySQL")
            name = f"dconn_test_{uuid.uuid4().hex[:12]}"
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            url = str(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
            engine = sa.create_engine(url)

            def drop(admin: sa.Engine = admin, name: str = name, engine: sa.Engine = engine) -> None:
                engine.dispose()
                with admin.connect() as conn:
                    if backend == "postgres":
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    else:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                admin.dispose()

            cleanups.append(drop)
        table = create_airflow_tables(engine, shape)
        if backend == "sqlite":
            cleanups.append(engine.dispose)
        return AirflowDb(url, engine, table, key, backend, shape)

    yield make
    for cleanup in reversed(cleanups):
        cleanup()  # type: ignore[operator]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove every variable that could point dconn at a real deployment; return a work dir."""
    for name in list(os.environ):
        if name.startswith(("AIRFLOW__", "DCONN_", "AIRFLOW_CONN_")) or name in (
            "AIRFLOW_HOME",
            "AIRFLOW_CONFIG",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Listen on a loopback port that accepts connections and never answers; yield the port."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for sock in accepted:
        sock.close()
    listener.close()


@pytest.fixture
def closed_port() -> int:
    """Return a loopback port on which nothing listens (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
