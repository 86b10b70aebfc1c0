"""`ignore_changes` per object and `--target KIND.KEY`: in the pure planner, then as users run them.

ignore_changes: a difference at an ignored path of an existing object is neither drift nor
reverted; creating still sets it. --target: only the named objects are planned and applied,
the plan says it is partial, and the state keeps what it knew of every other object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from declarative_conns.cli import app
from declarative_conns.core.crypto import Digester
from declarative_conns.core.lifecycle import keep_ignored, parse_path
from declarative_conns.core.model import Settings, StoredObject, Values
from declarative_conns.core.operations import Create, Delete, Update
from declarative_conns.core.planner import compute_plan, state_after_apply
from declarative_conns.core.state import State
from tests.conftest import AirflowDb
from tests.strategies import COLUMNS
from tests.test_diff import conn, row, v

CANARY = "canary-lifecycle-77a1"


def plan_of(desired: dict[str, Values], rows: list[StoredObject], **kwargs: Any) -> Any:
    """Plan connections declared by conn_id against rows (a database target's columns)."""
    return compute_plan(
        {conn(c): val for c, val in desired.items()},
        rows,
        kwargs.pop("settings", Settings()),
        ("connection",),
        {"connection": COLUMNS},
        **kwargs,
    )


# --- the pure core -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "have", "paths", "expected"),
    [
        (
            {"host": "a", "password": "new"},
            {"host": "b", "password": "old"},
            ["password"],
            {"host": "a", "password": "old"},
        ),
        ({"host": "a", "password": "new"}, {"host": "a"}, ["password"], {"host": "a"}),
        (
            {"extra": {"x": 1, "token": "t2"}},
            {"extra": {"x": 2, "token": "t1"}},
            ["extra.token"],
            {"extra": {"x": 1, "token": "t1"}},
        ),
        (
            {"extra": {"x": 1}},
            {"extra": {"token": "t1"}},
            ["extra.token"],
            {"extra": {"x": 1, "token": "t1"}},
        ),
        ({"extra": {"x": 1, "token": "t2"}}, {}, ["extra.token"], {"extra": {"x": 1}}),
        ({"host": "a"}, {"host": "b"}, [], {"host": "a"}),
    ],
    ids=[
        "field",
        "field-absent-on-target",
        "extra-key",
        "extra-key-only-on-target",
        "extra-key-absent",
        "none",
    ],
)
def test_keep_ignored(
    want: dict[str, Any], have: dict[str, Any], paths: list[str], expected: dict[str, Any]
) -> None:
    """The target's value (or its absence) replaces the declared one at each ignored path, nothing else."""
    kept = keep_ignored(Values(want), Values(have), [parse_path(p) for p in paths])
    assert dict(kept.fields) == expected
    assert want == want  # the declared values are not modified in place


def test_ignored_difference_is_not_planned_but_create_sets_it() -> None:
    """An existing object's ignored field differs: no update; a new object still gets the field."""
    lifecycle = {conn("a"): (("password",),), conn("b"): (("password",),)}
    desired = {"a": v(conn_type="http", password="new"), "b": v(conn_type="http", password="pw")}
    plan = plan_of(desired, [row(1, "a", conn_type="http", password="rotated")], ignore_changes=lifecycle)
    assert [type(op) for op in plan.operations] == [Create]
    assert plan.operations[0].values.get("password") == "pw"
    assert plan.unchanged == (conn("a"),)


def test_an_update_keeps_the_ignored_value_of_the_target() -> None:
    """Another field changes: the update writes the target's value at the ignored path, not the declared one."""
    lifecycle = {conn("a"): (("extra", "token"),)}
    desired = {"a": v(conn_type="http", host="new", extra={"token": "declared", "x": 1})}
    stored = [row(1, "a", conn_type="http", host="old", extra={"token": "vaulted", "x": 1})]
    (op,) = plan_of(desired, stored, ignore_changes=lifecycle).operations
    assert isinstance(op, Update)
    assert [c.path for c in op.changes] == [("host",)]
    assert op.values.get("extra") == {"token": "vaulted", "x": 1}


