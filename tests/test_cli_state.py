"""`dconn state pull` and `dconn state push`: the state moves between a file and the database, never to another target."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AirflowDb
from tests.test_safety import BACKENDS, run
from tests.test_state_table import has_state_table, state_row

DOC = '[connections.a]\nconn_type = "http"\nhost = "a.internal"\npassword = "pw-a"\n'
TWO = DOC + '[connections.b]\nconn_type = "http"\n'


def apply_doc(db: AirflowDb, cwd: Path, doc: str, state: str) -> None:
    """Apply a document with the state where `state` says."""
    (cwd / "connections.toml").write_text(doc)
    result = run(db, cwd, "apply", "--auto-approve", "--state", state)
    assert result.returncode == 0, result.stderr


def test_pull_prints_the_state_file_exactly(make_db: Any, tmp_path: Path) -> None:
    """`state pull` prints the state file's document; -o writes the same text privately (0600).

    Only `before_apply` is left out: what the rows were before the last apply, which serves to
    settle an interrupted apply and is no longer part of the state once it is settled.
    """
    db = make_db("sqlite", "2.x")
    apply_doc(db, tmp_path, DOC, ".dconn/state.json")
    document = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    assert document.pop("before_apply") == {"connection": {"a": []}}
    text = json.dumps(document, indent=1)
    pulled = run(db, tmp_path, "state", "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout) == document
    assert pulled.stdout.replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    written = run(db, tmp_path, "state", "pull", "-o", "copy.json")
    assert written.returncode == 0 and written.stdout == ""
    assert (tmp_path / "copy.json").read_text() == pulled.stdout
    assert stat.S_IMODE((tmp_path / "copy.json").stat().st_mode) == 0o600
    assert "to copy.json" in written.stderr and "serial 1" in written.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_push_moves_a_file_state_into_the_database_and_back(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """File -> db: -> file keeps the lineage and what dconn manages; each push is the store's next serial."""
    db = make_db(backend, "2.x")
    apply_doc(db, tmp_path, TWO, ".dconn/state.json")
    file_state = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    pushed = run(db, tmp_path, "state", "push", ".dconn/state.json", "--state", "db:")
    assert pushed.returncode == 0, pushed.stderr
    assert 'Pushed .dconn/state.json to dconn_state "default" in' in pushed.stderr
    row = state_row(db)
    assert row is not None and (row["lineage"], row["serial"]) == (file_state["lineage"], 2)
    assert json.loads(row["document"])["managed"] == {"connection": ["a", "b"]}
    # dconn now knows from the database what it manages: dropping b destroys it.
    (tmp_path / "connections.toml").write_text(DOC)
    dropped = run(db, tmp_path, "apply", "--auto-approve", "--state", "db:")
    assert dropped.returncode == 0, dropped.stderr
    assert 'connection "b" will be destroyed (no longer in the configuration)' in dropped.stdout
    pulled = run(db, tmp_path, "state", "pull", "--state", "db:", "-o", "from-db.json")
    assert pulled.returncode == 0, pulled.stderr
    back = run(db, tmp_path, "state", "push", "from-db.json")
    assert back.returncode == 0, back.stderr
    file_state = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    assert (file_state["lineage"], file_state["serial"]) == (row["lineage"], 4)
    assert file_state["managed"] == {"connection": ["a"]}
    assert run(db, tmp_path, "plan", "--detailed-exitcode").returncode == 0


def test_push_refuses_another_lineage_unless_forced(make_db: Any, tmp_path: Path) -> None:
    """A state of another lineage does not replace the database's without --force; with it, it does."""
    db = make_db("sqlite", "2.x")
    apply_doc(db, tmp_path, DOC, "db:")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "connections.toml").write_text(DOC)
    assert run(db, tmp_path / "other", "plan").returncode == 0  # a first run: a state of its own
    other = json.loads((tmp_path / "other" / ".dconn" / "state.json").read_text())
    before = state_row(db)
    refused = run(db, tmp_path, "state", "push", "other/.dconn/state.json", "--state", "db:")
    assert refused.returncode == 1
    assert refused.stderr == (
        f'Error: dconn_state "default" in {db.url} holds another state (lineage {before["lineage"]}, '  # type: ignore[index]
        f"not {other['lineage']}); nothing was written: pass --force to replace it\n"
    )
    assert state_row(db) == before
    forced = run(db, tmp_path, "state", "push", "other/.dconn/state.json", "--state", "db:", "--force")
    assert forced.returncode == 0, forced.stderr
    row = state_row(db)
    assert row is not None and (row["lineage"], row["serial"]) == (other["lineage"], 2)


