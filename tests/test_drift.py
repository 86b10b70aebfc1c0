"""Drift detection for nightly CI: changed outside dconn, ownership, prune/ignore, first run, noise.

Through the library on SQLite (and, for the noise cases, PostgreSQL and MariaDB), and through
the `dconn` command as a CI job runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from declarative_conns.api import PlannedRun, apply, plan
from declarative_conns.config.loader import load_desired
from declarative_conns.core.model import Address
from declarative_conns.errors import StateError
from declarative_conns.output.report import action_name, reason_name
from declarative_conns.targets.discovery import resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.helpers import run_dconn

CANARY = "canary-drift-51c7"
DOC = f"""
[settings]
ignore = ["*_default"]

[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
schema = "analytics"
login = "etl"
password = "{CANARY}"
port = 5432
extra = {{ sslmode = "require", api_token = "{CANARY}-tok", hosts = ["a", "b"] }}

[connections.slack]
conn_type = "http"
host = "hooks.slack.com"
"""
ROOT = Path(__file__).resolve().parent.parent


class Project:
    """A folder with a configuration and a state file, planned and applied against one database."""

    def __init__(self, db: AirflowDb, folder: Path, key: str | None = None) -> None:
        self.db = db
        self.folder = folder
        self.key = db.fernet_key if key is None else key
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        """Return the state file's path."""
        return self.folder / ".dconn" / "state.json"

    def plan(self, doc: str = DOC, key: str | None = None) -> PlannedRun:
        """Write the configuration and plan it; the caller closes the run."""
        (self.folder / "connections.toml").write_text(doc, encoding="utf-8")
        target = resolve_target(self.db.url, self.key if key is None else key, environ={})
        return plan(load_desired(self.folder / "connections.toml"), Workspace(target, self.state_path))

    def text(self, doc: str = DOC, key: str | None = None) -> tuple[PlannedRun, str]:
        """Plan, close, and return the run with its text rendering."""
        run = self.plan(doc, key)
        run.close()
        return run, run.render("text")

    def apply(self, doc: str = DOC, key: str | None = None) -> None:
        """Plan and apply."""
        run = self.plan(doc, key)
        try:
            apply(run)
        finally:
            run.close()

    def update(self, conn_id: str, **values: Any) -> None:
        """Change a row in the database, as someone editing it in Airflow's UI would."""
        table = self.db.table
        with self.db.engine.begin() as conn:
            conn.execute(table.update().where(table.c.conn_id == conn_id).values(**values))

    def encrypt(self, text: str, key: str | None = None) -> str:
        """Encrypt as Airflow does with a Fernet key (the project's unless told)."""
        return Fernet((key or self.key).encode()).encrypt(text.encode()).decode()


@pytest.fixture
def project(make_db: Any, tmp_path: Path) -> Project:
    """A project against an Airflow 2.x table on SQLite."""
    return Project(make_db("sqlite", "2.x"), tmp_path / "repo")


def drift_of(run: PlannedRun) -> list[tuple[str, int | None, list[tuple[str, str, bool]]]]:
    """Return the drift as (conn_id, row, [(path, kind, sensitive)])."""
    assert all(d.address.kind == "connection" and d.deleted == (d.row_id is None) for d in run.plan.drift)
    return [
        (d.address.key, d.row_id, [(".".join(map(str, c.path)), c.kind, c.sensitive) for c in d.changes])
        for d in run.plan.drift
    ]


def actions_of(run: PlannedRun) -> list[tuple[str, str, str]]:
    """Return the operations as (action, conn_id, reason), in the JSON plan's words."""
    assert all(op.address.kind == "connection" for op in run.plan.operations)
    return [(action_name(op), op.address.key, reason_name(op)) for op in run.plan.operations]


def conn(conn_id: str) -> Address:
    """Return a connection's address."""
    return Address("connection", conn_id)


# --- Changed outside dconn ---------------------------------------------------------------------


def test_changed_outside_dconn_is_told_first_then_reverted(project: Project) -> None:
    """A host and a password edited in the database are listed first, field by field, then the revert."""
    project.apply()
    project.update("warehouse", host="wh-hotfix.internal", password=project.encrypt("typed-in-the-ui"))
    run, text = project.text()
    assert drift_of(run) == [("warehouse", 2, [("host", "change", False), ("password", "change", True)])]
    assert (
        "Note: objects have changed outside dconn since the last apply\n\n"
        '  # connection "warehouse" was changed in the database\n'
        '  ~ host     = "wh.internal" -> "wh-hotfix.internal"\n'
        "  ~ password = (sensitive value changed)\n\n"
        "dconn will perform the following actions:\n\n"
        '  # connection "warehouse" will be updated in place\n'
        '  ~ host     = "wh-hotfix.internal" -> "wh.internal"\n'
        "  ~ password = (sensitive value changed)\n"
    ) in text
    assert "typed-in-the-ui" not in text and CANARY not in text


def test_secret_inside_extra_changed_outside_is_sensitive(project: Project) -> None:
    """A token in extra changed in the database shows as a sensitive change at its own path."""
    project.apply()
    extra = {"sslmode": "require", "api_token": "rotated-by-hand", "hosts": ["a", "b"]}
    project.update("warehouse", extra=project.encrypt(json.dumps(extra)))
    run, text = project.text()
    assert drift_of(run) == [("warehouse", 2, [("extra.api_token", "change", True)])]
    assert "  ~ extra.api_token = (sensitive value changed)\n" in text
    assert "rotated-by-hand" not in text


def test_row_deleted_outside_dconn(project: Project) -> None:
    """A managed row deleted in the database is told as deleted, and planned for creation again."""
    project.apply()
    with project.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM connection WHERE conn_id = 'slack'"))
    run, text = project.text()
    assert drift_of(run) == [("slack", None, [])]
    assert actions_of(run) == [("create", "slack", "declared")]
    assert '  # connection "slack" was deleted from the database\n\ndconn will perform' in text


def test_drift_is_told_until_the_next_apply(project: Project) -> None:
    """Drift is measured against the last apply: every plan repeats it; apply clears it."""
    project.apply()
    project.update("slack", host="elsewhere")
    assert (
        drift_of(project.text()[0])
        == drift_of(project.text()[0])
        == [("slack", 1, [("host", "change", False)])]
    )
    project.apply()
    run, text = project.text()
    assert run.plan.drift == () and "changed outside dconn" not in text
    assert text.endswith("No changes. The connections match the configuration.\n")


def test_config_changed_to_match_the_edit_is_drift_without_actions(project: Project) -> None:
    """Adopting an edit in the configuration leaves the drift note but no action (exit 0 in CI)."""
    project.apply()
    project.update("slack", host="elsewhere")
    run, text = project.text(DOC.replace('"hooks.slack.com"', '"elsewhere"'))
    assert drift_of(run) == [("slack", 1, [("host", "change", False)])]
    assert not run.plan.summary.has_changes
    assert "No changes." in text


def test_secret_reference_on_a_plain_field_is_not_drift(project: Project, monkeypatch: Any) -> None:
    """A login declared from_env is stored in clear by Airflow; unchanged, it is not drift."""
    monkeypatch.setenv("DRIFT_LOGIN", "etl-from-vault")
    doc = '[connections.x]\nconn_type = "http"\nlogin = { from_env = "DRIFT_LOGIN" }\n'
    project.apply(doc)
    run, _ = project.text(doc)
    assert run.plan.drift == () and not run.plan.summary.has_changes
    project.update("x", login="changed-in-ui")
    run, text = project.text(doc)
    assert drift_of(run) == [("x", 1, [("login", "change", True)])]
    assert "changed-in-ui" not in text and "etl-from-vault" not in text


# --- Fernet key rotation is not drift ----------------------------------------------------------


def rotate_rows(project: Project, ring: str) -> None:
    """Re-encrypt every encrypted value with the first key of a ring, as `airflow rotate-fernet-key` does."""
    from cryptography.fernet import MultiFernet

    fernet = MultiFernet([Fernet(k.encode()) for k in ring.split(",")])
    for stored in project.db.rows():
        values = {}
        for column, flag in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
            if stored[column] and stored[flag]:
                values[column] = fernet.rotate(stored[column].encode()).decode()
        if values:
            project.update(str(stored["conn_id"]), **values)


def test_key_rotation_with_the_old_key_in_the_ring_is_not_drift(project: Project) -> None:
    """After a rotation (new key first, old key kept) no plan, the first or later ones, reports drift."""
    project.apply()
    new = Fernet.generate_key().decode()
    ring = f"{new},{project.key}"
    rotate_rows(project, ring)
    for _ in range(2):
        run, text = project.text(key=ring)
        assert run.plan.drift == () and not run.plan.summary.has_changes, text
    state = json.loads(project.state_path.read_text())
    assert state["digest_key"]["id"] == run.digester.key_id


def test_key_rotation_keeps_a_real_secret_drift(project: Project) -> None:
    """A password changed before a rotation is still reported on every later plan, old key gone or not."""
    project.apply()
    project.update("warehouse", password=project.encrypt("typed-in-the-ui"))
    new = Fernet.generate_key().decode()
    ring = f"{new},{project.key}"
    rotate_rows(project, ring)
    for key in (ring, ring, new):
        run, _ = project.text(key=key)
        assert drift_of(run) == [("warehouse", 2, [("password", "change", True)])]


def test_key_replaced_outright_is_not_drift_and_warns(project: Project) -> None:
    """With the old key gone, secrets cannot be compared: no false drift, one warning, then normal."""
    project.apply()
    new = Fernet.generate_key().decode()
    rotate_rows(project, f"{new},{project.key}")
    run, _ = project.text(key=new)
    assert run.plan.drift == () and not run.plan.summary.has_changes
    assert any("previous key is no longer in the key ring" in w for w in run.warnings)
    run, _ = project.text(key=new)
    assert run.plan.drift == () and run.warnings == []
    project.update("warehouse", password=project.encrypt("typed-in-the-ui", key=new))
    assert drift_of(project.text(key=new)[0]) == [("warehouse", 2, [("password", "change", True)])]


def test_adding_a_fernet_key_later_is_not_drift(project: Project) -> None:
    """Digests made without a key (the state's random key) are re-made with a Fernet key once set."""
    project.key = ""
    project.apply()
    project.key = Fernet.generate_key().decode()
    for _ in range(2):
        run, text = project.text()
        assert run.plan.drift == (), text
    assert json.loads(project.state_path.read_text())["digest_key"]["source"] == "fernet"
    project.update("warehouse", password="typed-in-the-ui")
    assert drift_of(project.text()[0]) == [("warehouse", 2, [("password", "change", True)])]


# --- Ownership: managed, unmanaged, prune, ignore --------------------------------------------


def test_removed_from_the_config_is_destroyed_but_never_managed_is_left(project: Project) -> None:
    """Removing a managed conn_id plans its deletion; a connection dconn never managed is counted."""
    insert_raw(project.db.engine, project.db.table, [{"conn_id": "hand_made", "conn_type": "ftp"}])
    project.apply()
    run, text = project.text(DOC.split("[connections.slack]", maxsplit=1)[0])
    assert actions_of(run) == [("delete", "slack", "removed")]
    assert run.plan.unmanaged == (conn("hand_made"),)
    assert '  # connection "slack" will be destroyed (no longer in the configuration)\n' in text
    assert "1 connection unchanged, 1 unmanaged (-v lists them).\n" in text


def test_unmanaged_are_listed_with_verbose(project: Project) -> None:
    """-v lists the unmanaged and ignored conn_ids by name."""
    insert_raw(
        project.db.engine,
        project.db.table,
        [{"conn_id": "hand_made", "conn_type": "ftp"}, {"conn_id": "aws_default", "conn_type": "aws"}],
    )
    run = project.plan()
    run.close()
    from dataclasses import replace

    text = run.render("text")
    run.context = replace(run.context, verbose=True)
    verbose = run.render("text")
    assert "0 connections unchanged, 1 unmanaged (-v lists them), 1 ignored.\n" in text
    assert "Unmanaged: hand_made\nIgnored: aws_default\n" in verbose


def test_prune_deletes_unmanaged_but_never_ignored(project: Project) -> None:
    """prune = true destroys every undeclared connection except those matching `ignore`."""
    insert_raw(
        project.db.engine,
        project.db.table,
        [{"conn_id": "hand_made", "conn_type": "ftp"}, {"conn_id": "aws_default", "conn_type": "aws"}],
    )
    run, text = project.text(DOC.replace("[settings]\n", "[settings]\nprune = true\n"))
    assert ("delete", "hand_made", "pruned") in actions_of(run)
    assert not [op for op in run.plan.operations if op.address == conn("aws_default")]
    assert '  # connection "hand_made" will be destroyed (not in the configuration, prune = true)\n' in text


def test_ignored_pattern_protects_even_a_formerly_managed_connection(project: Project) -> None:
    """A conn_id dconn managed, then removed and matching `ignore`, is left alone, not destroyed."""
    doc = '[connections.slack_default]\nconn_type = "http"\n'
    project.apply(doc)
    # An empty [connections] table: the document still manages connections, and declares none.
    run, _ = project.text('[settings]\nignore = ["*_default"]\n\n[connections]\n')
    assert run.plan.operations == () and run.plan.ignored == (conn("slack_default"),)


def test_declared_and_ignored_is_still_managed(project: Project) -> None:
    """A declared conn_id matching `ignore` is managed: created, then its drift is reverted."""
    doc = '[settings]\nignore = ["*_default"]\n[connections.http_default]\nconn_type = "http"\nhost = "a"\n'
    project.apply(doc)
    project.update("http_default", host="b")
    run, _ = project.text(doc)
    assert drift_of(run) == [("http_default", 1, [("host", "change", False)])]
    assert actions_of(run) == [("update", "http_default", "declared")]


def test_first_run_without_state_manages_nothing_yet(project: Project) -> None:
    """No state file is a first run: no error, nothing managed, no removal, no drift; a state is written."""
    insert_raw(project.db.engine, project.db.table, [{"conn_id": "hand_made", "conn_type": "ftp"}])
    assert not project.state_path.exists()
    run, _ = project.text()
    assert run.plan.drift == () and run.plan.unmanaged == (conn("hand_made"),)
    assert [action_name(op) for op in run.plan.operations] == ["create", "create"]
    state = json.loads(project.state_path.read_text())
    assert state["managed"] == {} and state["applied"] == {} and state["serial"] == 1


# --- The state file: written only when it changes; travels with the repository ----------------


def test_plan_leaves_an_unchanged_state_untouched(project: Project) -> None:
    """A plan that finds everything as recorded does not rewrite the state (no serial bump in git)."""
    project.apply()
    project.text()  # the first plan after apply records nothing new either
    before = project.state_path.read_bytes()
    for _ in range(2):
        project.text()
    assert project.state_path.read_bytes() == before
    project.update("slack", host="elsewhere")
    project.text()
    after = json.loads(project.state_path.read_text())
    assert after["serial"] == json.loads(before)["serial"] + 1


def test_state_committed_to_git_works_in_another_clone(project: Project, tmp_path: Path) -> None:
    """A state copied with the repository to another folder (a CI checkout) finds the same drift."""
    project.apply()
    project.update("slack", host="elsewhere")
    clone = Project(project.db, tmp_path / "ci-checkout")
    (clone.folder / ".dconn").mkdir()
    shutil.copy(project.state_path, clone.state_path)
    assert drift_of(clone.text()[0]) == [("slack", 1, [("host", "change", False)])]


def test_state_of_another_database_is_refused_with_what_to_do(project: Project, make_db: Any) -> None:
    """A state recorded for another database is an error naming both and suggesting --state."""
    project.apply()
    other = Project(make_db("sqlite", "2.x"), project.folder)
    with pytest.raises(StateError, match=r"belongs to sqlite:///.*pass --state"):
        other.plan()


# --- Noise is not drift ------------------------------------------------------------------------

NOISE_DOC = """
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
port = 5432
extra = { sslmode = "require", options = { a = 1, b = [1, 2] }, timeout = 10 }
"""
NOISY_EXTRA = '{\n    "timeout": 10,\n    "options": {"b": [1,   2], "a": 1},\n    "sslmode": "require"\n}'


def noise(project: Project, case: str) -> None:
    """Rewrite the stored row in a way that means the same connection."""
    if case == "extra key order and whitespace":
        project.update("warehouse", extra=project.encrypt(NOISY_EXTRA), is_extra_encrypted=True)
    elif case == "extra in clear, as without a Fernet key":
        project.update("warehouse", extra=NOISY_EXTRA, is_extra_encrypted=False)
    elif case == "empty strings for NULL":
        project.update("warehouse", schema="", login="", password="", description="")
    elif case == "postgresql spelling of conn_type":
        project.update("warehouse", conn_type="postgresql")
    elif case == "empty extra object":
        project.update("warehouse", extra=project.encrypt("{}"), is_extra_encrypted=True)
    elif case == "empty extra text":
        project.update("warehouse", extra="", is_extra_encrypted=False)
    else:
        raise AssertionError(case)


NOISE_CASES = [
    "extra key order and whitespace",
    "extra in clear, as without a Fernet key",
    "empty strings for NULL",
    "postgresql spelling of conn_type",
]


def assert_no_noise(project: Project, doc: str = NOISE_DOC) -> None:
    """Plan and check that neither drift nor an action shows."""
    run, text = project.text(doc)
    assert run.plan.drift == (), text
    assert not run.plan.summary.has_changes, text
    assert "changed outside dconn" not in text


@pytest.mark.parametrize("case", [*NOISE_CASES, "empty extra object", "empty extra text"])
def test_noise_is_not_drift_on_sqlite(project: Project, case: str) -> None:
    """After apply, a row rewritten with the same meaning shows neither drift nor an action."""
    doc = NOISE_DOC.replace("extra = {", "# extra = {") if case.startswith("empty extra") else NOISE_DOC
    project.apply(doc)
    noise(project, case)
    assert_no_noise(project, doc)


@pytest.mark.parametrize("case", NOISE_CASES)
def test_noise_in_a_row_dconn_never_wrote_is_no_change(project: Project, case: str) -> None:
    """On a first plan, a row Airflow's UI wrote with the same meaning plans no update."""
    extra = project.encrypt('{"sslmode":"require","options":{"a":1,"b":[1,2]},"timeout":10}')
    insert_raw(
        project.db.engine,
        project.db.table,
        [
            {
                "conn_id": "warehouse",
                "conn_type": "postgres",
                "host": "wh.internal",
                "port": 5432,
                "extra": extra,
                "is_extra_encrypted": True,
            }
        ],
    )
    noise(project, case)
    assert_no_noise(project)


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
@pytest.mark.parametrize("case", NOISE_CASES)
def test_noise_is_not_drift_on_servers(make_db: Any, tmp_path: Path, backend: str, case: str) -> None:
    """The same noise cases on PostgreSQL and MariaDB: no drift, no action."""
    project = Project(make_db(backend, "2.x"), tmp_path / "repo")
    project.apply(NOISE_DOC)
    noise(project, case)
    assert_no_noise(project)


@pytest.fixture
def text_port_db(tmp_path: Path) -> Iterator[AirflowDb]:
    """An Airflow 1.10-shaped SQLite table whose port column is text, as hand-made tables have."""
    path = tmp_path / "airflow-110.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE connection (id INTEGER PRIMARY KEY AUTOINCREMENT, conn_id VARCHAR(250),"
            " conn_type VARCHAR(500), host VARCHAR(500), schema VARCHAR(500), login VARCHAR(500),"
            " password VARCHAR(5000), port VARCHAR(10), is_encrypted BOOLEAN,"
            " is_extra_encrypted BOOLEAN, extra VARCHAR(5000))"
        )
    db.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    table = sa.Table("connection", sa.MetaData(), autoload_with=engine)
    yield AirflowDb(f"sqlite:///{path}", engine, table, Fernet.generate_key().decode(), "sqlite", "1.10")
    engine.dispose()


