"""The state in the target database (`--state db:`): written with the rows or not at all, on every backend."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from declarative_conns.api import apply, plan
from declarative_conns.config.loader import load_desired
from declarative_conns.errors import InputError, PlanIsStale
from declarative_conns.files.state import StateChanged
from declarative_conns.files.store import StateLocation, parse_state_location
from declarative_conns.targets.base import Capabilities
from declarative_conns.targets.database.state_table import DatabaseState
from declarative_conns.targets.discovery import resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.test_safety import BACKENDS, REJECT_TRIGGER, dconn_args, document, env_for, run

DOC = '[connections.a]\nconn_type = "http"\nhost = "a.internal"\npassword = "pw-a"\n'


def state_row(db: AirflowDb, name: str = "default", schema: str | None = None) -> dict[str, Any] | None:
    """Return the dconn_state row of a name as stored, None when the table or the row is missing."""
    if not has_state_table(db, schema):
        return None
    table = f"{schema}.dconn_state" if schema else "dconn_state"
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(f"SELECT name, lineage, serial, written_at, document FROM {table} WHERE name = :n"),
                {"n": name},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def has_state_table(db: AirflowDb, schema: str | None = None) -> bool:
    """Tell whether the database has dconn's table."""
    return sa.inspect(db.engine).has_table("dconn_state", schema=schema)


def workspace(db: AirflowDb, tmp_path: Path, state: str = "db:", **kwargs: Any) -> Workspace:
    """Return a workspace on the test database keeping its state in the database."""
    return Workspace(resolve_target(db.url, db.fernet_key, environ={}), state, **kwargs)


def plan_doc(db: AirflowDb, tmp_path: Path, doc: str = DOC, state: str = "db:", **kwargs: Any) -> Any:
    """Write a document and plan it with the state in the database."""
    path = tmp_path / "c.toml"
    path.write_text(doc)
    return plan(load_desired(path), workspace(db, tmp_path, state, **kwargs.pop("ws", {})), **kwargs)


def plan_and_apply(db: AirflowDb, tmp_path: Path, doc: str = DOC, state: str = "db:") -> None:
    """Plan and apply a document with the state in the database, as `dconn apply` does."""
    with plan_doc(db, tmp_path, doc, state, refresh_state=False) as run_:
        apply(run_)


# --- where the state lives ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("db:", StateLocation(db_name="default")),
        ("db", StateLocation(db_name="default")),
        ("db:staging", StateLocation(db_name="staging")),
        ("db:eu-west.prod_2", StateLocation(db_name="eu-west.prod_2")),
        (".dconn/state.json", StateLocation(path=Path(".dconn/state.json"))),
        ("./db", StateLocation(path=Path("db"))),
        ("dbx/state.json", StateLocation(path=Path("dbx/state.json"))),
    ],
)
def test_state_locations_parse(spelling: str, expected: StateLocation) -> None:
    """`db`, `db:` and `db:NAME` name the database (default name `default`); anything else is a file."""
    assert parse_state_location(spelling) == expected


def test_relative_state_file_is_taken_from_the_base_folder() -> None:
    """An environment's relative state path is relative to dconn.toml's folder; db: is not a path."""
    assert parse_state_location("s.json", Path("/repo")).path == Path("/repo/s.json")
    assert parse_state_location("db:x", Path("/repo")).spelling == "db:x"


@pytest.mark.parametrize("spelling", ["db:two words", "db:é", "db:" + "x" * 201, "db:a;b"])
def test_bad_state_names_are_refused(spelling: str) -> None:
    """A state name is 1 to 200 ASCII letters, digits, '_', '.', '-': anything else is an input error."""
    with pytest.raises(InputError, match="a state name in the database is 1 to 200 letters"):
        parse_state_location(spelling)


class _ApiLikeTarget:
    """A stand-in for a target whose capabilities hold no state (as the REST API target's)."""

    display = "https://airflow.example.com"
    capabilities = Capabilities(sees_secrets=False, transactional=False, duplicate_keys=False)

    def close(self) -> None:
        """Release nothing."""


def test_state_in_the_database_is_refused_for_targets_that_cannot_hold_it() -> None:
    """--state db: with a target whose capabilities hold no state says it is not available for API targets."""
    with pytest.raises(InputError, match="not available for API targets") as caught:
        Workspace(_ApiLikeTarget(), "db:")  # type: ignore[arg-type]
    assert "keep the state in a file committed to git" in str(caught.value)


