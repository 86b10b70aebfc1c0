"""plan and apply through the library on SQLite tables of every Airflow generation."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from declarative_conns.api import PlannedRun, apply, plan
from declarative_conns.config.loader import load_desired
from declarative_conns.errors import DecryptionError, PlanIsStale, TargetError, ValidationFailed
from declarative_conns.targets.discovery import resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.helpers import actions

CANARY = "canary-pw-7f3a"
DOC = f"""
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
login = "etl"
password = "{CANARY}"
port = 5432
extra = {{ sslmode = "require", api_token = "{CANARY}-tok", n = [1, 2.5, true, "s"] }}
"""


def workspace(db: AirflowDb, tmp_path: Path, key: str | None = "default") -> Workspace:
    """Return a workspace for a test database (its own key unless told)."""
    fernet = db.fernet_key if key == "default" else key
    return Workspace(resolve_target(db.url, fernet, environ={}), tmp_path / "state" / "state.json")


def run_plan(tmp_path: Path, db: AirflowDb, doc: str = DOC, **kwargs: Any) -> PlannedRun:
    """Write the document and plan it against the database."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "connections.toml"
    path.write_text(doc, encoding="utf-8")
    return plan(load_desired(path), kwargs.pop("ws", None) or workspace(db, tmp_path), **kwargs)


def plan_and_apply(tmp_path: Path, db: AirflowDb, doc: str = DOC, **kwargs: Any) -> PlannedRun:
    """Plan, apply and close."""
    run = run_plan(tmp_path, db, doc, **kwargs)
    try:
        apply(run)
    finally:
        run.close()
    return run


@pytest.mark.parametrize("shape", ["1.10", "2.x", "3.1", "3.2"])
def test_written_rows_read_back_as_airflow_reads_them(make_db: Any, tmp_path: Path, shape: str) -> None:
    """Passwords and extra are Fernet tokens with flags set; decrypting gives the declared values."""
    db = make_db("sqlite", shape)
    plan_and_apply(tmp_path, db)
    (stored,) = db.rows()
    fernet = Fernet(db.fernet_key.encode())
    assert stored["is_encrypted"] and stored["is_extra_encrypted"]
    assert stored["password"].startswith("gAAAAA")
    assert fernet.decrypt(stored["password"].encode()).decode() == CANARY
    extra = json.loads(fernet.decrypt(stored["extra"].encode()).decode())
    assert extra == {"sslmode": "require", "api_token": f"{CANARY}-tok", "n": [1, 2.5, True, "s"]}
    assert (stored["conn_id"], stored["conn_type"], stored["host"], stored["port"]) == (
        "warehouse",
        "postgres",
        "wh.internal",
        5432,
    )
    again = run_plan(tmp_path, db)
    assert not again.plan.summary.has_changes
    again.close()


def test_no_key_stores_clear_text_and_warns(make_db: Any, tmp_path: Path) -> None:
    """Without a Fernet key values are stored in clear with flags false, and dconn warns."""
    db = make_db("sqlite", "2.x")
    run = plan_and_apply(tmp_path, db, ws=workspace(db, tmp_path, key=None))
    assert any("no Fernet key" in w for w in run.warnings)
    (stored,) = db.rows()
    assert stored["password"] == CANARY and not stored["is_encrypted"] and not stored["is_extra_encrypted"]
    assert json.loads(stored["extra"])["sslmode"] == "require"


def test_key_ring_decrypts_with_any_key_and_encrypts_with_first(make_db: Any, tmp_path: Path) -> None:
    """Rows under an older key decrypt and are reported; new writes use the first key."""
    db = make_db("sqlite", "2.x")
    old = Fernet.generate_key().decode()
    insert_raw(
        db.engine,
        db.table,
        [
            {
                "conn_id": "legacy",
                "conn_type": "http",
                "password": Fernet(old.encode()).encrypt(b"x").decode(),
                "is_encrypted": True,
            }
        ],
    )
    ws = workspace(db, tmp_path, key=f"{db.fernet_key},{old}")
    run = plan_and_apply(tmp_path, db, ws=ws)
    assert tuple(a.key for a in run.plan.old_key) == ("legacy",)
    new = next(r for r in db.rows() if r["conn_id"] == "warehouse")
    Fernet(db.fernet_key.encode()).decrypt(new["password"].encode())


def test_wrong_key_is_an_error_naming_the_connection(make_db: Any, tmp_path: Path) -> None:
    """A row no key decrypts stops the plan, names the conn_id, and writes no state."""
    db = make_db("sqlite", "2.x")
    other = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": "foreign", "conn_type": "http", "password": other, "is_encrypted": True}],
    )
    with pytest.raises(
        DecryptionError,
        match=r"1 connection row cannot be decrypted \(no key of the Fernet key ring decrypts them\): foreign \(row 1\)",
    ):
        run_plan(tmp_path, db)
    assert not (tmp_path / "state" / "state.json").exists()