def test_port_stored_as_text_is_not_drift(text_port_db: AirflowDb, tmp_path: Path) -> None:
    """A 1.10 table holding the port as text ('5432', ' 5432') shows no drift and no change."""
    project = Project(text_port_db, tmp_path / "repo")
    project.apply(NOISE_DOC)
    assert [r["port"] for r in text_port_db.rows()] == ["5432"]
    assert_no_noise(project)
    project.update("warehouse", port=" 5432")
    assert_no_noise(project)
    project.update("warehouse", port="5433")
    run, _ = project.text(NOISE_DOC)
    assert drift_of(run) == [("warehouse", 1, [("port", "change", False)])]


# --- The command, as a nightly CI job runs it ------------------------------------------------


def dconn(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run dconn in a subprocess with a clean environment."""
    return run_dconn(*args, cwd=cwd, env=env)


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The README walkthrough's setup: the demo database and configuration, as a user builds them."""
    key = Fernet.generate_key().decode()
    subprocess.run(
        [sys.executable, str(ROOT / "examples/demo/build_demo_db.py"), str(tmp_path / "airflow.db"), key],
        check=True,
    )
    shutil.copy(ROOT / "examples/demo/connections.toml", tmp_path / "connections.toml")
    env = {
        "DCONN_DB_URL": f"sqlite:///{tmp_path / 'airflow.db'}",
        "DCONN_FERNET_KEY": key,
        "DEMO_WAREHOUSE_PASSWORD": CANARY,
        "DEMO_ORDERS_PASSWORD": CANARY + "-orders",
        "DEMO_SLACK_TOKEN": CANARY + "-slack",
    }
    return tmp_path, env


def test_nightly_drift_cycle_through_the_command(demo: tuple[Path, dict[str, str]]) -> None:
    """apply, an edit with sqlite3, then plan exits 2 with the drift in text, JSON and markdown."""
    cwd, env = demo
    assert dconn("apply", "--auto-approve", cwd=cwd, env=env).returncode == 0
    clean = dconn("plan", "--detailed-exitcode", cwd=cwd, env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with sqlite3.connect(cwd / "airflow.db") as db:
        db.execute("UPDATE connection SET host = 'wh-hotfix.internal' WHERE conn_id = 'warehouse'")
    db.close()
    text = dconn("plan", "--detailed-exitcode", cwd=cwd, env=env)
    assert text.returncode == 2, text.stderr
    assert (
        'Note: objects have changed outside dconn since the last apply\n\n  # connection "warehouse" '
        'was changed in the database\n  ~ host = "wh.internal" -> "wh-hotfix.internal"\n'
    ) in text.stdout
    assert text.stdout.endswith("Plan: 0 to add, 1 to change, 0 to destroy.\n")
    report = dconn("plan", "--detailed-exitcode", "--format", "json", cwd=cwd, env=env)
    assert report.returncode == 2
    assert json.loads(report.stdout)["changes_outside"] == [
        {
            "kind": "connection",
            "key": "warehouse",
            "conn_id": "warehouse",
            "row_id": 1,
            "deleted": False,
            "changes": [
                {
                    "path": "host",
                    "kind": "change",
                    "sensitive": False,
                    "before": "wh.internal",
                    "after": "wh-hotfix.internal",
                }
            ],
        }
    ]
    markdown = dconn("plan", "--detailed-exitcode", "--format", "markdown", cwd=cwd, env=env)
    assert markdown.returncode == 2
    assert (
        '| connection `warehouse` | `host` | `"wh.internal" -> "wh-hotfix.internal"` |\n' in markdown.stdout
    )
    for result in (clean, text, report, markdown):
        assert CANARY not in result.stdout + result.stderr


def test_detailed_exitcode_errors_are_1_never_2(demo: tuple[Path, dict[str, str]]) -> None:
    """With --detailed-exitcode an error exits 1, a mistyped option too: 2 only ever means changes."""
    cwd, env = demo
    assert dconn("plan", "--detailed-exitcode", "-c", "missing.toml", cwd=cwd, env=env).returncode == 1
    assert dconn("plan", "--detailed-exitcode", "--formt", "json", cwd=cwd, env=env).returncode == 1
    down = dconn("plan", "--detailed-exitcode", cwd=cwd, env={**env, "DCONN_DB_URL": "sqlite:////nope/x.db"})
    assert down.returncode == 1 and down.stderr.startswith("Error: ")
    assert dconn("plan", "--detailed-exitcode", cwd=cwd, env=env).returncode == 2


def test_fresh_checkout_without_state_is_a_normal_first_run(demo: tuple[Path, dict[str, str]]) -> None:
    """A CI job with no state file plans normally (exit 2 for changes), warns of nothing, writes one."""
    cwd, env = demo
    result = dconn("plan", "--detailed-exitcode", "--format", "json", cwd=cwd, env=env)
    assert result.returncode == 2, result.stderr
    assert "Error" not in result.stderr and "state" not in result.stderr
    assert json.loads(result.stdout)["changes_outside"] == []
    assert (cwd / ".dconn" / "state.json").is_file()


def test_state_per_environment_with_state_flag(demo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """--state keeps one state file per environment; each is matched to its own database."""
    cwd, env = demo
    staging_db = tmp_path / "staging.db"
    shutil.copy(cwd / "airflow.db", staging_db)
    staging = {**env, "DCONN_DB_URL": f"sqlite:///{staging_db}"}
    for state, environment in (("states/prod.json", env), ("states/staging.json", staging)):
        result = dconn("apply", "--auto-approve", "--state", state, cwd=cwd, env=environment)
        assert result.returncode == 0, result.stderr
    wrong = dconn("plan", "--state", "states/prod.json", cwd=cwd, env=staging)
    assert wrong.returncode == 1 and "pass --state" in wrong.stderr
    assert (
        dconn(
            "plan", "--detailed-exitcode", "--state", "states/staging.json", cwd=cwd, env=staging
        ).returncode
        == 0
    )


# --- The CI examples: valid, and their shell steps handle exit code 2 -------------------------

GITHUB = ROOT / "examples/ci/github-actions.yml"
GITLAB = ROOT / "examples/ci/gitlab-ci.yml"
#: The variants for API targets, whose state is a file committed back by the apply job.
GITHUB_API = ROOT / "examples/ci/github-actions-api.yml"
GITLAB_API = ROOT / "examples/ci/gitlab-ci-api.yml"


def load_yaml(path: Path) -> dict[Any, Any]:
    """Parse a CI file with PyYAML, as the CI services do."""
    import yaml

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def github_script(job: str, step: str, workflow: Path = GITHUB) -> str:
    """Return the `run:` script of a named step of a GitHub workflow."""
    (found,) = [s["run"] for s in load_yaml(workflow)["jobs"][job]["steps"] if s.get("name") == step]
    return str(found)


def gitlab_script(job: str, pipeline: Path = GITLAB) -> str:
    """Return a GitLab job's script lines as the one shell script the runner executes."""
    return "\n".join(load_yaml(pipeline)[job]["script"]) + "\n"


def run_ci_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a CI step as GitHub's and GitLab's bash do (`-eo pipefail`), with this dconn on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DCONN_", "DEMO_"))}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={**base, "PATH": path, "CONNECTIONS": "connections.toml", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("workflow", "pipeline"), [(GITHUB, GITLAB), (GITHUB_API, GITLAB_API)])
def test_ci_examples_parse_and_wire_the_jobs(workflow: Path, pipeline: Path) -> None:
    """The CI files are valid YAML with the nightly, pull-request, plan and approved-apply jobs."""
    github = load_yaml(workflow)
    triggers = github[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"] == "23 4 * * *"
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    jobs = github["jobs"]
    assert jobs["apply"]["needs"] == "plan" and jobs["apply"]["environment"] == "airflow-production"
    assert github["permissions"] == {"contents": "read"}
    gitlab = load_yaml(pipeline)
    assert gitlab["stages"] == ["validate", "plan", "apply"]
    assert gitlab["apply"]["rules"][0]["when"] == "manual" and gitlab["apply"]["needs"] == ["plan"]
    assert gitlab["drift"]["rules"][0] == {"if": '$CI_PIPELINE_SOURCE == "schedule"'}
    for text in (workflow.read_text(), pipeline.read_text()):
        assert "--detailed-exitcode" in text and "|| code=$?" in text


def test_database_ci_examples_keep_the_state_in_the_database() -> None:
    """With a database target the examples use --state db: everywhere and never write the repository."""
    github, gitlab = load_yaml(GITHUB), load_yaml(GITLAB)
    scripts = [
        s["run"] for job in github["jobs"].values() for s in job["steps"] if "dconn " in s.get("run", "")
    ]
    scripts += [line for job in gitlab.values() if isinstance(job, dict) for line in job.get("script", [])]
    for script in scripts:
        if "dconn plan" in script or "dconn apply" in script:
            assert "--state db:" in script or '--state "db:"' in script, script
        assert "git " not in script and "state.json" not in script, script
    assert "permissions" not in github["jobs"]["apply"]  # the workflow's contents: read
    assert "DCONN_PUSH_TOKEN" not in GITLAB.read_text()
    assert github["jobs"]["plan"]["steps"][-1]["with"]["path"] == "plan.json"
    for flag in ("--read-only", "--no-commands"):  # docs/ci.md, "Pull-request plans"
        assert flag in github_script("plan-pr", "dconn plan") and flag in gitlab_script("plan:merge-request")


def test_api_ci_examples_commit_the_state_file() -> None:
    """For an API target the examples keep the state in a file that the apply job commits back."""
    github, gitlab = load_yaml(GITHUB_API), load_yaml(GITLAB_API)
    assert github["jobs"]["apply"]["permissions"] == {"contents": "write"}
    assert "git push origin HEAD:main" in github_script("apply", "Commit the state file", GITHUB_API)
    assert any("git push" in line for line in gitlab["apply"]["script"])
    for text in (GITHUB_API.read_text(), GITLAB_API.read_text()):
        assert "DCONN_API_URL" in text and "DCONN_DB_URL" not in text and "db:" not in text


@pytest.mark.parametrize("workflow", [GITHUB, GITHUB_API], ids=["db-state", "api-file-state"])
@pytest.mark.parametrize(
    ("job", "step", "changes", "errors"),
    [
        ("plan-pr", "dconn plan", 0, 1),
        ("plan", "dconn plan --out plan.json", 0, 1),
        ("drift", "dconn plan --detailed-exitcode", 2, 1),
    ],
)
def test_github_steps_treat_exit_code_2_as_intended(
    demo: tuple[Path, dict[str, str]], job: str, step: str, changes: int, errors: int, workflow: Path
) -> None:
    """Under bash -e, changes pass a plan step and fail the nightly one; errors fail both."""
    cwd, env = demo
    summary, output = cwd / "summary.md", cwd / "output.txt"
    env = {**env, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    script = github_script(job, step, workflow)
    result = run_ci_script(script, cwd, env)
    assert result.returncode == changes, result.stdout + result.stderr
    assert summary.read_text().startswith("### dconn plan\n\n**Plan: 1 to add, 2 to change, 2 to destroy")
    if job == "plan":
        assert output.read_text() == "changes=true\n" and (cwd / "plan.json").is_file()
    down = run_ci_script(script, cwd, {**env, "DCONN_DB_URL": f"sqlite:///{cwd / 'missing.db'}"})
    assert down.returncode == errors and "Error: " in down.stderr


@pytest.mark.parametrize("pipeline", [GITLAB, GITLAB_API], ids=["db-state", "api-file-state"])
@pytest.mark.parametrize(("job", "changes"), [("plan:merge-request", 0), ("plan", 0), ("drift", 2)])
def test_gitlab_scripts_treat_exit_code_2_as_intended(
    demo: tuple[Path, dict[str, str]], job: str, changes: int, pipeline: Path
) -> None:
    """GitLab's job scripts: changes pass a plan job and fail the nightly one; errors fail both."""
    cwd, env = demo
    result = run_ci_script(gitlab_script(job, pipeline), cwd, env)
    assert result.returncode == changes, result.stdout + result.stderr
    assert "### dconn plan" in result.stdout
    down = run_ci_script(
        gitlab_script(job, pipeline), cwd, {**env, "DCONN_DB_URL": f"sqlite:///{cwd / 'missing.db'}"}
    )
    assert down.returncode == 1


def github_flow(
    demo: tuple[Path, dict[str, str]], tmp_path: Path, workflow: Path
) -> tuple[Path, dict[str, str]]:
    """Run a workflow's plan job and apply job, each in a fresh clone; return a fresh clone for the nightly job."""
    cwd, env = demo
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True, capture_output=True)
    shutil.copy(cwd / "connections.toml", repo)
    (repo / ".gitignore").write_text(".dconn/*\n!.dconn/state.json\n")
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "connections"], check=True)
    subprocess.run(["git", "-C", str(repo), "push", "-q", "origin", "HEAD:main"], check=True)

    def checkout(name: str) -> Path:
        folder = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(folder)], check=True, capture_output=True)
        return folder

    github = {
        **env,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "out"),
    }
    plan_job = checkout("plan-job")
    planned = run_ci_script(github_script("plan", "dconn plan --out plan.json", workflow), plan_job, github)
    assert planned.returncode == 0, planned.stderr
    apply_job = checkout("apply-job")
    jobs = load_yaml(workflow)["jobs"]
    (upload,) = [s for s in jobs["plan"]["steps"] if "upload-artifact" in s.get("uses", "")]
    for name in upload["with"]["path"].split():  # what the artifact carries from job to job
        if (plan_job / name).exists():  # a first run has no state file to carry
            (apply_job / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(plan_job / name, apply_job / name)
    steps = [s for s in jobs["apply"]["steps"] if "run" in s and "pip" not in s["run"]]
    for step in steps:
        result = run_ci_script(step["run"], apply_job, {**github, "GITHUB_SHA": "0123456789abcdef"})
        assert result.returncode == 0, step["name"] + result.stdout + result.stderr
    return checkout("nightly"), github


def nightly_drift(demo: tuple[Path, dict[str, str]], tmp_path: Path, nightly: Path, workflow: Path) -> None:
    """The nightly job finds no drift, then, after an edit made behind dconn's back, reports it as drift."""
    cwd, _ = demo
    github = {
        **demo[1],
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "out"),
    }
    drift = github_script("drift", "dconn plan --detailed-exitcode", workflow)
    clean = run_ci_script(drift, nightly, github)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with sqlite3.connect(cwd / "airflow.db") as db:
        db.execute("UPDATE connection SET host = 'edited-in-ui' WHERE conn_id = 'orders_mysql'")
    db.close()
    drifted = run_ci_script(drift, nightly, github)
    assert drifted.returncode == 2
    assert "::error title=Airflow connections drifted::" in drifted.stdout
    # "Changed outside dconn" needs what the apply recorded: the nightly job found the state.
    assert "#### Changed outside dconn" in (tmp_path / "summary.md").read_text()