def test_push_refuses_an_older_serial_unless_forced(make_db: Any, tmp_path: Path) -> None:
    """A state older than the database's (same lineage, lower serial) is refused without --force."""
    db = make_db("sqlite", "2.x")
    apply_doc(db, tmp_path, DOC, "db:")
    assert run(db, tmp_path, "state", "pull", "--state", "db:", "-o", "old.json").returncode == 0
    apply_doc(db, tmp_path, TWO, "db:")
    refused = run(db, tmp_path, "state", "push", "old.json", "--state", "db:")
    assert refused.returncode == 1
    assert (
        "holds a newer serial of this state (2, not 1); nothing was written: pass --force" in refused.stderr
    )
    forced = run(db, tmp_path, "state", "push", "old.json", "--state", "db:", "--force")
    assert forced.returncode == 0, forced.stderr
    row = state_row(db)
    # Serials never go back: a run that read serial 2 cannot write over the pushed state.
    assert row is not None and row["serial"] == 3
    assert json.loads(row["document"])["managed"] == {"connection": ["a"]}


def test_push_never_moves_a_state_to_another_target(make_db: Any, tmp_path: Path) -> None:
    """A state recorded for one database is refused by another, even with --force; nothing is created."""
    first, second = make_db("sqlite", "2.x"), make_db("sqlite", "2.x")
    apply_doc(first, tmp_path, DOC, ".dconn/state.json")
    for extra in ((), ("--force",)):
        result = run(second, tmp_path, "state", "push", ".dconn/state.json", "--state", "db:", *extra)
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"Error: the state was recorded for {first.url}, "
            f"not for {second.url}: a state is never moved to another target"
        )
    assert not has_state_table(second)


def test_pull_without_a_state_is_an_error(make_db: Any, tmp_path: Path) -> None:
    """No state yet (no table, no file) is one error line saying that the first apply writes it."""
    db = make_db("sqlite", "2.x")
    in_db = run(db, tmp_path, "state", "pull", "--state", "db:staging")
    assert in_db.returncode == 1 and in_db.stdout == ""
    assert in_db.stderr == (
        f'Error: there is no state in dconn_state "staging" in {db.url} yet: the first dconn apply writes it\n'
    )
    in_file = run(db, tmp_path, "state", "pull")
    assert (
        in_file.stderr
        == "Error: there is no state in .dconn/state.json yet: the first dconn apply writes it\n"
    )
    assert not has_state_table(db)


def test_push_of_a_file_that_is_not_a_state_is_refused(make_db: Any, tmp_path: Path) -> None:
    """A missing file, or one that is not a state document, is one error line; nothing is written."""
    db = make_db("sqlite", "2.x")
    missing = run(db, tmp_path, "state", "push", "none.json", "--state", "db:")
    assert missing.returncode == 1 and missing.stderr == "Error: none.json: no such state file\n"
    (tmp_path / "plan.json").write_text('{"format_version": 2, "lineage": "x"}')
    wrong = run(db, tmp_path, "state", "push", "plan.json", "--state", "db:")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("Error: state file plan.json is corrupt or not a dconn state file")
    assert "check that it is a dconn state document" in wrong.stderr
    assert not has_state_table(db)


def test_state_commands_are_in_the_help(make_db: Any, tmp_path: Path) -> None:
    """`dconn --help` lists `state`; `dconn state --help` lists pull and push."""
    db = make_db("sqlite", "2.x")
    assert "state" in run(db, tmp_path, "--help").stdout
    help_text = run(db, tmp_path, "state", "--help").stdout
    assert "pull" in help_text and "push" in help_text
    assert "--state" in run(db, tmp_path, "state", "push", "--help").stdout
