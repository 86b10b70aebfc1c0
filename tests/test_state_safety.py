"""The state never lies: it follows the commit, refuses a rival writer, and plan files are authenticated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from declarative_conns.api import PlannedRun, apply, plan
from declarative_conns.config.loader import load_desired
from declarative_conns.errors import ApplyInterrupted, InputError, PlanIsStale, StateError
from declarative_conns.files.state import StateFile
from declarative_conns.saved_plans import load_plan, save_plan
from declarative_conns.targets.discovery import resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.helpers import run_dconn

DOC = '[connections.a]\nconn_type = "http"\nhost = "a.internal"\n'


def workspace(db: AirflowDb, tmp_path: Path, **kwargs: Any) -> Workspace:
    """Return a workspace on the test database with its state under tmp_path."""
    return Workspace(
        resolve_target(db.url, db.fernet_key, environ={}), tmp_path / "state" / "state.json", **kwargs
    )


def planned(db: AirflowDb, tmp_path: Path, doc: str = DOC, name: str = "c.toml", **kwargs: Any) -> PlannedRun:
    """Write a document and plan it."""
    path = tmp_path / name
    path.write_text(doc)
    return plan(load_desired(path), workspace(db, tmp_path, **kwargs.pop("ws", {})), **kwargs)


def state_document(tmp_path: Path) -> dict[str, Any]:
    """Return the state file's JSON."""
    return json.loads((tmp_path / "state" / "state.json").read_text())