def test_github_flow_plan_apply_commit_then_nightly_drift(
    demo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The API variant end to end: plan job, apply job in a fresh clone, state file committed, nightly drift."""
    nightly, _ = github_flow(demo, tmp_path, GITHUB_API)
    assert (nightly / ".dconn/state.json").is_file(), "the apply job committed the state"
    nightly_drift(demo, tmp_path, nightly, GITHUB_API)


def test_github_flow_with_the_state_in_the_database(
    demo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The database variant end to end: the apply job commits nothing; the nightly job reads the state from the database."""
    nightly, _ = github_flow(demo, tmp_path, GITHUB)
    log = subprocess.run(
        ["git", "-C", str(nightly), "log", "--oneline"], check=True, capture_output=True, text=True
    )
    assert len(log.stdout.splitlines()) == 1, "nothing was committed back"
    assert not (nightly / ".dconn").exists()
    with sqlite3.connect(demo[0] / "airflow.db") as db:
        ((name, serial),) = db.execute("SELECT name, serial FROM dconn_state").fetchall()
    db.close()
    assert (name, serial) == ("default", 1)
    nightly_drift(demo, tmp_path, nightly, GITHUB)


def test_docs_walkthrough_shows_what_dconn_prints(demo: tuple[Path, dict[str, str]]) -> None:
    """docs/ci.md's walkthrough output is the real output of its commands on the demo database."""
    cwd, env = demo
    shutil.copytree(ROOT / "examples", cwd / "examples")
    config = ["-c", "examples/demo/connections.toml"]
    assert dconn("plan", *config, "--detailed-exitcode", cwd=cwd, env=env).returncode == 2
    assert dconn("apply", *config, "--auto-approve", cwd=cwd, env=env).returncode == 0
    assert dconn("plan", *config, "--detailed-exitcode", cwd=cwd, env=env).returncode == 0
    docs = (ROOT / "docs/ci.md").read_text(encoding="utf-8")
    (edit,) = re.findall(r'sqlite3 airflow.db "(.*?)"\n', docs, flags=re.DOTALL)
    with sqlite3.connect(cwd / "airflow.db") as db:  # what the sqlite3 shell would run
        db.executescript(edit)
    db.close()
    shown = docs.split("```\nTarget: sqlite:////home/you/dconn/airflow.db", 1)[1].split("```", 1)[0]
    result = dconn("plan", *config, "--detailed-exitcode", cwd=cwd, env=env)
    printed = result.stdout.replace(f"sqlite:///{cwd}/airflow.db", "") + f"exit {result.returncode}\n"
    assert printed == "Target: " + shown