def test_targets_limit_the_plan_to_the_named_objects() -> None:
    """Only targeted objects are planned: no prune, no removal, no count of any other object."""
    desired = {"a": v(conn_type="http", host="new"), "b": v(conn_type="http", host="new")}
    stored = [
        row(1, "a", conn_type="http", host="old"),
        row(2, "b", conn_type="http", host="old"),
        row(3, "gone", conn_type="http"),
        row(4, "stray", conn_type="http"),
    ]
    full = plan_of(desired, stored, settings=Settings(prune=True), managed=frozenset({conn("gone")}))
    assert {op.address.key for op in full.operations} == {"a", "b", "gone", "stray"}
    partial = plan_of(
        desired,
        stored,
        settings=Settings(prune=True),
        managed=frozenset({conn("gone")}),
        targets=[conn("a"), conn("gone")],
    )
    assert [(type(op), op.address.key) for op in partial.operations] == [(Update, "a"), (Delete, "gone")]
    assert partial.targets == (conn("a"), conn("gone"))
    assert (partial.unchanged, partial.unmanaged) == ((), ())
    assert full.targets is None


def test_a_partial_apply_keeps_the_state_of_every_other_object() -> None:
    """After applying a partial plan, objects outside it stay managed with their recorded form."""
    digester = Digester.from_secret(b"k" * 32, source="fernet")
    state = State()
    state.managed = {conn("a"), conn("b")}
    state.applied = {conn("a"): {"host": "old"}, conn("b"): {"host": "kept-record"}}
    desired = {"a": v(conn_type="http", host="new"), "b": v(conn_type="http", host="new")}
    stored = [row(1, "a", conn_type="http", host="old"), row(2, "b", conn_type="http", host="old")]
    plan = plan_of(desired, stored, targets=[conn("a")])
    after = state_after_apply(
        state,
        plan,
        {conn(c): val for c, val in desired.items()},
        stored,
        plan.operations,
        {},
        {(conn("a"), 1): "fp1b"},
        digester,
        {"connection": COLUMNS},
    )
    assert after.managed == {conn("a"), conn("b")}
    assert after.applied[conn("b")] == {"host": "kept-record"}
    assert after.applied[conn("a")]["host"] == "new"


# --- as users run them ----------------------------------------------------------------------------

DOC = """\
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
password = { from_env = "WH_PASSWORD" }
extra = { sslmode = "require", token = "declared-token" }
ignore_changes = ["password", "extra.token"]

[connections.slack]
conn_type = "http"
host = "hooks.slack.com"
"""


def invoke(db: AirflowDb, *args: str) -> tuple[int, str, str]:
    """Run dconn in-process against a test database; return exit code, stdout and stderr."""
    result = CliRunner().invoke(
        app,
        [*args, "--db-url", db.url, "--fernet-key", db.fernet_key],
        env={"NO_COLOR": "1", "WH_PASSWORD": CANARY},
    )
    return result.exit_code, result.stdout, result.stderr


def edit(db: AirflowDb, conn_id: str, **columns: Any) -> None:
    """Change a row behind dconn's back, as an operator or a vault would; secrets encrypted with the key."""
    fernet = Fernet(db.fernet_key.encode())
    values = {
        k: fernet.encrypt(v.encode()).decode() if k in ("password", "extra") else v
        for k, v in columns.items()
    }
    with db.engine.begin() as conn_:
        conn_.execute(db.table.update().where(db.table.c.conn_id == conn_id).values(**values))


def stored(db: AirflowDb, conn_id: str) -> dict[str, Any]:
    """Return a row with password and extra decrypted."""
    row_ = next(r for r in db.rows() if r["conn_id"] == conn_id)
    fernet = Fernet(db.fernet_key.encode())
    for name in ("password", "extra"):
        if row_[name]:
            row_[name] = fernet.decrypt(str(row_[name]).encode()).decode()
    return row_