def test_configuration_errors_come_before_an_undecryptable_row(make_db: Any, tmp_path: Path) -> None:
    """Problems checked first when the rows were decrypted last still win over a wrong key.

    The rows are read and decrypted while the configuration may still be loading (the CLI's
    child process); their errors wait for their turn: a missing column, then a secret.
    """
    from declarative_conns.errors import SecretError

    db = make_db("sqlite", "1.10")
    other = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": "foreign", "conn_type": "http", "password": other, "is_encrypted": True}],
    )
    unset = "DCONN_TEST_UNSET_5c1e"
    missing = f'[connections.svc]\nconn_type = "http"\npassword = {{ from_env = "{unset}" }}\n'
    with pytest.raises(ValidationFailed, match="has no description column"):
        run_plan(tmp_path, db, missing + 'description = "d"\n')
    with pytest.raises(SecretError, match=f"environment variable {unset}"):
        run_plan(tmp_path, db, missing)
    with pytest.raises(DecryptionError):
        run_plan(tmp_path, db, '[connections.svc]\nconn_type = "http"\n')
    assert not (tmp_path / "state" / "state.json").exists()


def test_new_row_ids_are_recorded(make_db: Any, tmp_path: Path) -> None:
    """The state's snapshot records each created row's id, across a gap in the ids and many batches."""
    db = make_db("sqlite", "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": f"old{i}", "conn_type": "http"} for i in range(3)])
    with db.engine.begin() as conn:  # a gap, so ids are not simply 1..n
        conn.execute(db.table.delete().where(db.table.c.conn_id == "old1"))
    doc = "".join(f'[connections.n{i}]\nconn_type = "http"\nhost = "h{i}"\n' for i in range(1200))
    plan_and_apply(tmp_path, db, doc)
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    recorded = {r["key"]: r["id"] for r in state["snapshot"]["objects"]}
    assert recorded == {r["conn_id"]: r["id"] for r in db.rows()}
    assert len(recorded) == 1202


def test_legacy_duplicates_are_removed_on_110(make_db: Any, tmp_path: Path) -> None:
    """On a 1.10 table, duplicate conn_ids (declared or not) collapse to the lowest id."""
    db = make_db("sqlite", "1.10")
    rows = [
        {"conn_id": c, "conn_type": "http", "host": h}
        for c, h in [("warehouse", "a"), ("x", "1"), ("warehouse", "b"), ("x", "2")]
    ]
    insert_raw(db.engine, db.table, rows)
    run = plan_and_apply(tmp_path, db)
    assert run.plan.summary.destroy == 2 and run.plan.summary.duplicates == 2
    assert [(r["id"], r["conn_id"]) for r in db.rows()] == [(1, "warehouse"), (2, "x")]


def test_undeclared_field_is_null_after_apply(make_db: Any, tmp_path: Path) -> None:
    """A field the TOML does not declare is NULL after apply."""
    db = make_db("sqlite", "2.x")
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": "warehouse", "conn_type": "postgres", "schema": "old", "description": "d"}],
    )
    plan_and_apply(tmp_path, db)
    (stored,) = db.rows()
    assert stored["schema"] is None and stored["description"] is None


def test_description_on_110_is_an_error(make_db: Any, tmp_path: Path) -> None:
    """Declaring description for a table without the column is an error at plan time."""
    db = make_db("sqlite", "1.10")
    with pytest.raises(ValidationFailed, match="has no description column"):
        run_plan(tmp_path, db, '[connections.a]\nconn_type = "x"\ndescription = "d"\n')


def test_team_name_needs_32(make_db: Any, tmp_path: Path) -> None:
    """team_name is written on a 3.2 table and refused on 2.x."""
    db = make_db("sqlite", "3.2")
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO team (id, name) VALUES (:i, 'data')"), {"i": "0" * 32})
    plan_and_apply(tmp_path, db, '[connections.a]\nconn_type = "x"\nteam_name = "data"\n')
    assert db.rows()[0]["team_name"] == "data"
    with pytest.raises(ValidationFailed, match="has no team_name column"):
        run_plan(
            tmp_path / "other",
            make_db("sqlite", "2.x"),
            '[connections.a]\nconn_type = "x"\nteam_name = "data"\n',
        )


def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    """A missing SQLite file is an error and is never created."""
    path = tmp_path / "nope.db"
    (tmp_path / "c.toml").write_text('[connections.a]\nconn_type = "x"\n')
    ws = Workspace(resolve_target(f"sqlite:///{path}", None, environ={}), tmp_path / "s.json")
    with pytest.raises(TargetError, match="does not exist; dconn never creates an Airflow database"):
        plan(load_desired(tmp_path / "c.toml"), ws)
    assert not path.exists()


def test_database_without_connection_table(tmp_path: Path) -> None:
    """A database without a connection table is an error that says so."""
    path = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    (tmp_path / "c.toml").write_text('[connections.a]\nconn_type = "x"\n')
    ws = Workspace(resolve_target(f"sqlite:///{path}", None, environ={}), tmp_path / "s.json")
    with pytest.raises(TargetError, match="has no connection table"):
        plan(load_desired(tmp_path / "c.toml"), ws)


