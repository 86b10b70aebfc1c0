"""Apply cannot lose or corrupt a connection: locks, races, kills, rejected values, restore."""

from __future__ import annotations

import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from declarative_conns.targets.database.target import MYSQL_LOCK_NAME, PG_LOCK_KEY
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb

BACKENDS = ["sqlite", "postgres", "mysql"]


def document(n: int, *, start: int = 0, host: str = "h") -> str:
    """Return a TOML document of n connections named c00000.. with a secret each."""
    parts = ["[settings]\nprune = true\n"]
    for i in range(start, start + n):
        parts.append(
            f'[connections.c{i:05d}]\nconn_type = "postgres"\nhost = "{host}{i}.internal"\n'
            f'login = "etl"\npassword = "pw-{i}"\nport = 5432\nextra = {{ sslmode = "require" }}\n'
        )
    return "".join(parts)


def env_for(db: AirflowDb, cwd: Path) -> dict[str, str]:
    """Return a clean environment pointing dconn at a test database."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DCONN_"))}
    return {
        **base,
        "AIRFLOW_HOME": str(cwd / "af"),
        "DCONN_DB_URL": db.url,
        "DCONN_FERNET_KEY": db.fernet_key,
    }


def dconn_args(*args: str) -> list[str]:
    """Return the argv running dconn with this interpreter."""
    return [sys.executable, "-m", "declarative_conns", *args]


def run(db: AirflowDb, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run dconn to completion."""
    return subprocess.run(
        dconn_args(*args),
        cwd=cwd,
        env=env_for(db, cwd),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_lock_wait_is_bounded_and_clear(make_db: Any, tmp_path: Path, backend: str) -> None:
    """While another writer holds the lock, apply waits --lock-timeout, then fails clearly, changing nothing."""
    db = make_db(backend, "2.x")
    (tmp_path / "connections.toml").write_text(document(3))
    holder = sa.create_engine(db.url).connect()
    if backend == "sqlite":
        raw = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
    elif backend == "postgres":
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
    else:
        holder.execute(sa.text(f"SELECT GET_LOCK({MYSQL_LOCK_NAME}, 0)"))
    try:
        started = time.monotonic()
        result = run(db, tmp_path, "apply", "--auto-approve", "--lock-timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        if backend == "sqlite":
            raw.rollback()
            raw.close()
        holder.close()
    assert result.returncode == 1, result.stderr
    assert (
        "holds the lock on" in result.stderr
        and "waited 1 s (--lock-timeout); nothing was changed" in result.stderr
    )
    assert elapsed < 30
    assert db.rows() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_applies_never_duplicate(make_db: Any, tmp_path: Path, backend: str) -> None:
    """Two applies at once: one writes, the other finds nothing to do or a stale plan; no duplicates."""
    db = make_db(backend, "2.x-nounique")
    (tmp_path / "connections.toml").write_text(document(300))
    procs = []
    for i in range(2):
        state = tmp_path / f"state{i}" / "state.json"
        procs.append(
            subprocess.Popen(
                dconn_args("apply", "--auto-approve", "--state", str(state)),
                cwd=tmp_path,
                env=env_for(db, tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]  # read before waiting: plans fill a pipe
    outcomes = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes
    for code, _, err in outcomes:
        assert code == 0 or "the plan is stale" in err, err
    assert sum("Apply complete!" in out for _, out, _ in outcomes) == 1
    conn_ids = [r["conn_id"] for r in db.rows()]
    assert len(conn_ids) == 300 and len(set(conn_ids)) == 300


def _in_transaction(db: AirflowDb, admin: sa.Engine | None) -> bool:
    """Tell whether a dconn apply is inside its write transaction right now."""
    if db.backend == "sqlite":
        return Path(db.url.removeprefix("sqlite:///") + "-journal").exists()
    assert admin is not None
    with admin.connect() as conn:
        return bool(
            conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar()
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_during_a_20000_row_apply_leaves_all_or_nothing(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """A process killed inside its transaction leaves no row of a 20,000-row apply, and the state intact."""
    db = make_db(backend, "2.x")
    (tmp_path / "connections.toml").write_text(document(20_000))
    admin = sa.create_engine(db.url) if backend == "postgres" else None
    proc = subprocess.Popen(
        dconn_args("apply", "--auto-approve"),
        cwd=tmp_path,
        env=env_for(db, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not _in_transaction(db, admin):
        assert proc.poll() is None, "apply finished before it could be killed mid-transaction"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    # SQLite's journal exists from the first write to the commit: about 0.2 s for 20,000 rows on
    # a fast machine. Kill a moment after the writes began, well inside that window.
    time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if admin is not None:
        admin.dispose()
    assert db.rows() == []
    state = tmp_path / ".dconn" / "state.json"
    assert not state.exists() or json.loads(state.read_text())["managed"] == {}
    plan = run(db, tmp_path, "plan", "--detailed-exitcode", "-q")
    assert plan.returncode == 2 and "Plan: 20000 to add, 0 to change, 0 to destroy." in plan.stdout


REJECT_TRIGGER = {
    "postgres": [
        """CREATE FUNCTION reject_host() RETURNS trigger AS $$
           BEGIN IF NEW.host = 'h1550.internal' THEN RAISE EXCEPTION 'host rejected by policy'; END IF;
           RETURN NEW; END $$ LANGUAGE plpgsql""",
        "CREATE TRIGGER reject_host BEFORE INSERT ON connection FOR EACH ROW EXECUTE FUNCTION reject_host()",
    ],
    "mysql": [
        """CREATE TRIGGER reject_host BEFORE INSERT ON connection FOR EACH ROW
           BEGIN IF NEW.host = 'h1550.internal' THEN
           SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'host rejected by policy'; END IF; END""",
    ],
}


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_value_rejected_mid_apply_rolls_everything_back(make_db: Any, tmp_path: Path, backend: str) -> None:
    """A row the database rejects halfway through 2,000 inserts (after deletes and updates) changes nothing."""
    db = make_db(backend, "2.x")
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": f"c{i:05d}", "conn_type": "postgres", "host": "old"} for i in range(0, 2000, 100)]
        + [{"conn_id": "undeclared", "conn_type": "ftp"}],
    )
    with db.engine.begin() as conn:
        for statement in REJECT_TRIGGER[backend]:
            conn.exec_driver_sql(statement)
    before = db.rows()
    (tmp_path / "connections.toml").write_text(document(2000))
    result = run(db, tmp_path, "apply", "--auto-approve")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "host rejected by policy" in result.stderr
    assert "nothing was changed" in result.stderr
    assert db.rows() == before
    state = (
        json.loads((tmp_path / ".dconn" / "state.json").read_text())
        if (tmp_path / ".dconn" / "state.json").exists()
        else None
    )
    assert state is None or state["managed"] == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_undoes_an_apply_exactly(make_db: Any, tmp_path: Path, backend: str) -> None:
    """dconn restore of an apply's backup gives back the table exactly as it was before the apply."""
    db = make_db(backend, "2.x-nounique")
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "c00000", "conn_type": "postgres", "host": "old", "password": "clear-pw"},
            {"conn_id": "c00000", "conn_type": "postgres", "host": "dupe"},
            {"conn_id": "gone", "conn_type": "ftp", "extra": '{"a": 1}'},
        ],
    )
    before = db.rows()
    (tmp_path / "connections.toml").write_text(document(3))
    assert run(db, tmp_path, "apply", "--auto-approve").returncode == 0
    assert db.rows() != before
    (backup,) = (tmp_path / ".dconn" / "backups").iterdir()
    assert "clear-pw" not in backup.read_text()
    restored = run(db, tmp_path, "restore", str(backup), "--auto-approve")
    assert restored.returncode == 0, restored.stderr
    assert "was a secret stored in clear, so the backup holds only a digest" in restored.stdout
    after = db.rows()
    assert [r["id"] for r in after] == [r["id"] for r in before]
    for old, new in zip(before, after, strict=True):
        # A clear-text password is never kept in a backup, so row 1's stays as the apply left it,
        # with the flag that says it is encrypted (the old "in clear" over a token would corrupt it).
        kept = {"password": new["password"], "is_encrypted": new["is_encrypted"]}
        expected = {**old, **kept} if old["id"] == 1 else old
        assert new["is_encrypted"] == (new["password"] or "").startswith("gAAAAA")
        assert new == expected


def test_restore_refuses_another_database(make_db: Any, tmp_path: Path) -> None:
    """A backup taken from one database is not restored into another."""
    first, second = make_db("sqlite", "2.x"), make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(document(1))
    insert_raw(first.engine, first.table, [{"conn_id": "c00000", "conn_type": "http"}])
    assert run(first, tmp_path, "apply", "--auto-approve").returncode == 0
    (backup,) = (tmp_path / ".dconn" / "backups").iterdir()
    result = run(second, tmp_path, "restore", str(backup), "--auto-approve")
    assert result.returncode == 1 and "was taken from sqlite:///" in result.stderr


def test_unwritable_state_location_fails_before_the_database(make_db: Any, tmp_path: Path) -> None:
    """A state path that cannot be written is an error before any database access."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(document(1))
    (tmp_path / "not-a-folder").write_text("")
    result = run(db, tmp_path, "apply", "--auto-approve", "--state", "not-a-folder/state.json")
    assert result.returncode == 1 and "cannot write the state file" in result.stderr
    assert db.rows() == []


def test_progress_shows_on_a_terminal_only(make_db: Any, tmp_path: Path) -> None:
    """A long apply draws progress on a terminal's stderr and prints nothing extra when piped."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text(document(3000))
    piped = run(db, tmp_path, "apply", "--auto-approve")
    assert piped.returncode == 0 and "Applying" not in piped.stderr
    second = make_db("sqlite", "2.x")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        dconn_args("apply", "--auto-approve", "--state", "s2/state.json"),
        cwd=tmp_path,
        env={**env_for(second, tmp_path), "TERM": "xterm"},
        stdout=subprocess.DEVNULL,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0
    assert b"Applying" in seen and b"3000/3000" in seen