def test_interrupt_after_commit_says_so_and_the_next_run_records_it(
    make_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between the commit and the state write: a true message, and the next plan adopts the apply."""
    db = make_db("sqlite", "2.x")
    run = planned(db, tmp_path)

    def interrupted(self: StateFile) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(StateFile, "promote", interrupted)
        with pytest.raises(ApplyInterrupted, match="interrupted after the apply committed"):
            apply(run)
    run.close()
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    assert (tmp_path / "state" / "state.json.pending").exists()
    again = planned(db, tmp_path)
    again.close()
    assert not again.plan.summary.has_changes
    assert any("could not record its state" in w for w in again.warnings)
    assert not (tmp_path / "state" / "state.json.pending").exists()
    assert state_document(tmp_path)["managed"] == {"connection": ["a"]}


def test_failing_state_write_after_commit_is_an_error_that_says_committed(
    make_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file that cannot be written after the commit: the error says the apply committed."""
    db = make_db("sqlite", "2.x")
    run = planned(db, tmp_path)

    def disk_full(self: StateFile) -> None:
        raise StateError("cannot write state.json: No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(StateFile, "promote", disk_full)
        with pytest.raises(StateError, match="the apply committed, but its state could not be written"):
            apply(run)
    run.close()
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    again = planned(db, tmp_path)
    again.close()
    assert state_document(tmp_path)["managed"] == {"connection": ["a"]}


def test_apply_that_never_committed_leaves_a_pending_state_the_next_run_drops(
    make_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the state was staged but before the commit: nothing changed, the pending state is dropped."""
    db = make_db("sqlite", "2.x")
    planned(db, tmp_path, "").close()  # a state to compare with
    run = planned(db, tmp_path)
    original = StateFile.stage

    def stage_then_fail(self: StateFile, *args: Any) -> None:
        original(self, *args)
        raise RuntimeError("the server went away before COMMIT")

    with monkeypatch.context() as patch:
        patch.setattr(StateFile, "stage", stage_then_fail)
        with pytest.raises(RuntimeError):
            apply(run)
    run.close()
    assert db.rows() == []
    again = planned(db, tmp_path)
    again.close()
    assert again.plan.summary.add == 1
    assert not (tmp_path / "state" / "state.json.pending").exists()
    assert state_document(tmp_path)["managed"] == {}


def test_interrupt_before_commit_changes_nothing(
    make_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while rows are written: the transaction rolls back and no state is staged."""
    from declarative_conns.targets.database.target import DatabaseSession

    db = make_db("sqlite", "2.x")
    run = planned(db, tmp_path)

    def interrupted(self: Any, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(DatabaseSession, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            apply(run)
    run.close()
    assert db.rows() == []
    assert not (tmp_path / "state" / "state.json.pending").exists()


def test_second_of_two_applies_planned_together_is_stale(make_db: Any, tmp_path: Path) -> None:
    """Two applies planned from one state: the second is refused, and the state's serials never repeat."""
    db = make_db("sqlite", "2.x")
    planned(db, tmp_path, "").close()
    first = planned(db, tmp_path, DOC, refresh_state=False)
    second = planned(
        db, tmp_path, DOC.replace("[connections.a]", "[connections.b]"), "d.toml", refresh_state=False
    )
    try:
        apply(first)
        with pytest.raises(PlanIsStale, match="was written by another dconn run since the plan was made"):
            apply(second)
    finally:
        first.close()
        second.close()
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    assert state_document(tmp_path)["serial"] == 2
    backups = sorted(p.name for p in (tmp_path / "state" / "backups").glob("*.json"))
    assert len(backups) == 1 and backups[0].endswith("-serial2.json")


def test_plan_does_not_overwrite_a_state_written_meanwhile(make_db: Any, tmp_path: Path) -> None:
    """A plan whose state was rewritten by another run keeps that state and says so."""
    db = make_db("sqlite", "2.x")
    applied = planned(db, tmp_path)
    apply(applied)
    applied.close()
    insert_raw(db.engine, db.table, [{"conn_id": "new_outside", "conn_type": "http"}])
    store = StateFile(tmp_path / "state" / "state.json")
    before = store.load()
    assert before is not None
    run = planned(db, tmp_path, refresh_state=False)
    store.save(before, (before.lineage, before.serial))  # another run writes serial 3
    from declarative_conns.api import _save_snapshot

    _save_snapshot(store, run)
    run.close()
    assert state_document(tmp_path)["serial"] == 3
    assert any("was written by another dconn run meanwhile" in w for w in run.warnings)


def test_read_only_plan_writes_nothing(make_db: Any, tmp_path: Path) -> None:
    """--read-only: no state, no state folder, no backup, with or without an earlier state."""
    db = make_db("sqlite", "2.x")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "c.toml").write_text(DOC)
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}
    done = run_dconn("plan", "-c", "c.toml", "--read-only", "--detailed-exitcode", cwd=checkout, env=env)
    assert done.returncode == 2, done.stderr
    assert "will be created" in done.stdout
    assert sorted(p.name for p in checkout.iterdir()) == ["c.toml"]
    assert run_dconn("apply", "-c", "c.toml", "--auto-approve", cwd=checkout, env=env).returncode == 0
    insert_raw(db.engine, db.table, [{"conn_id": "outside", "conn_type": "http"}])
    files = {p: p.read_bytes() for p in checkout.rglob("*") if p.is_file()}
    again = run_dconn("plan", "-c", "c.toml", "--read-only", cwd=checkout, env=env)
    assert again.returncode == 0 and "1 unmanaged" in again.stdout
    assert {p: p.read_bytes() for p in checkout.rglob("*") if p.is_file()} == files


def test_read_only_run_cannot_apply(make_db: Any, tmp_path: Path) -> None:
    """A read-only workspace plans but refuses to apply."""
    db = make_db("sqlite", "2.x")
    run = planned(db, tmp_path, ws={"read_only": True})
    try:
        with pytest.raises(InputError, match="read-only"):
            apply(run)
    finally:
        run.close()
    assert db.rows() == [] and not (tmp_path / "state").exists()


def _saved(db: AirflowDb, tmp_path: Path, doc: str) -> Path:
    """Plan a document and save the plan; return its path."""
    run = planned(db, tmp_path, doc)
    try:
        save_plan(run, tmp_path / "plan.json")
    finally:
        run.close()
    return tmp_path / "plan.json"


def test_edited_plan_file_is_refused_before_anything_runs(make_db: Any, tmp_path: Path) -> None:
    """A hand-edited host or command in a saved plan: refused, and the command never runs."""
    db = make_db("sqlite", "2.x")
    marker = tmp_path / "ran"
    doc = DOC + 'login = { from_command = ["printf", "etl"] }\n'
    path = _saved(db, tmp_path, doc)
    document = json.loads(path.read_text())
    document["objects"]["connection"]["a"]["host"] = "attacker.example"
    document["objects"]["connection"]["a"]["login"]["$ref"] = {"from_command": ["touch", str(marker)]}
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="fails its authentication check"):
        load_plan(path, workspace(db, tmp_path))
    assert not marker.exists()
    assert db.rows() == []


def test_plan_file_from_another_key_is_refused(make_db: Any, tmp_path: Path) -> None:
    """A plan saved with one Fernet key does not verify under another."""
    from cryptography.fernet import Fernet

    db = make_db("sqlite", "2.x")
    path = _saved(db, tmp_path, DOC)
    other = Workspace(
        resolve_target(db.url, Fernet.generate_key().decode(), environ={}), tmp_path / "s2.json"
    )
    with pytest.raises(InputError, match="fails its authentication check"):
        load_plan(path, other)


def test_plan_file_without_a_fernet_key_needs_the_shared_plan_key(
    make_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a Fernet key, --out refuses unless DCONN_PLAN_KEY is set, and apply checks with it."""
    db = make_db("sqlite", "2.x")
    ws = Workspace(resolve_target(db.url, "", environ={}), tmp_path / "state" / "state.json")
    (tmp_path / "c.toml").write_text(DOC)
    monkeypatch.delenv("DCONN_PLAN_KEY", raising=False)
    run = plan(load_desired(tmp_path / "c.toml"), ws)
    with pytest.raises(InputError, match="set DCONN_PLAN_KEY"):
        save_plan(run, tmp_path / "plan.json")
    monkeypatch.setenv("DCONN_PLAN_KEY", "shared-secret-of-ci")
    save_plan(run, tmp_path / "plan.json")
    run.close()
    applied = load_plan(tmp_path / "plan.json", ws)
    apply(applied)
    applied.close()
    assert [r["conn_id"] for r in db.rows()] == ["a"]
    monkeypatch.setenv("DCONN_PLAN_KEY", "another")
    with pytest.raises(InputError, match="fails its authentication check"):
        load_plan(tmp_path / "plan.json", ws)


def test_a_stored_row_nested_too_deep_is_left_alone_and_named(make_db: Any, tmp_path: Path) -> None:
    """An extra nested 600 levels deep (Airflow accepts it) is named; every other connection still plans."""
    db = make_db("sqlite", "2.x")
    deep: Any = 1
    for _ in range(600):
        deep = {"k": deep}
    insert_raw(db.engine, db.table, [{"conn_id": "deep", "conn_type": "http", "extra": json.dumps(deep)}])
    doc = DOC + '\n[connections.deep]\nconn_type = "http"\n'
    run = planned(db, tmp_path, doc)
    try:
        assert [(op.address.key) for op in run.plan.operations] == ["a"]
        assert any('connection "deep" (row 1) nests deeper than dconn reads' in w for w in run.warnings)
    finally:
        run.close()
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}
    exported = run_dconn("export", cwd=tmp_path, env=env)
    assert exported.returncode == 0 and "nests deeper than dconn reads" in exported.stderr


@pytest.mark.parametrize(
    ("backend", "field", "value", "message"),
    [
        ("sqlite", "host", "h" * 100_000, "field host: 100000 characters, the column holds 500"),
        ("mysql", "login", "l" * 70_000, "field login: 70000 characters, the column holds 65535"),
        ("mysql", "password", "p" * 10_000_000, "field password:"),
        ("postgres", "host", "a\\u0000b", "field host: holds a NUL character"),
    ],
)
def test_plan_fails_where_apply_would(
    make_db: Any, tmp_path: Path, backend: str, field: str, value: str, message: str
) -> None:
    """Column limits and NUL bytes are errors at plan time (exit 1), before any apply."""
    db = make_db(backend, "2.x")
    (tmp_path / "c.toml").write_text(f'[connections.a]\nconn_type = "http"\n{field} = "{value}"\n')
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}
    result = run_dconn("plan", "-c", "c.toml", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert message in result.stderr
    assert value[:100] not in result.stderr


def test_unknown_team_is_a_plan_error(make_db: Any, tmp_path: Path) -> None:
    """A team_name no team has is refused by `plan`, naming the team."""
    db = make_db("sqlite", "3.2")
    (tmp_path / "c.toml").write_text('[connections.a]\nconn_type = "http"\nteam_name = "nobody"\n')
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key}
    result = run_dconn("plan", "-c", "c.toml", cwd=tmp_path, env=env)
    assert result.returncode == 1 and 'there is no team "nobody"' in result.stderr
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM connection")).scalar() == 0