def test_rows_changed_between_plan_and_apply_make_it_stale(make_db: Any, tmp_path: Path) -> None:
    """A row created meanwhile makes apply refuse, roll back and change nothing."""
    db = make_db("sqlite", "2.x")
    run = run_plan(tmp_path, db)
    insert_raw(db.engine, db.table, [{"conn_id": "warehouse", "conn_type": "http"}])
    before = db.rows()
    with pytest.raises(PlanIsStale, match="the plan is stale"):
        apply(run)
    run.close()
    assert db.rows() == before


def test_state_file_records_without_secrets(make_db: Any, tmp_path: Path) -> None:
    """The state is 0600, its serial grows, the previous is kept, and no secret is in it."""
    db = make_db("sqlite", "2.x")
    plan_and_apply(tmp_path, db)
    state_path = tmp_path / "state" / "state.json"
    state = json.loads(state_path.read_text())
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert state["serial"] == 2 and state["managed"] == {"connection": ["warehouse"]}
    assert (tmp_path / "state" / "state.json.backup").exists()
    assert state["applied"]["connection"]["warehouse"]["password"].keys() == {"$digest"}
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert CANARY not in text and "gAAAAA" not in text, path


def test_drift_and_removal_follow_the_state(make_db: Any, tmp_path: Path) -> None:
    """A host edited in the database shows as changed outside dconn; a removed declaration deletes."""
    db = make_db("sqlite", "2.x")
    plan_and_apply(tmp_path, db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE connection SET host = 'edited-in-ui'"))
    run = run_plan(tmp_path, db)
    (drift,) = run.plan.drift
    assert [(c.path, c.before, c.after) for c in drift.changes] == [
        (("host",), "wh.internal", "edited-in-ui")
    ]
    run.close()
    run = run_plan(tmp_path, db, '[connections.other]\nconn_type = "x"\n')
    assert actions(run.plan) == [
        ("create", "other", "declared"),
        ("delete", "warehouse", "removed"),
    ]
    run.close()


def test_corrupt_state_is_an_error_and_kept(make_db: Any, tmp_path: Path) -> None:
    """A corrupt state file stops the run and is not replaced."""
    from declarative_conns.errors import StateError

    db = make_db("sqlite", "2.x")
    state_path = tmp_path / "state" / "state.json"
    state_path.parent.mkdir()
    state_path.write_text("{not json")
    with pytest.raises(StateError, match="is corrupt"):
        run_plan(tmp_path, db)
    assert state_path.read_text() == "{not json"


def test_state_of_another_database_is_refused(make_db: Any, tmp_path: Path) -> None:
    """A state file recorded for another target is an error, not silently reused."""
    from declarative_conns.errors import StateError

    plan_and_apply(tmp_path, make_db("sqlite", "2.x"))
    with pytest.raises(StateError, match="belongs to sqlite:///"):
        run_plan(tmp_path, make_db("sqlite", "2.x"))


def test_apply_writes_backup_of_changed_rows(make_db: Any, tmp_path: Path) -> None:
    """Before commit, changed and deleted rows are saved as stored (ciphertext) under backups/."""
    db = make_db("sqlite", "2.x")
    token = Fernet(db.fernet_key.encode()).encrypt(b"old-secret").decode()
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": "warehouse", "conn_type": "http", "password": token, "is_encrypted": True}],
    )
    plan_and_apply(tmp_path, db)
    (backup,) = (tmp_path / "state" / "backups").iterdir()
    saved = json.loads(backup.read_text())
    assert saved["rows"][0]["password"] == token
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_apply_without_changes_adopts_the_connections(make_db: Any, tmp_path: Path) -> None:
    """An apply with nothing to change still records the declared connections as managed."""
    db = make_db("sqlite", "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": "adopted", "conn_type": "http", "host": "h"}])
    doc = '[connections.adopted]\nconn_type = "http"\nhost = "h"\n'
    run = plan_and_apply(tmp_path, db, doc)
    assert not run.plan.summary.has_changes
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["managed"] == {"connection": ["adopted"]} and state["applied"]["connection"]["adopted"] == {
        "conn_type": "http",
        "host": "h",
    }
    removed = run_plan(tmp_path, db, '[connections.other]\nconn_type = "http"\n')
    assert [a for a in actions(removed.plan) if a[0] == "delete"] == [("delete", "adopted", "removed")]
    removed.close()


def test_saved_first_plan_applies_in_a_fresh_checkout(make_db: Any, tmp_path: Path) -> None:
    """A plan saved on a first run applies where no state file exists (a fresh CI job)."""
    from declarative_conns.saved_plans import load_plan, save_plan

    db = make_db("sqlite", "2.x")
    run = run_plan(tmp_path, db)
    save_plan(run, tmp_path / "saved.plan")
    run.close()
    fresh = Workspace(
        resolve_target(db.url, db.fernet_key, environ={}), tmp_path / "elsewhere" / "state.json"
    )
    saved = load_plan(tmp_path / "saved.plan", fresh)
    apply(saved)
    saved.close()
    assert [r["conn_id"] for r in db.rows()] == ["warehouse"]