def test_ignored_paths_are_neither_drift_nor_reverted(make_db: Any, clean_env: Path) -> None:
    """A rotated password and extra.token: plan shows no change; a moved host is drift and reverted, the rest kept."""
    db = make_db("sqlite", "2.x")
    Path("connections.toml").write_text(DOC)
    assert invoke(db, "apply", "--auto-approve")[0] == 0
    assert stored(db, "warehouse")["password"] == CANARY  # creating sets the ignored fields
    edit(
        db,
        "warehouse",
        password="rotated-by-hand",
        extra=json.dumps({"sslmode": "require", "token": "vaulted"}),
    )
    code, out, err = invoke(db, "plan", "--detailed-exitcode")
    assert code == 0, out + err
    assert "changed outside dconn" not in out and out.endswith(
        "No changes. The connections match the configuration.\n"
    )
    edit(db, "warehouse", host="moved.internal")
    code, out, _ = invoke(db, "plan", "--detailed-exitcode")
    assert code == 2
    drift = out.split("dconn will perform")[0]
    assert '~ host = "wh.internal" -> "moved.internal"' in drift
    assert "password" not in out and "token" not in out
    assert invoke(db, "apply", "--auto-approve")[0] == 0
    row_ = stored(db, "warehouse")
    assert row_["host"] == "wh.internal" and row_["password"] == "rotated-by-hand"
    assert json.loads(row_["extra"]) == {"sslmode": "require", "token": "vaulted"}
    code, out, _ = invoke(db, "plan", "--detailed-exitcode")
    assert code == 0 and CANARY not in out


def test_a_bad_ignore_changes_path_is_a_validation_error(clean_env: Path) -> None:
    """A path naming no field of the kind: validate names file, path and what may be named."""
    Path("connections.toml").write_text(DOC.replace('"extra.token"]', '"passwrd"]'))
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1
    assert (
        "connections.warehouse.ignore_changes.1: 'passwrd' is not a path dconn manages on a connection: name a "
        "field (conn_type, description, host, schema, login, password, port, extra, team_name) or extra.KEY"
    ) in result.stderr


def test_target_limits_plan_and_apply_and_says_so(make_db: Any, clean_env: Path) -> None:
    """--target connection.slack: only slack is planned and applied; text, JSON and markdown say it is partial."""
    db = make_db("sqlite", "2.x")
    Path("connections.toml").write_text(DOC)
    assert invoke(db, "apply", "--auto-approve")[0] == 0
    Path("connections.toml").write_text(
        DOC.replace("wh.internal", "wh2.internal").replace("hooks.slack", "hooks2.slack")
    )
    code, out, _ = invoke(db, "plan", "--target", "connection.slack", "--detailed-exitcode")
    assert code == 2
    note = 'Note: this plan is partial (--target): only connection "slack"; every other object is neither planned nor changed'
    assert note in out and "wh2.internal" not in out and "Plan: 0 to add, 1 to change, 0 to destroy." in out
    code, out, _ = invoke(db, "plan", "--target", "connections.slack", "--format", "json")
    document = json.loads(out)
    assert document["targets"] == [{"kind": "connection", "key": "slack"}]
    assert [a["key"] for a in document["actions"]] == ["slack"]
    code, out, _ = invoke(db, "plan", "--target", "connection.slack", "--format", "markdown")
    assert "**Note:** this plan is partial (--target)" in out
    code, _, err = invoke(db, "apply", "--target", "connection.slack", "--auto-approve")
    assert code == 0, err
    assert (
        stored(db, "slack")["host"] == "hooks2.slack.com" and stored(db, "warehouse")["host"] == "wh.internal"
    )
    state = json.loads(Path(".dconn/state.json").read_text())
    assert state["managed"] == {"connection": ["slack", "warehouse"]}
    code, out, _ = invoke(db, "plan", "--detailed-exitcode")
    assert code == 2 and '~ host = "wh.internal" -> "wh2.internal"' in out and "hooks2" not in out


