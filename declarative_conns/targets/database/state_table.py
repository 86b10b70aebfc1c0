"""The state in the target database: one row per state name in the table `dconn_state`.

`--state db:` (or `db:NAME`) keeps the state document — the same text as the state file: no
secret, digests only, lineage and serial — in Airflow's metadata database, beside the rows it
describes. An apply writes it through its own session: in the same transaction and under the
same lock as the rows, so the rows and the state change together or not at all. Every write is
a compare-and-swap on (lineage, serial), as for the file.

`dconn_state` is the only thing dconn ever creates, on the first apply (or `dconn state push`)
that needs it, never on a plan. PostgreSQL (in the schema of `connection`) and SQLite create it
inside the apply's transaction; MySQL/MariaDB commit DDL implicitly, so there it is created at
the start of the apply's session, under the apply lock, before any row is written. It has no
foreign key to Airflow's tables and a name without Airflow's prefixes, so `airflow db migrate`,
`airflow db check-migrations` and `airflow db reset` leave it alone. This module is the only
place with its SQL.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from declarative_conns.core.state import State
from declarative_conns.errors import DatabaseError, StateError
from declarative_conns.files.atomic import now
from declarative_conns.files.state import StateChanged, Version, parse_state, state_text
from declarative_conns.files.store import DEFAULT_DB_BACKUPS, StateNotSaved
from declarative_conns.targets.database.target import DatabaseSession, DatabaseTarget

STATE_TABLE = "dconn_state"
_COLUMNS = frozenset({"name", "lineage", "serial", "written_at", "document"})
_COMMENT = "dconn's state: what dconn manages and how it last left it (no secret). Not Airflow's."


def state_table(schema: str | None) -> sa.Table:
    """Return the `dconn_state` table as dconn creates it, in Airflow's schema."""
    return sa.Table(
        STATE_TABLE,
        sa.MetaData(schema=schema),
        # ASCII compared byte by byte: MySQL's default collations would take `Prod` for `prod`.
        sa.Column(
            "name",
            sa.String(200).with_variant(
                mysql.VARCHAR(200, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
            ),
            primary_key=True,
        ),
        sa.Column("lineage", sa.String(64), nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
        # The document's written_at as text (ISO 8601, UTC): the same on every backend.
        sa.Column("written_at", sa.String(40), nullable=False),
        # MySQL's TEXT stops at 64 KiB: a state of a few hundred objects is larger.
        sa.Column("document", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
        comment=_COMMENT,
        mysql_engine="InnoDB",  # transactional, whatever the server's default engine
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


class DatabaseState:
    """The state kept in a row of the target database's `dconn_state` table."""

    def __init__(
        self,
        target: DatabaseTarget,
        name: str,
        backups_dir: Path = DEFAULT_DB_BACKUPS,
        lock_timeout: float = 30.0,
    ) -> None:
        self.target = target
        self.name = name
        self.lock_timeout = lock_timeout
        self._backups = backups_dir
        #: Set when this store created the table (the target's reflection predates it).
        self._created = False

    def __repr__(self) -> str:
        return f"DatabaseState({self.describe()!r})"

    @property
    def backups_dir(self) -> Path:
        """Return the folder of the apply's row backups: files, as they hold row pre-images."""
        return self._backups

    @property
    def inside_target(self) -> bool:
        """Tell that this store lives in the target: it moves with the database, under any host name."""
        return True

    def describe(self) -> str:
        """Return the state's location as messages name it."""
        return f'dconn_state "{self.name}" in {self.target.display}'

    def check_writable(self) -> None:
        """Do nothing: the database's privileges show at the write, which then says so."""

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> State | None:
        """Return the state, None when the table or its row does not exist yet (a first run)."""
        self.target.open()
        table = self._table()
        if table is None:
            return None
        with self.target.reading() as conn:
            row = conn.execute(
                sa.select(table.c.lineage, table.c.serial, table.c.document).where(table.c.name == self.name)
            ).first()
        if row is None:
            return None
        hint = f"delete its row (name {self.name!r}) from {STATE_TABLE}, then `dconn state push` a good state"
        state = parse_state(str(row.document), self.describe(), "state", hint)
        if (state.lineage, state.serial) != (row.lineage, int(row.serial)):
            raise StateError(
                f"state {self.describe()} is corrupt (its lineage and serial columns disagree with its "
                f"document); {hint}"
            )
        return state

    def load_pending(self) -> State | None:
        """Return None: an apply's state commits with its rows, so none is ever left pending."""
        return None

    def _table(self) -> sa.Table | None:
        """Return the table to read and write, None when it does not exist; refuse one dconn did not make."""
        found = self.target.reflected(STATE_TABLE)
        if found is None and not self._created:
            return None
        if found is not None and not set(found.c.keys()) >= _COLUMNS:
            raise StateError(
                f"{self.target.display} has a table {STATE_TABLE} that dconn did not create (columns: "
                f"{', '.join(sorted(found.c.keys()))}); rename it, or keep the state in a file (--state PATH)"
            )
        return state_table(self.target.schema)

    # -- writing ---------------------------------------------------------------------------

    def prepare(self, session: object) -> None:
        """Create the table when it does not exist yet, at the start of the apply's session.

        PostgreSQL and SQLite create it inside the apply's transaction (a rollback undoes it);
        MySQL/MariaDB commit DDL implicitly, which is harmless here: the apply holds its lock
        and has written nothing yet.
        """
        if self._table() is not None:
            return
        conn = _connection(session)
        state_table(self.target.schema).create(conn, checkfirst=True)
        self._created = True

    def stage(self, state: State, expected: Version, session: object = None) -> None:
        """Write the state as the next serial through the apply's session, if the row still holds `expected`."""
        conn = _connection(session)
        table = self._table()
        if table is None:
            raise StateError(f"{self.describe()}: the table was not prepared for this write")
        before = (state.serial, state.written_at)
        state.serial += 1
        state.written_at = now()
        try:
            self._write(conn, table, state, expected)
        except BaseException:
            state.serial, state.written_at = before
            raise

    def _write(self, conn: Connection, table: sa.Table, state: State, expected: Version) -> None:
        """Insert the row (no state yet) or update it where it holds `expected`: compare-and-swap."""
        values = {
            "lineage": state.lineage,
            "serial": state.serial,
            "written_at": state.written_at,
            # An apply's state commits with its rows: the pending record of the file has no use here.
            "document": state_text(replace(state, before_apply={})),
        }
        if expected is None:
            try:
                conn.execute(table.insert().values(name=self.name, **values))
            except exc.IntegrityError:
                raise self._changed() from None
            return
        lineage, serial = expected
        done = conn.execute(
            table.update()
            .where(table.c.name == self.name, table.c.lineage == lineage, table.c.serial == serial)
            .values(**values)
        )
        if done.rowcount != 1:
            raise self._changed()

    def _changed(self) -> StateChanged:
        """Say that another run wrote the state since this one read it."""
        return StateChanged(
            f"{self.describe()} changed while this run was working (another dconn run wrote it); "
            "nothing was written: run dconn plan again"
        )

    def promote(self) -> None:
        """Do nothing: the state committed with the apply's transaction."""

    def discard_pending(self) -> None:
        """Do nothing: a state that did not commit was rolled back with the rows."""

    def save(self, state: State, expected: Version, *, create: bool = False) -> bool:
        """Write the state in a short transaction of its own, under the apply lock; return whether it was.

        Without `create` (a plan refreshing its snapshot) a missing table is not created: the
        state stays in memory (False), and a write the database refuses (a read-only user, the
        lock held by a long apply) is a StateNotSaved the plan reports as a warning.
        """
        self.target.open()
        if not create and self._table() is None:
            return False
        before = (state.serial, state.written_at)
        try:
            with self.target.session(self.lock_timeout) as session:
                if create:
                    self.prepare(session)
                self.stage(state, expected, session)
        except DatabaseError as error:
            state.serial, state.written_at = before
            if create:
                raise
            raise StateNotSaved(
                f"the snapshot in {self.describe()} was not refreshed: {error}. A database user that may "
                "only read should plan with --read-only"
            ) from None
        except BaseException:
            state.serial, state.written_at = before
            raise
        return True


def _connection(session: object) -> Connection:
    """Return the connection of the apply's session (this store writes only through one)."""
    if not isinstance(session, DatabaseSession):
        raise TypeError(f"the database state is written through a database session, not {session!r}")
    return session.conn
