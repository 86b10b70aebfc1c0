"""The metadata database as a target: read and write Airflow's tables in one transaction, under a lock.

One connection serves the whole run (connecting costs round trips). Reads and the apply are each
one transaction; the apply takes dconn's lock first (PostgreSQL advisory lock, MySQL GET_LOCK,
SQLite BEGIN IMMEDIATE), deletes, updates, then inserts, in batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, StoredObject, Values, address_of
from declarative_conns.core.operations import Create, Delete, Operation, Reencrypt, Seen, Update
from declarative_conns.errors import DatabaseError, TargetError
from declarative_conns.targets.base import Capabilities, Progress, Snapshot, TargetInfo, WriteResult
from declarative_conns.targets.database import column_rules, rows, timeouts
from declarative_conns.targets.database.connect import connect, create_engine, short_reason
from declarative_conns.targets.database.tables import (
    KIND_TABLES,
    Reflected,
    connection_shape,
    reflect,
)
from declarative_conns.targets.discovery import DatabaseSettings, mask_url, target_identity

#: Statements carry at most this many rows (bind parameters are limited on every server).
BATCH = 500

#: Advisory lock key shared by every dconn process: the bytes of "dconn_ap" as a bigint.
PG_LOCK_KEY = int.from_bytes(b"dconn_ap", "big")
#: MySQL's named locks are server-wide: name the lock after the database, so applies to two
#: Airflow databases on one server do not wait for each other (names hold 64 characters).
MYSQL_LOCK_NAME = "LEFT(CONCAT('dconn_apply:', DATABASE()), 64)"


@dataclass
class DatabaseTarget:
    """Airflow's metadata database, reached with SQLAlchemy; secrets encrypted with its Fernet key."""

    settings: DatabaseSettings
    lock_timeout: float = 30.0
    _engine: Engine | None = field(default=None, repr=False)
    _conn: Connection | None = field(default=None, repr=False)
    _reflected: Reflected | None = field(default=None, repr=False)
    _info: TargetInfo | None = field(default=None, repr=False)
    _teams: frozenset[str] | None = field(default=None, repr=False)
    _keyring: KeyRing | None = field(default=None, repr=False)
    #: Encoded rows of the planned creates and updates, made by check_writes and reused by the apply.
    #: Rows encoded this run, by address, with the Values they were encoded from (a later run's
    #: values for the same address are other objects, so they are never served a stale row).
    _encoded: dict[Address, tuple[Values, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"DatabaseTarget({self.display!r})"

    @property
    def capabilities(self) -> Capabilities:
        """Say what a database can do: everything (secrets, one transaction, duplicate rows, the state)."""
        return Capabilities(sees_secrets=True, transactional=True, duplicate_keys=True, holds_state=True)

    @property
    def display(self) -> str:
        """Return the URL with its password masked."""
        return mask_url(self.settings.url)

    @property
    def identity(self) -> Mapping[str, object]:
        """Return what identifies the database across driver spellings."""
        return target_identity(self.settings.url, self.settings.schema)

    @property
    def keyring(self) -> KeyRing:
        """Return the deployment's Fernet key ring."""
        if self._keyring is None:
            self._keyring = KeyRing.from_setting(self.settings.fernet_key)
        return self._keyring

    @property
    def dialect(self) -> str:
        """Return the backend family: sqlite, postgresql or mysql (MariaDB included)."""
        name = self._connection().dialect.name
        return "mysql" if name == "mariadb" else name

    # -- reading ---------------------------------------------------------------------------

    def open(self) -> TargetInfo:
        """Connect, reflect Airflow's tables and describe them; never create anything."""
        if self._reflected is None:
            self._engine = create_engine(self.settings.url, self.lock_timeout, self.settings.db_timeout)
            try:
                self._conn = connect(self._engine, self.settings.url)
                with self.reading() as conn:
                    schema = self.schema
                    self._reflected = reflect(conn, schema)
                    if "connection" not in self._reflected.tables:
                        raise TargetError(self._no_table_message(schema))
                    self._teams = self._team_names(conn)
            except BaseException:
                self.close()
                raise
        if self._info is None:
            # Once per reflection: encode() asks for the fields of every object it writes.
            reflected = self._reflected
            shape = connection_shape(reflected.tables.get("connection"))
            fields = {kind: reflected.fields(kind) for kind in KIND_TABLES if reflected.fields(kind)}
            self._info = TargetInfo(shape, f"Airflow {shape} table", fields)
        return self._info

    def _no_table_message(self, schema: str | None) -> str:
        """Explain that the database has no connection table."""
        where = f' in schema "{schema}"' if schema else ""
        return (
            f"{self.display} has no connection table{where}: is this Airflow's metadata "
            "database? (`airflow db migrate` creates it)"
        )

    def _team_names(self, conn: Connection) -> frozenset[str] | None:
        """Return Airflow 3.2+'s team names, which team_name must reference."""
        reflected = self._reflected
        assert reflected is not None
        team = reflected.tables.get("team")
        uses_teams = any("team_name" in t.c for t in reflected.tables.values())
        if team is None or not uses_teams or "name" not in team.c:
            return None
        return frozenset(str(name) for (name,) in conn.execute(sa.select(team.c.name)))

    def close(self) -> None:
        """Release the connection."""
        if self._conn is not None:
            with contextlib.suppress(exc.SQLAlchemyError):  # a connection the server dropped
                self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._reflected = None
        self._info = None
        self._encoded.clear()

    @property
    def is_open(self) -> bool:
        """Tell whether the target holds a connection."""
        return self._conn is not None

    @property
    def engine(self) -> Engine:
        """Return the SQLAlchemy engine (open() first)."""
        if self._engine is None:
            raise TargetError("the database target is not open")
        return self._engine

    def _connection(self) -> Connection:
        """Return the run's connection (open() first)."""
        if self._conn is None:
            raise TargetError("the database target is not open")
        return self._conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Run reads (inside the apply's transaction when one is open); driver errors become one line.

        On PostgreSQL reads outside an apply run without a transaction of their own (the engine's
        autocommit): each statement sees a consistent snapshot, and BEGIN and COMMIT would cost two
        round trips more. An apply re-reads what it depends on inside its own transaction, under the lock.
        """
        conn = self._connection()
        inside = conn.in_transaction()
        if not inside and conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            with contextlib.nullcontext() if inside else conn.begin():
                yield conn
        except exc.SQLAlchemyError as error:
            raise DatabaseError(
                f"cannot read {self.display}: {short_reason(error, self.settings.url)}"
            ) from None

    def reflected(self, name: str) -> sa.Table | None:
        """Return a table as reflected when the target was opened (`dconn_state` too), None when absent."""
        return None if self._reflected is None else self._reflected.tables.get(name)

    @property
    def schema(self) -> str | None:
        """Return the schema of Airflow's tables (PostgreSQL's sql_alchemy_schema); None for the default."""
        return None if self.dialect == "sqlite" else self.settings.schema

    def table(self, kind: str) -> sa.Table:
        """Return the reflected table of a kind."""
        assert self._reflected is not None
        table = self._reflected.tables.get(KIND_TABLES[kind].table)
        if table is None:
            raise TargetError(
                f"{self.display} has no {KIND_TABLES[kind].table} table for {BY_NAME[kind].plural}"
            )
        return table

    def read(self, kinds: Sequence[str], digester: Digester) -> Snapshot:
        """Return every row of the kinds, decrypted; undecryptable rows are one error naming them."""
        with self.reading() as conn:
            raws = {kind: self._raw_rows(conn, kind) for kind in kinds}
        objects: list[StoredObject] = []
        skipped: list[tuple[Address, str]] = []
        for kind, found in raws.items():
            decoded, left = rows.decode_rows(found, KIND_TABLES[kind], self.keyring, digester)
            objects.extend(decoded)
            skipped.extend(left)
        return Snapshot(objects, tuple(skipped))

    def raw_rows(self, kinds: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Return every row of the kinds as stored (ciphertext), in one read transaction."""
        with self.reading() as conn:
            return {kind: self._raw_rows(conn, kind) for kind in kinds}

    def _raw_rows(self, conn: Connection, kind: str) -> list[dict[str, Any]]:
        """Return every row of a kind's table as stored, ordered by id."""
        spec = KIND_TABLES[kind]
        table = self.table(kind)
        wanted = [
            "id",
            spec.key_column,
            *(spec.column(f) for f in BY_NAME[kind].fields),
            *spec.encrypted.values(),
        ]
        query = sa.select(*(table.c[n] for n in dict.fromkeys(wanted) if n in table.c)).order_by(table.c.id)
        result = conn.execute(query)
        columns = tuple(result.keys())
        return [dict(zip(columns, row, strict=True)) for row in result]  # a third of row._mapping's time

    # -- checks ----------------------------------------------------------------------------

    def check_keys(self, declared: Sequence[Address], stored: Sequence[StoredObject]) -> list[str]:
        """Return declared keys that the key column's collation takes for another key."""
        assert self._reflected is not None
        problems = []
        for kind, spec in KIND_TABLES.items():
            keys = [a.key for a in declared if a.kind == kind]
            if not keys:
                continue
            existing = [o.address.key for o in stored if o.address.kind == kind]
            collation = self._reflected.collations.get(spec.table)
            problems += column_rules.key_collisions(collation, keys, existing, kind, BY_NAME[kind].key_label)
        return problems

    def check_writes(self, operations: Sequence[Operation]) -> list[str]:
        """Return why the database would refuse what the operations write (lengths, NUL, teams).

        The rows are encoded (encrypted) here, once: the apply writes these same rows.
        """
        assert self._reflected is not None
        problems: list[str] = []
        for op in operations:
            if not isinstance(op, (Create, Update)):
                continue
            spec = KIND_TABLES[op.address.kind]
            row = self.encode(op.address, op.values)
            checked = {spec.key_column: op.address.key, **row}
            limits = self._reflected.limits.get(spec.table, {})
            owner = f'{op.address.kind} "{column_rules.shown_key(op.address.key)}"'
            problems += column_rules.row_problems(
                limits, self.dialect, self._teams, owner, checked, spec.encrypted
            )
        return problems

    def encode(self, address: Address, values: Values) -> dict[str, Any]:
        """Return the row Airflow would store for an object's values (encrypted), made once per run."""
        cached = self._encoded.get(address)
        if cached is not None and cached[0] is values:
            return cached[1]
        spec = KIND_TABLES[address.kind]
        kind = BY_NAME[address.kind]
        fields = kind.managed_fields(address.key, self.open().fields[address.kind])
        row = rows.encode_values(values, spec, kind, fields, self.keyring)
        self._encoded[address] = (values, row)
        return row

    def forget_encoded(self) -> None:
        """Drop the rows `encode` made (after they are written)."""
        self._encoded.clear()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def session(self, lock_timeout: float) -> Iterator[DatabaseSession]:
        """Open one write transaction holding dconn's lock; commit when the block ends without error."""
        conn = self._connection()
        # PostgreSQL's reads run in autocommit; the apply is one transaction (READ COMMITTED, Airflow's own).
        conn.execution_options(
            dconn_write=True,
            isolation_level="READ COMMITTED"
            if self.dialect == "postgresql"
            else conn.default_isolation_level,
        )
        try:
            with conn.begin():
                session = DatabaseSession(self, conn)
                self._lock(conn, lock_timeout)
                try:
                    yield session
                finally:
                    self._unlock(conn)
        except exc.SQLAlchemyError as error:
            if self.dialect == "sqlite" and "database is locked" in str(error):
                # SQLite's busy timeout is the lock timeout: BEGIN IMMEDIATE waited that long.
                raise DatabaseError(self._lock_message(lock_timeout)) from None
            raise DatabaseError(
                f"{self.display}: {short_reason(error, self.settings.url)}; nothing was changed"
            ) from None

    def _lock(self, conn: Connection, timeout: float) -> None:
        """Serialise applies on one database; raise DatabaseError when the wait times out."""
        if self.dialect == "sqlite":
            return  # BEGIN IMMEDIATE already holds the write lock
        got = (
            timeouts.lock_mysql(conn, MYSQL_LOCK_NAME, timeout)
            if self.dialect == "mysql"
            else timeouts.lock_postgres(conn, PG_LOCK_KEY, timeout)
        )
        if not got:
            raise DatabaseError(self._lock_message(timeout))

    def _unlock(self, conn: Connection) -> None:
        """Release MySQL's session lock; PostgreSQL's ends with the transaction."""
        if self.dialect == "mysql" and not conn.invalidated:
            with contextlib.suppress(exc.SQLAlchemyError):  # the connection is gone, and the lock with it
                conn.execute(sa.text(f"SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})"))

    def _lock_message(self, timeout: float) -> str:
        """Say that another apply holds the lock, and how long dconn waited."""
        return (
            f"another dconn apply (or a writer) holds the lock on {self.display}; waited {timeout:g} s "
            "(--lock-timeout); nothing was changed"
        )


class DatabaseSession:
    """One locked write transaction on the database."""

    def __init__(self, target: DatabaseTarget, conn: Connection) -> None:
        self.target = target
        self.conn = conn
        self._current: dict[str, list[dict[str, Any]]] = {}
        self._indexed: dict[str, dict[Any, dict[str, Any]]] = {}
        self._reencrypted: dict[int, dict[str, Any]] = {}

    def current_rows(self, kind: str) -> list[dict[str, Any]]:
        """Return the rows of a kind as they are now, inside this transaction (read once)."""
        return self._rows(kind)

    def put_rows(
        self,
        deletes: Sequence[tuple[str, int, str]],
        updates: Sequence[Mapping[str, Any]],
        inserts: Sequence[Mapping[str, Any]],
    ) -> None:
        """Write raw rows back as a backup holds them: delete by id, rewrite, re-insert under their ids."""
        for kind in dict.fromkeys(k for k, _, _ in deletes):
            self._delete(kind, [i for k, i, _ in deletes if k == kind])
        for verb, rows_ in (("_update", updates), ("_insert", inserts)):
            groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
            for row in rows_:
                columns = {k: v for k, v in row.items() if k != "kind"}
                # executemany needs the same keys in every row of a statement
                groups.setdefault((row["kind"], tuple(sorted(columns))), []).append(columns)
            for (kind, _), batch in groups.items():
                getattr(self, verb)(kind, batch)

    def _rows(self, kind: str) -> list[dict[str, Any]]:
        """Return the rows of a kind as they are now, inside this transaction (read once)."""
        if kind not in self._current:
            self._current[kind] = self.target._raw_rows(self.conn, kind)
        return self._current[kind]

    def fingerprints(
        self, kinds: Sequence[str], digester: Digester, only: Sequence[Address] | None = None
    ) -> Mapping[Address, Seen]:
        """Return each stored row's id and fingerprint, grouped by address in id order (all rows: one read)."""
        found: dict[Address, list[tuple[int | None, str]]] = {}
        for kind in kinds:
            spec = KIND_TABLES[kind]
            for raw in self._rows(kind):
                key = raw[spec.key_column]
                address = Address(kind, "" if key is None else str(key))
                found.setdefault(address, []).append(
                    (int(raw["id"]), rows.fingerprint(raw, spec, BY_NAME[kind], digester))
                )
        return {a: tuple(seen) for a, seen in found.items()}

    def pre_images(
        self, operations: Sequence[Operation], declared: Mapping[Address, Values], digester: Digester
    ) -> list[dict[str, Any]]:
        """Return each row the operations rewrite or delete, as stored, tagged with its kind; clear secrets digested."""
        touched: dict[str, set[int]] = {}
        for op in operations:
            if not isinstance(op, Create) and op.row_id is not None:
                touched.setdefault(op.address.kind, set()).add(op.row_id)
        images = []
        for kind, ids in touched.items():
            spec = KIND_TABLES[kind]
            for raw in self._rows(kind):
                if int(raw["id"]) in ids:
                    key = raw[spec.key_column]
                    want = declared.get(Address(kind, "" if key is None else str(key)))
                    images.append({"kind": kind, **rows.clear_secrets_digested(raw, spec, want, digester)})
        return images

    def write(
        self, operations: Sequence[Operation], digester: Digester, progress: Progress | None = None
    ) -> WriteResult:
        """Delete, update, re-encrypt, then insert, kind by kind, in batches; say how the rows are stored now."""
        target = self.target
        steps: list[tuple[str, str, list[Any]]] = []
        for kind in dict.fromkeys(op.address.kind for op in operations):
            ops = [op for op in operations if op.address.kind == kind]
            rotated = {op.row_id for op in ops if isinstance(op, Reencrypt)}
            spec = KIND_TABLES[kind]
            steps += [
                (kind, "delete", [op.row_id for op in ops if isinstance(op, Delete)]),
                (
                    kind,
                    "update",
                    [
                        {"id": op.row_id, **target.encode(op.address, op.values)}
                        for op in ops
                        if isinstance(op, Update)
                    ],
                ),
                (kind, "update", self._reencrypt_rows(kind, rotated)),
                (
                    kind,
                    "insert",
                    [
                        {spec.key_column: op.address.key, **target.encode(op.address, op.values)}
                        for op in ops
                        if isinstance(op, Create)
                    ],
                ),
            ]
        total = sum(len(batch) for _, _, batch in steps)
        done = 0
        for kind, verb, batch in steps:
            for start in range(0, len(batch), BATCH):
                chunk = batch[start : start + BATCH]
                getattr(self, f"_{verb}")(kind, chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        created = [op.address for op in operations if isinstance(op, Create)]
        new_ids = self._new_ids(created)
        fingerprints = self._fingerprints_after(operations, new_ids, digester)
        target.forget_encoded()  # written: the encrypted rows are no longer needed
        return WriteResult(tuple(operations), new_ids, fingerprints)

    def _fingerprints_after(
        self, operations: Sequence[Operation], new_ids: Mapping[Address, int | None], digester: Digester
    ) -> dict[tuple[Address, int | None], str]:
        """Return the fingerprint of every row written, from what was written (nothing is read back)."""
        target = self.target
        out: dict[tuple[Address, int | None], str] = {}
        layouts: dict[str, rows.RowLayout] = {}
        for op in operations:
            spec = KIND_TABLES[op.address.kind]
            kind = BY_NAME[op.address.kind]
            if isinstance(op, Create):
                row_id = new_ids.get(op.address)
                raw = {"id": row_id, spec.key_column: op.address.key, **target.encode(op.address, op.values)}
            elif isinstance(op, Update):
                # The row as it is now: the columns written over the ones left alone (default_pool's description).
                row_id = op.row_id
                before = self._row_index(op.address.kind).get(row_id, {})
                raw = {
                    **before,
                    "id": row_id,
                    spec.key_column: op.address.key,
                    **target.encode(op.address, op.values),
                }
            elif isinstance(op, Reencrypt):
                before = self._row_index(op.address.kind)[op.row_id]
                raw = (
                    {**before, **self._reencrypted[op.row_id]}
                    if op.row_id in self._reencrypted
                    else dict(before)
                )
                row_id = op.row_id
            else:
                continue
            layout = layouts.get(kind.name) or layouts.setdefault(kind.name, rows.row_layout(spec, kind))
            out[(op.address, row_id)] = rows.fingerprint(raw, spec, kind, digester, layout)
        return out

    def _row_index(self, kind: str) -> dict[Any, dict[str, Any]]:
        """Return the rows of a kind as read in this transaction, by id (built once)."""
        index = self._indexed.get(kind)
        if index is None:
            index = self._indexed[kind] = {r["id"]: r for r in self._rows(kind)}
        return index

    def _reencrypt_rows(self, kind: str, row_ids: set[int | None]) -> list[dict[str, Any]]:
        """Return the updates re-encrypting rows, kept to fingerprint them after the write."""
        spec = KIND_TABLES[kind]
        updates = [
            rows.reencrypted(r, spec, self.target.keyring) for r in self._rows(kind) if r["id"] in row_ids
        ]
        self._reencrypted.update({u["id"]: u for u in updates})
        return updates

    def _delete(self, kind: str, row_ids: Sequence[int]) -> None:
        """Delete rows by id."""
        table = self.target.table(kind)
        self.conn.execute(table.delete().where(table.c.id.in_(row_ids)))

    def _update(self, kind: str, batch: Sequence[Mapping[str, Any]]) -> None:
        """Update rows by id with one executemany; each mapping holds `id` and every column to set."""
        if not batch:
            return
        table = self.target.table(kind)
        columns = [c for c in batch[0] if c != "id"]
        statement = (
            table.update()
            .where(table.c.id == sa.bindparam("_row_id"))
            .values({c: sa.bindparam(f"_v_{c}") for c in columns})
        )
        self.conn.execute(
            statement, [{"_row_id": r["id"], **{f"_v_{c}": r[c] for c in columns}} for r in batch]
        )

    def _insert(self, kind: str, batch: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (executemany)."""
        self.conn.execute(self.target.table(kind).insert(), list(batch))

    def _new_ids(self, created: Sequence[Address]) -> dict[Address, int | None]:
        """Return the lowest row id of each created object."""
        found: dict[Address, int | None] = {}
        for kind in dict.fromkeys(a.kind for a in created):
            table = self.target.table(kind)
            key = table.c[KIND_TABLES[kind].key_column]
            keys = [a.key for a in created if a.kind == kind]
            for start in range(0, len(keys), BATCH):
                query = (
                    sa.select(key, sa.func.min(table.c.id))
                    .where(key.in_(keys[start : start + BATCH]))
                    .group_by(key)
                )
                found.update({address_of(kind, str(k)): int(i) for k, i in self.conn.execute(query)})
        return found