def test_cli_state_db_with_an_api_target_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through the command line the refusal is one `Error:` line and exit code 1."""
    from typer.testing import CliRunner

    from declarative_conns.cli import app
    from declarative_conns.cli import plan as plan_command

    monkeypatch.setattr(plan_command, "find_target", lambda *args: _ApiLikeTarget())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "connections.toml").write_text(DOC)
    result = CliRunner().invoke(app, ["plan", "--state", "db:"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --state db:default keeps the state in the target database")


# --- apply writes the rows and the state together ------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_writes_rows_and_state_together(make_db: Any, tmp_path: Path, backend: str) -> None:
    """`apply --state db:` creates dconn_state and writes the state row with the rows; no state file."""
    db = make_db(backend, "2.x")
    (tmp_path / "connections.toml").write_text(DOC)
    result = run(db, tmp_path, "apply", "--auto-approve", "--state", "db:")
    assert result.returncode == 0, result.stderr
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    row = state_row(db)
    assert row is not None and row["serial"] == 1
    document_ = json.loads(row["document"])
    assert (document_["lineage"], document_["serial"]) == (row["lineage"], 1)
    assert document_["written_at"] == row["written_at"]
    assert document_["managed"] == {"connection": ["a"]}
    assert "before_apply" not in document_
    assert "pw-a" not in row["document"] and "gAAAAA" not in row["document"]
    assert not (tmp_path / ".dconn" / "state.json").exists()
    assert len(list((tmp_path / ".dconn" / "backups").iterdir())) == 1
    again = run(db, tmp_path, "plan", "--state", "db:", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_table_has_no_foreign_key_and_only_its_own_columns(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """dconn_state references nothing of Airflow's: its columns and primary key are dconn's own."""
    db = make_db(backend, "2.x")
    plan_and_apply(db, tmp_path)
    inspector = sa.inspect(db.engine)
    assert inspector.get_foreign_keys("dconn_state") == []
    assert [c["name"] for c in inspector.get_columns("dconn_state")] == [
        "name",
        "lineage",
        "serial",
        "written_at",
        "document",
    ]
    assert inspector.get_pk_constraint("dconn_state")["constrained_columns"] == ["name"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_never_creates_the_table_and_apply_of_its_plan_file_does(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """A plan keeps a first state in memory (no table); `apply PLANFILE` creates the table and the row."""
    db = make_db(backend, "2.x")
    (tmp_path / "connections.toml").write_text(DOC)
    planned = run(db, tmp_path, "plan", "--state", "db:", "--out", "plan.json")
    assert planned.returncode == 0, planned.stderr
    assert not has_state_table(db)
    assert not (tmp_path / ".dconn" / "state.json").exists()
    applied = run(db, tmp_path, "apply", "plan.json", "--state", "db:")
    assert applied.returncode == 0, applied.stderr
    row = state_row(db)
    assert row is not None and json.loads(row["document"])["managed"] == {"connection": ["a"]}
    assert row["lineage"] == json.loads((tmp_path / "plan.json").read_text())["lineage"]


def test_apply_without_changes_records_the_state_in_a_new_table(make_db: Any, tmp_path: Path) -> None:
    """Adopting objects that already match is an apply too: it creates the table and records them."""
    db = make_db("sqlite", "2.x")
    plan_and_apply(db, tmp_path, state=str(tmp_path / "s.json"))
    assert not has_state_table(db)
    with plan_doc(db, tmp_path) as run_:
        assert not run_.plan.summary.has_changes
        apply(run_)
    row = state_row(db)
    assert row is not None and json.loads(row["document"])["managed"] == {"connection": ["a"]}


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_failed_first_apply_leaves_no_state(make_db: Any, tmp_path: Path, backend: str) -> None:
    """A first apply the database rejects leaves no row; PostgreSQL rolls the table back, MySQL keeps it empty."""
    db = make_db(backend, "2.x")
    with db.engine.begin() as conn:
        for statement in REJECT_TRIGGER[backend]:
            conn.exec_driver_sql(statement)
    (tmp_path / "connections.toml").write_text(document(2000))
    result = run(db, tmp_path, "apply", "--auto-approve", "--state", "db:")
    assert result.returncode == 1 and "host rejected by policy" in result.stderr
    assert db.rows() == []
    assert state_row(db) is None
    # MySQL commits DDL at once: the table was created before the apply's transaction began.
    assert has_state_table(db) == (backend == "mysql")


@pytest.mark.postgres
def test_table_goes_in_the_schema_of_the_connection_table(make_db: Any, tmp_path: Path) -> None:
    """With sql_alchemy_schema, dconn_state is created beside `connection`, in that schema."""
    db = make_db("postgres", "2.x")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA airflow_meta")
        conn.exec_driver_sql("ALTER TABLE connection SET SCHEMA airflow_meta")
    target = resolve_target(
        db.url, db.fernet_key, environ={"AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA": "airflow_meta"}
    )
    (tmp_path / "c.toml").write_text(DOC)
    for _ in range(2):
        with plan(load_desired(tmp_path / "c.toml"), Workspace(target, "db:")) as run_:
            apply(run_)
    assert not has_state_table(db, "public")
    row = state_row(db, schema="airflow_meta")
    assert row is not None and row["serial"] == 2


# --- compare-and-swap, plan's writes, read-only --------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_of_two_applies_planned_together_is_stale(make_db: Any, tmp_path: Path, backend: str) -> None:
    """Two runs planned on one state: the second apply is refused and changes neither rows nor state."""
    db = make_db(backend, "2.x")
    plan_and_apply(db, tmp_path)
    first = plan_doc(db, tmp_path, DOC.replace("a.internal", "one"))
    second = plan_doc(db, tmp_path, DOC.replace("a.internal", "two"))
    try:
        apply(first)
        after_first = state_row(db)
        with pytest.raises((PlanIsStale, StateChanged)):
            apply(second)
    finally:
        first.close()
        second.close()
    assert [r["host"] for r in db.rows()] == ["one"]
    assert state_row(db) == after_first


@pytest.mark.parametrize("backend", BACKENDS)
def test_stage_refuses_a_state_written_since_it_was_read(make_db: Any, tmp_path: Path, backend: str) -> None:
    """The row is updated only where it still holds the version read: else StateChanged, and a rollback."""
    db = make_db(backend, "2.x")
    plan_and_apply(db, tmp_path)
    ws = workspace(db, tmp_path)
    store = ws.state
    state = store.load()
    assert state is not None
    target = ws.target
    insert_raw(db.engine, db.table, [{"conn_id": "extra", "conn_type": "ftp"}])
    before = state_row(db)
    changed = r'dconn_state "default" in .* changed while this run was working'
    with pytest.raises(StateChanged, match=changed), target.session(5) as session:  # type: ignore[attr-defined]
        session.conn.execute(db.table.delete())
        store.stage(state, (state.lineage, state.serial - 1), session)
    target.close()
    assert state.serial == 1  # unchanged by the failed write
    assert state_row(db) == before
    assert len(db.rows()) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_writes_the_snapshot_only_when_it_changed_and_never_read_only(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """A plan rewrites the row only for a new snapshot; --read-only never writes it."""
    db = make_db(backend, "2.x")
    plan_and_apply(db, tmp_path)
    applied = state_row(db)
    plan_doc(db, tmp_path).close()
    assert state_row(db) == applied  # nothing new: not even the serial moved
    insert_raw(db.engine, db.table, [{"conn_id": "made_in_ui", "conn_type": "ftp"}])
    plan_doc(db, tmp_path, ws={"read_only": True}).close()
    assert state_row(db) == applied
    with plan_doc(db, tmp_path) as refreshed:
        assert refreshed.read_version == (applied["lineage"], 2)  # type: ignore[index]
    row = state_row(db)
    assert row is not None and row["serial"] == 2 and row["lineage"] == applied["lineage"]  # type: ignore[index]
    assert "made_in_ui" in row["document"]


def test_read_only_plan_on_a_fresh_database_writes_nothing(make_db: Any, tmp_path: Path) -> None:
    """--read-only with --state db: creates no table and no file, and takes no lock."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(DOC)
    result = run(db, tmp_path, "plan", "--state", "db:", "--read-only", "--detailed-exitcode")
    assert result.returncode == 2, result.stderr
    assert not has_state_table(db)
    assert not (tmp_path / ".dconn").exists()


