"""Airflow-shaped benchmark databases on SQLite and PostgreSQL, and cheap copies of them.

Every measured run starts from a copy of a prepared database: a file copy on SQLite,
CREATE DATABASE ... TEMPLATE on PostgreSQL. Preparing and copying are not measured.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SHAPE = "3.2"  # the connection table of Airflow 3.2+, as Airflow 3.3 creates it


class SqliteBackend:
    """Airflow-shaped SQLite files; a copy is a file copy."""

    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def url(self, db: str) -> str:
        """Return the URL of a database by its short name."""
        return f"sqlite:///{self.folder / (db + '.db')}"

    def create_empty(self, db: str) -> None:
        """Create a database holding empty Airflow tables (replacing one made before)."""
        (self.folder / f"{db}.db").unlink(missing_ok=True)
        _create_table(self.url(db))

    def copy(self, source: str, target: str) -> None:
        """Make `target` a copy of `source`, replacing it."""
        shutil.copyfile(self.folder / f"{source}.db", self.folder / f"{target}.db")

    def close(self) -> None:
        """Remove nothing: the work folder is removed as a whole."""


class PostgresBackend:
    """Airflow-shaped PostgreSQL databases, uniquely named; a copy is CREATE DATABASE ... TEMPLATE."""

    name = "postgres"

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa

        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.prefix = f"dconn_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: set[str] = set()
        self.base_url = self.admin.url

    def _real(self, db: str) -> str:
        return f"{self.prefix}_{db}"

    def url(self, db: str) -> str:
        """Return the URL of a database by its short name (password included: it is a local server)."""
        return self.base_url.set(database=self._real(db)).render_as_string(hide_password=False)

    def _sql(self, statement: str) -> None:
        import sqlalchemy as sa

        with self.admin.connect() as conn:
            conn.execute(sa.text(statement))

    def _drop(self, db: str) -> None:
        if db in self.created:
            self._sql(f'DROP DATABASE IF EXISTS "{self._real(db)}" WITH (FORCE)')
            self.created.discard(db)

    def create_empty(self, db: str) -> None:
        """Create a database holding an empty Airflow connection table."""
        self._drop(db)
        self._sql(f'CREATE DATABASE "{self._real(db)}"')
        self.created.add(db)
        _create_table(self.url(db))

    def copy(self, source: str, target: str) -> None:
        """Make `target` a copy of `source`, replacing it."""
        self._drop(target)
        self._sql(f'CREATE DATABASE "{self._real(target)}" TEMPLATE "{self._real(source)}"')
        self.created.add(target)

    def close(self) -> None:
        """Drop every database this run created."""
        for db in sorted(self.created):
            self._drop(db)
        self.admin.dispose()


def _create_table(url: str) -> None:
    """Create the connection, variable and slot_pool tables (and the team table) as Airflow does."""
    import sqlalchemy as sa

    from tests.airflow_tables import create_airflow_tables, create_kind_tables

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        create_airflow_tables(engine, SHAPE)
        create_kind_tables(engine, SHAPE)
    finally:
        engine.dispose()


@contextmanager
def open_backend(name: str, work: Path, pg_url: str) -> Iterator[Any]:
    """Open a backend, and drop what it created afterwards."""
    backend = SqliteBackend(work) if name == "sqlite" else PostgresBackend(pg_url)
    try:
        yield backend
    finally:
        backend.close()