def test_a_saved_partial_plan_applies_only_its_objects(make_db: Any, clean_env: Path, tmp_path: Path) -> None:
    """plan --target --out FILE; apply FILE carries out only those objects; --target with FILE is refused."""
    db = make_db("sqlite", "2.x")
    Path("connections.toml").write_text(DOC)
    plan_file = tmp_path / "partial.plan"
    code, _, err = invoke(db, "plan", "--target", "connection.slack", "--out", str(plan_file))
    assert code == 0, err
    code, _, err = invoke(db, "apply", str(plan_file), "--target", "connection.warehouse")
    assert code == 1 and err.startswith("Error: --target is for planning:")
    code, out, err = invoke(db, "apply", str(plan_file))
    assert code == 0, err
    assert "this plan is partial" in out
    assert [r["conn_id"] for r in db.rows()] == ["slack"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "slack",
            "--target 'slack': write KIND.KEY, e.g. connection.warehouse (kinds: connection, variable, pool)\n",
        ),
        ("pool.etl", "--target pool.etl: the configuration does not manage pools (it has no [pools] table)"),
        (
            "connection.nope",
            "--target connection.nope: no connection of that key is declared or on the target",
        ),
    ],
)
def test_a_bad_target_is_one_error_and_writes_nothing(
    make_db: Any, clean_env: Path, target: str, message: str
) -> None:
    """A --target that is not KIND.KEY, a kind not managed, or an object found nowhere: exit 1, nothing written."""
    db = make_db("sqlite", "2.x")
    Path("connections.toml").write_text(DOC)
    code, out, err = invoke(db, "apply", "--target", target, "--auto-approve")
    assert (code, out) == (1, "")
    assert f"\nError: {message}" in f"\n{err}"
    assert db.rows() == [] and not Path(".dconn").exists()


def test_ignore_changes_on_variables_and_pools(make_db: Any, clean_env: Path) -> None:
    """value.KEY of a table variable, a whole value, a pool's slots: left as changed; other keys still reverted."""
    import sqlite3

    from tests.airflow_tables import create_kind_tables

    db = make_db("sqlite", "2.x")
    create_kind_tables(db.engine, "2.x")
    Path("connections.toml").write_text(
        '[variables.flags]\nvalue = { enabled = true, rows = 5 }\nignore_changes = ["value.rows"]\n'
        '[variables.tok]\nvalue = "abc"\nignore_changes = ["value"]\n'
        '[pools.etl]\nslots = 4\nignore_changes = ["slots"]\n'
    )
    assert invoke(db, "apply", "--auto-approve")[0] == 0
    path = db.url.removeprefix("sqlite:///")

    def sql(statement: str) -> list[Any]:
        with sqlite3.connect(path) as conn:
            return conn.execute(statement).fetchall()

    sql("""UPDATE variable SET val = '{"enabled": true, "rows": 9}', is_encrypted = 0 WHERE key = 'flags'""")
    sql("UPDATE variable SET val = 'rotated', is_encrypted = 0 WHERE key = 'tok'")
    sql("UPDATE slot_pool SET slots = 10 WHERE pool = 'etl'")
    code, out, _ = invoke(db, "plan", "--detailed-exitcode")
    assert code == 0 and "changed outside dconn" not in out
    sql("""UPDATE variable SET val = '{"enabled": false, "rows": 9}', is_encrypted = 0 WHERE key = 'flags'""")
    code, out, _ = invoke(db, "apply", "--auto-approve")
    assert code == 0 and "~ value.enabled = false -> true" in out and "rows" not in out
    fernet = Fernet(db.fernet_key.encode())

    def value(key: str) -> str:
        text, encrypted = sql(f"SELECT val, is_encrypted FROM variable WHERE key = '{key}'")[0]
        return fernet.decrypt(text.encode()).decode() if encrypted else str(text)

    assert json.loads(value("flags")) == {"enabled": True, "rows": 9}
    assert value("tok") == "rotated"
    assert sql("SELECT slots FROM slot_pool WHERE pool = 'etl'") == [(10,)]