@pytest.mark.postgres
def test_plan_by_a_read_only_user_warns_and_goes_on(make_db: Any, tmp_path: Path) -> None:
    """A database user that may only SELECT: the plan warns that the snapshot was not refreshed, exit 0."""
    db = make_db("postgres", "2.x")
    plan_and_apply(db, tmp_path)
    insert_raw(db.engine, db.table, [{"conn_id": "made_in_ui", "conn_type": "ftp"}])
    role = f"ro_{db.url.rsplit('/', 1)[1]}"
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT SELECT ON connection, dconn_state TO {role}")
    try:
        before = state_row(db)
        reader = AirflowDb(
            db.url.replace("postgres@", f"{role}@"), db.engine, db.table, db.fernet_key, db.backend, db.shape
        )
        (tmp_path / "connections.toml").write_text(DOC)
        result = run(reader, tmp_path, "plan", "--state", "db:", "--detailed-exitcode")
        assert result.returncode == 0, result.stderr
        assert 'Warning: the snapshot in dconn_state "default" in' in result.stderr
        assert "permission denied" in result.stderr and "--read-only" in result.stderr
        assert state_row(db) == before
    finally:
        db.engine.dispose()
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_environments_sharing_one_database_keep_separate_states(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """db:staging and db:prod in one database: each manages its own objects and never deletes the other's."""
    db = make_db(backend, "2.x")
    plan_and_apply(
        db,
        tmp_path,
        '[connections.s1]\nconn_type = "http"\n[connections.s2]\nconn_type = "http"\n',
        "db:staging",
    )
    plan_and_apply(db, tmp_path, '[connections.p1]\nconn_type = "http"\n', "db:prod")
    s1_only = '[connections.s1]\nconn_type = "http"\n'  # s2 removed
    with plan_doc(db, tmp_path, s1_only, "db:staging", refresh_state=False) as run_:
        text = run_.render("text")
        apply(run_)
    assert 'connection "s2" will be destroyed (no longer in the configuration)' in text
    assert '"p1"' not in text.split("dconn will perform the following actions:")[1]
    assert sorted(r["conn_id"] for r in db.rows()) == ["p1", "s1"]
    rows = {name: state_row(db, name) for name in ("staging", "prod")}
    assert json.loads(rows["staging"]["document"])["managed"] == {"connection": ["s1"]}  # type: ignore[index]
    assert json.loads(rows["prod"]["document"])["managed"] == {"connection": ["p1"]}  # type: ignore[index]
    assert rows["staging"]["lineage"] != rows["prod"]["lineage"]  # type: ignore[index]
    assert (rows["staging"]["serial"], rows["prod"]["serial"]) == (2, 1)  # type: ignore[index]


@pytest.mark.mysql
def test_state_names_differing_only_in_case_are_two_states_on_mysql(make_db: Any, tmp_path: Path) -> None:
    """MySQL's default collations ignore case; dconn's names are compared byte by byte there too."""
    db = make_db("mysql", "2.x")
    plan_and_apply(db, tmp_path, state="db:prod")
    plan_and_apply(db, tmp_path, '[connections.b]\nconn_type = "http"\n', state="db:Prod")
    assert json.loads(state_row(db, "prod")["document"])["managed"] == {"connection": ["a"]}  # type: ignore[index]
    assert json.loads(state_row(db, "Prod")["document"])["managed"] == {"connection": ["b"]}  # type: ignore[index]


@pytest.mark.postgres
def test_state_in_the_database_follows_the_database_under_another_host_name(
    make_db: Any, tmp_path: Path
) -> None:
    """A state in the database is the database's own: reached as localhost instead of 127.0.0.1, it is used."""
    db = make_db("postgres", "2.x")
    plan_and_apply(db, tmp_path)
    assert "@127.0.0.1:" in db.url
    other = AirflowDb(
        db.url.replace("@127.0.0.1:", "@localhost:"), db.engine, db.table, db.fernet_key, db.backend, db.shape
    )
    with plan_doc(other, tmp_path, DOC.replace("a.internal", "moved")) as run_:
        assert run_.read_version is not None and run_.plan.summary.change == 1
        apply(run_)
    row = state_row(db)
    # The plan recorded the new spelling (serial 2), the apply its changes (serial 3).
    assert row is not None and row["serial"] == 3
    assert json.loads(row["document"])["target"]["identity"]["host"] == "localhost"


def test_corrupt_state_row_is_one_error_and_never_replaced(make_db: Any, tmp_path: Path) -> None:
    """A hand-edited row that is not a state document is refused with what to do; it is left as it is."""
    db = make_db("sqlite", "2.x")
    plan_and_apply(db, tmp_path)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE dconn_state SET document = '{not json'")
    (tmp_path / "connections.toml").write_text(DOC)
    result = run(db, tmp_path, "plan", "--state", "db:")
    assert result.returncode == 1
    assert result.stderr.startswith('Error: state dconn_state "default" in sqlite:///')
    assert "is corrupt" in result.stderr and "then `dconn state push` a good state" in result.stderr
    assert state_row(db)["document"] == "{not json"  # type: ignore[index]


#: The table as README's "Where the state lives" gives it to a DBA who creates it by hand.
DBA_DDL = {
    "sqlite": "CREATE TABLE dconn_state (name VARCHAR(200) PRIMARY KEY, lineage VARCHAR(64) NOT NULL, "
    "serial BIGINT NOT NULL, written_at VARCHAR(40) NOT NULL, document TEXT NOT NULL)",
    "mysql": "CREATE TABLE dconn_state (name VARCHAR(200) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, "
    "lineage VARCHAR(64) NOT NULL, serial BIGINT NOT NULL, written_at VARCHAR(40) NOT NULL, "
    "document LONGTEXT NOT NULL) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin",
}
DBA_DDL["postgres"] = DBA_DDL["sqlite"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_table_created_by_a_dba_is_used(make_db: Any, tmp_path: Path, backend: str) -> None:
    """A dconn_state table made by hand with the documented DDL is used as dconn's own."""
    db = make_db(backend, "2.x")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(DBA_DDL[backend])
    plan_and_apply(db, tmp_path)
    plan_and_apply(db, tmp_path, DOC.replace("a.internal", "b.internal"))
    row = state_row(db)
    assert row is not None and row["serial"] == 2


def test_a_foreign_table_named_dconn_state_is_refused(make_db: Any, tmp_path: Path) -> None:
    """A dconn_state table dconn did not create is named, not written into."""
    db = make_db("sqlite", "2.x")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE dconn_state (id INTEGER PRIMARY KEY, payload TEXT)")
    (tmp_path / "connections.toml").write_text(DOC)
    result = run(db, tmp_path, "apply", "--state", "db:", "--auto-approve")
    assert result.returncode == 1
    assert "has a table dconn_state that dconn did not create (columns: id, payload)" in result.stderr
    assert db.rows() == []


def test_backups_go_where_told(make_db: Any, tmp_path: Path) -> None:
    """--backups DIR puts the row backups of an apply with the state in the database there."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(DOC)
    assert run(db, tmp_path, "apply", "--auto-approve", "--state", "db:").returncode == 0
    (tmp_path / "connections.toml").write_text(DOC.replace("a.internal", "b.internal"))
    result = run(db, tmp_path, "apply", "--auto-approve", "--state", "db:", "--backups", "kept")
    assert result.returncode == 0, result.stderr
    (backup,) = (tmp_path / "kept").iterdir()
    assert '"host": "a.internal"' in backup.read_text()


# --- killed inside the transaction ---------------------------------------------------------


def _first_write_seen(db: AirflowDb, admin: sa.Engine | None) -> bool:
    """Tell whether a dconn apply has written its first row, inside its still open transaction."""
    if db.backend == "sqlite":
        # The rollback journal exists from the first page written to the commit.
        return Path(db.url.removeprefix("sqlite:///") + "-journal").exists()
    assert admin is not None
    if db.backend == "postgres":
        query = (
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'connection' "
            "AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
        )
    else:
        # InnoDB's transaction table is a cache refreshed every 0.1 s, longer than this apply
        # writes: look for its writing statements in flight instead.
        database = db.url.rsplit("/", 1)[1]
        query = (
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' "
            f"AND DB = '{database}' AND LEFT(INFO, 6) IN ('UPDATE', 'INSERT', 'DELETE')"
        )
    with admin.connect() as conn:
        return bool(conn.exec_driver_sql(query).scalar())


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_inside_the_apply_leaves_neither_rows_nor_state_changed(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """An apply SIGKILLed after its first write, before its commit: the rows and the state row are as before."""
    db = make_db(backend, "2.x")
    (tmp_path / "connections.toml").write_text(document(1000))
    assert run(db, tmp_path, "apply", "--auto-approve", "--state", "db:").returncode == 0
    rows_before, state_before = db.rows(), state_row(db)
    # 1,000 updates and 4,000 creates: a transaction long enough to be caught writing.
    (tmp_path / "connections.toml").write_text(document(5000, host="moved"))
    admin = None if backend == "sqlite" else sa.create_engine(db.url)
    proc = subprocess.Popen(
        dconn_args("apply", "--auto-approve", "--state", "db:"),
        cwd=tmp_path,
        env=env_for(db, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not _first_write_seen(db, admin):
            assert proc.poll() is None, "the apply finished before it could be killed inside its transaction"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        if admin is not None:
            admin.dispose()
    assert db.rows() == rows_before
    assert state_row(db) == state_before
    plan_again = run(db, tmp_path, "plan", "--state", "db:", "--detailed-exitcode", "-q")
    assert plan_again.returncode == 2
    assert "Plan: 4000 to add, 1000 to change, 0 to destroy." in plan_again.stdout


#: Run dconn, SIGKILLing itself right after the state row was written inside the apply's transaction.
KILLED_AFTER_STAGE = """
import os, signal, sys
from declarative_conns.targets.database import state_table

stage = state_table.DatabaseState.stage

def stage_then_die(self, *args, **kwargs):
    stage(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

state_table.DatabaseState.stage = stage_then_die
sys.argv[0] = "dconn"
from declarative_conns.cli import main
main()
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("first", [True, False], ids=["first-apply", "later-apply"])
def test_sigkill_after_the_state_row_is_written_commits_nothing(
    make_db: Any, tmp_path: Path, backend: str, first: bool
) -> None:
    """Killed once both rows and state row are written but not committed: neither changed, no table made on PG/SQLite."""
    db = make_db(backend, "2.x")
    if not first:
        (tmp_path / "connections.toml").write_text(document(3))
        assert run(db, tmp_path, "apply", "--auto-approve", "--state", "db:").returncode == 0
    rows_before, state_before = db.rows(), state_row(db)
    (tmp_path / "connections.toml").write_text(document(5, host="moved"))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_STAGE, "apply", "--auto-approve", "--state", "db:"],
        cwd=tmp_path,
        env=env_for(db, tmp_path),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert db.rows() == rows_before
    assert state_row(db) == state_before
    if first:
        # The table itself is part of the transaction, except on MySQL (DDL commits at once).
        assert has_state_table(db) == (backend == "mysql")
    again = run(db, tmp_path, "apply", "--auto-approve", "--state", "db:")
    assert again.returncode == 0, again.stderr
    assert state_row(db)["serial"] == (1 if first else 2)  # type: ignore[index]


def test_store_describes_itself_and_keeps_nothing_pending(make_db: Any, tmp_path: Path) -> None:
    """The database store names its row and database; it never leaves a pending state behind."""
    db = make_db("sqlite", "2.x")
    store = workspace(db, tmp_path, "db:ops").state
    assert isinstance(store, DatabaseState)
    assert store.describe() == f'dconn_state "ops" in {db.url}'
    assert store.load() is None and store.load_pending() is None
    assert store.backups_dir == Path(".dconn/backups")
    store.target.close()


def test_load_of_a_missing_database_is_a_target_error(tmp_path: Path) -> None:
    """--state db: on a database file that does not exist says so, like any command."""
    from declarative_conns.errors import TargetError

    ws = Workspace(resolve_target(f"sqlite:///{tmp_path}/none.db", None, environ={}), "db:")
    with pytest.raises(TargetError, match="does not exist"):
        ws.state.load()


def test_state_error_for_the_wrong_session_type() -> None:
    """The database store writes only through a database session (a programming error otherwise)."""
    from declarative_conns.targets.database.state_table import _connection

    with pytest.raises(TypeError):
        _connection(object())
