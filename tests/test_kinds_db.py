"""Variables and pools on a database target: the same engine as connections, on every backend.

Tables are shaped as each Airflow generation made them (tests/airflow_tables.py); server tests
run on the machine's real PostgreSQL and MariaDB, each in a fresh database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from jsonschema import Draft202012Validator

from declarative_conns.api import apply, plan
from declarative_conns.config.loader import desired_from_dicts, load_desired
from declarative_conns.config.resources import load_schema
from declarative_conns.errors import DatabaseError, ValidationFailed
from declarative_conns.targets.discovery import resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import create_kind_tables
from tests.conftest import AirflowDb
from tests.helpers import actions, run_dconn

CANARY = "canary-kinds-77f3"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
DOC = f"""
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"

[variables.analytics_bucket]
value = "s3://analytics-prod"
description = "Where the ETL writes"

[variables.feature_flags]
value = {{ enabled = true, max_rows = 5000, regions = ["eu", "us"] }}

[variables.slack_token]
value = {{ from_env = "KINDS_SLACK" }}

[variables.db_password]
value = "{CANARY}-literal"

[pools.etl]
slots = 8
description = "ETL tasks"
include_deferred = true

[pools.default_pool]
slots = 64
"""


class KindsDb:
    """An Airflow-shaped database with connection, variable and slot_pool tables."""

    def __init__(self, db: AirflowDb, shape: str) -> None:
        self.db = db
        self.variable, self.pool = create_kind_tables(db.engine, shape)

    def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        """Return a table's rows as stored, by id."""
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]

    def variables(self) -> dict[str, str]:
        """Return each variable's value as Airflow's Variable.get reads it (decrypted when flagged)."""
        fernet = Fernet(self.db.fernet_key.encode())
        return {
            r["key"]: fernet.decrypt(r["val"].encode()).decode() if r["is_encrypted"] else r["val"]
            for r in self.rows(self.variable)
        }

    def pools(self) -> dict[str, dict[str, Any]]:
        """Return each pool's row by name."""
        return {r["pool"]: r for r in self.rows(self.pool)}

    def execute(self, statement: Any) -> None:
        """Run one statement in its own transaction (an edit made outside dconn)."""
        with self.db.engine.begin() as conn:
            conn.execute(statement)


@pytest.fixture
def kinds_db(make_db: Any) -> Any:
    """Return a factory: kinds_db(backend, shape) -> KindsDb."""

    def make(backend: str = "sqlite", shape: str = "2.x") -> KindsDb:
        return KindsDb(make_db(backend, "3.2" if shape == "3.2" else "2.x"), shape)

    return make


def workspace(db: KindsDb, tmp_path: Path) -> Workspace:
    """Return a workspace for the test database, its state in tmp_path."""
    environ = {"AIRFLOW_HOME": str(tmp_path / "no-airflow-home")}
    target = resolve_target(db.db.url, db.db.fernet_key, environ=environ)
    return Workspace(target, tmp_path / ".dconn" / "state.json", lock_timeout=5)


def resolver(ref: Any) -> str:
    """Resolve every reference to the canary's secret."""
    return f"{CANARY}-{ref.target}"


def plan_doc(db: KindsDb, tmp_path: Path, text: str) -> Any:
    """Write a document and plan it."""
    path = tmp_path / "connections.toml"
    path.write_text(text)
    return plan(path, workspace(db, tmp_path), resolver=resolver)


def apply_doc(db: KindsDb, tmp_path: Path, text: str) -> Any:
    """Write a document, plan and apply it; return the run."""
    run = plan_doc(db, tmp_path, text)
    with run:
        apply(run)
    return run


def no_changes(db: KindsDb, tmp_path: Path, text: str) -> bool:
    """Tell whether the document plans nothing."""
    with plan_doc(db, tmp_path, text) as run:
        return not run.plan.operations and not run.plan.drift


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_kinds_apply_in_one_run_as_airflow_stores_them(
    kinds_db: Any, tmp_path: Path, backend: str
) -> None:
    """One apply writes every kind: values Fernet-encrypted with is_encrypted, tables as JSON, pools and default_pool."""
    db = kinds_db(backend)
    run = apply_doc(db, tmp_path, DOC)
    assert run.plan.kinds == ("connection", "variable", "pool")
    assert [(op.address.kind, op.address.key) for op in run.plan.operations] == [
        ("connection", "warehouse"),
        ("variable", "analytics_bucket"),
        ("variable", "db_password"),
        ("variable", "feature_flags"),
        ("variable", "slack_token"),
        ("pool", "default_pool"),
        ("pool", "etl"),
    ]
    assert all(r["is_encrypted"] for r in db.rows(db.variable))
    assert all(r["val"].startswith("gAAAAA") for r in db.rows(db.variable))
    values = db.variables()
    assert values["analytics_bucket"] == "s3://analytics-prod"
    assert json.loads(values["feature_flags"]) == {"enabled": True, "max_rows": 5000, "regions": ["eu", "us"]}
    assert values["slack_token"] == f"{CANARY}-KINDS_SLACK"
    assert values["db_password"] == f"{CANARY}-literal"
    pools = db.pools()
    assert (pools["etl"]["slots"], pools["etl"]["description"], bool(pools["etl"]["include_deferred"])) == (
        8,
        "ETL tasks",
        True,
    )
    assert (pools["default_pool"]["slots"], pools["default_pool"]["description"]) == (64, "Default pool")
    assert no_changes(db, tmp_path, DOC)


def test_a_document_without_variables_or_pools_never_touches_them(kinds_db: Any, tmp_path: Path) -> None:
    """A connections-only document (every document before 0.x) leaves variables and pools alone, prune or not."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="legacy", val="kept", is_encrypted=False))
    text = '[settings]\nprune = true\n\n[connections.warehouse]\nconn_type = "http"\n'
    run = apply_doc(db, tmp_path, text)
    assert run.plan.kinds == ("connection",)
    assert db.variables() == {"legacy": "kept"}
    assert set(db.pools()) == {"default_pool"}
    assert "variable" not in run.context.counts and "pool" not in run.context.counts


def test_an_empty_table_manages_its_kind(kinds_db: Any, tmp_path: Path) -> None:
    """An empty `[pools]` manages pools: with prune it deletes undeclared pools but never default_pool."""
    db = kinds_db()
    db.execute(db.pool.insert().values(pool="stray", slots=1, include_deferred=False))
    with plan_doc(db, tmp_path, "[settings]\nprune = true\n\n[pools]\n") as run:
        assert run.plan.kinds == ("pool",)
        assert actions(run.plan) == [("delete", "stray", "pruned")]
        assert [str(a) for a in run.plan.unmanaged] == ['pool "default_pool"']


def test_removed_variable_and_pool_are_deleted_default_pool_never(kinds_db: Any, tmp_path: Path) -> None:
    """Managed before, now removed: deleted per kind (Terraform's rule); default_pool stays, as last set."""
    db = kinds_db()
    apply_doc(db, tmp_path, DOC)
    db.execute(db.variable.insert().values(key="unmanaged", val="x", is_encrypted=False))
    text = '[variables.analytics_bucket]\nvalue = "s3://analytics-prod"\ndescription = "Where the ETL writes"\n\n[pools]\n'
    run = apply_doc(
        db, tmp_path, "[connections.warehouse]\nconn_type = 'postgres'\nhost = 'wh.internal'\n" + text
    )
    assert sorted(actions(run.plan)) == [
        ("delete", "db_password", "removed"),
        ("delete", "etl", "removed"),
        ("delete", "feature_flags", "removed"),
        ("delete", "slack_token", "removed"),
    ]
    assert set(db.variables()) == {"analytics_bucket", "unmanaged"}
    assert set(db.pools()) == {"default_pool"}
    assert db.pools()["default_pool"]["slots"] == 64


def test_ignore_applies_to_variables_and_pools(kinds_db: Any, tmp_path: Path) -> None:
    """`ignore` patterns keep matching variables and pools out of prune, by key and name."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="tmp_scratch", val="x", is_encrypted=False))
    db.execute(db.pool.insert().values(pool="tmp_pool", slots=1, include_deferred=False))
    text = '[settings]\nprune = true\nignore = ["tmp_*"]\n\n[variables]\n\n[pools]\n'
    with plan_doc(db, tmp_path, text) as run:
        assert run.plan.operations == ()
        assert sorted((a.kind, a.key) for a in run.plan.ignored) == [
            ("pool", "tmp_pool"),
            ("variable", "tmp_scratch"),
        ]


@pytest.mark.parametrize(
    ("stored", "declared", "changes"),
    [
        ('{"b": [1, 2],\n  "a": {"x": null}}', '{ a = { x = "null" }, b = [1, 2] }', True),
        ('{"b":[1,2],"a":{"x":1}}', "{ a = { x = 1 }, b = [1, 2] }", False),
        ('{\n  "a": 1\n}', "{ a = 1 }", False),
        ("[1, 2, 3]", "[1, 2, 3]", False),
        ("[1, 2, 3]", "[1, 3, 2]", True),
        ('{"a": 1}', "'{\"a\": 1}'", False),
        ('{"a": 1}', "'{\"a\":1}'", True),
        ("not json {", "{ a = 1 }", True),
        ("5000", '"5000"', False),
    ],
    ids=[
        "json-change",
        "key-order",
        "whitespace",
        "array",
        "array-order",
        "string-same",
        "string-differs",
        "text-vs-table",
        "digits",
    ],
)
def test_variable_values_compare_semantically(
    kinds_db: Any, tmp_path: Path, stored: str, declared: str, changes: bool
) -> None:
    """A table or array compares as parsed JSON with the stored text; a string compares as the string it is."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="v", val=stored, description=None, is_encrypted=False))
    with plan_doc(db, tmp_path, f"[variables.v]\nvalue = {declared}\n") as run:
        assert bool(run.plan.operations) is changes


def test_rows_airflow_wrote_in_clear_are_read_as_they_are(kinds_db: Any, tmp_path: Path) -> None:
    """A variable stored unencrypted (is_encrypted false) is read as it is; rewriting it encrypts it."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="plain", val="v1", is_encrypted=False))
    assert no_changes(db, tmp_path, '[variables.plain]\nvalue = "v1"\n')
    apply_doc(db, tmp_path, '[variables.plain]\nvalue = "v2"\n')
    (row,) = db.rows(db.variable)
    assert row["is_encrypted"] and db.variables() == {"plain": "v2"}


def test_sensitive_variables_never_appear_in_output_state_plan_files_or_backups(
    kinds_db: Any, tmp_path: Path
) -> None:
    """Values from references or under a sensitive key are masked in every output and digested in every file."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="api_token", val=f"{CANARY}-old-clear", is_encrypted=False))
    env = {"DCONN_DB_URL": db.db.url, "DCONN_FERNET_KEY": db.db.fernet_key, "KINDS_SLACK": f"{CANARY}-env"}
    text = DOC + f'\n[variables.api_token]\nvalue = "{CANARY}-new"\n'
    (tmp_path / "connections.toml").write_text(text)
    outputs = [
        run_dconn("plan", "--format", fmt, cwd=tmp_path, env=env) for fmt in ("text", "json", "markdown")
    ]
    saved = run_dconn("plan", "--out", "saved.plan", cwd=tmp_path, env=env)
    applied = run_dconn("apply", "saved.plan", "--auto-approve", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert '# variable "api_token" will be updated in place' in outputs[0].stdout
    assert "~ value = (sensitive value changed)" in outputs[0].stdout
    assert "+ value = (sensitive value)" in outputs[0].stdout
    document = json.loads(outputs[1].stdout)
    Draft202012Validator(load_schema("plan.schema.json")).validate(document)
    assert [a["kind"] for a in document["actions"]] == ["connection", *["variable"] * 5, "pool", "pool"]
    json_actions = {(a["kind"], a["key"]): a for a in document["actions"]}
    assert json_actions[("variable", "slack_token")]["changes"][0]["sensitive"] is True
    for result in (*outputs, saved, applied):
        assert CANARY not in result.stdout + result.stderr
    files = [
        p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db" and p.name != "connections.toml"
    ]
    assert any("backups" in str(p) for p in files)
    for file in files:
        assert CANARY not in file.read_text(errors="replace"), file
    assert db.variables()["api_token"] == f"{CANARY}-new"


def test_a_variable_edited_outside_dconn_is_drift(kinds_db: Any, tmp_path: Path) -> None:
    """An edit made in Airflow to a managed variable or pool is reported as drift, then reverted."""
    db = kinds_db()
    apply_doc(db, tmp_path, DOC)
    db.execute(
        db.variable.update()
        .where(db.variable.c.key == "analytics_bucket")
        .values(val="edited", is_encrypted=False)
    )
    db.execute(db.pool.update().where(db.pool.c.pool == "etl").values(slots=2))
    with plan_doc(db, tmp_path, DOC) as run:
        assert sorted((d.address.kind, d.address.key) for d in run.plan.drift) == [
            ("pool", "etl"),
            ("variable", "analytics_bucket"),
        ]
        assert sorted(actions(run.plan)) == [
            ("update", "analytics_bucket", "declared"),
            ("update", "etl", "declared"),
        ]
        text = run.render()
    assert 'variable "analytics_bucket"' in text and 'pool "etl"' in text


def test_include_deferred_needs_airflow_2_7(kinds_db: Any, tmp_path: Path) -> None:
    """A pool's include_deferred on a table without the column (Airflow < 2.7) is an error; nothing is written."""
    db = kinds_db(shape="2.6")
    with pytest.raises(
        ValidationFailed,
        match=r"pools\.etl\.include_deferred: .* no include_deferred column; it needs Airflow 2\.7",
    ):
        plan_doc(db, tmp_path, "[pools.etl]\nslots = 2\ninclude_deferred = true\n")
    with plan_doc(db, tmp_path, "[pools.etl]\nslots = 2\n") as run:
        assert actions(run.plan) == [("create", "etl", "declared")]


def test_variables_on_airflow_1_10_tables_have_no_description(kinds_db: Any, tmp_path: Path) -> None:
    """On a 1.10 variable table (no description column) a value applies; a description is an error."""
    db = kinds_db(shape="1.10")
    apply_doc(db, tmp_path, '[variables.a]\nvalue = "x"\n')
    assert db.variables() == {"a": "x"}
    with pytest.raises(ValidationFailed, match=r"variables\.a\.description: .* no description column"):
        plan_doc(db, tmp_path, '[variables.a]\nvalue = "x"\ndescription = "d"\n')


def test_team_name_on_airflow_3_2(kinds_db: Any, tmp_path: Path) -> None:
    """Airflow 3.2+: team_name on variables and pools must name an existing team, and is written when it does."""
    db = kinds_db(shape="3.2")
    text = '[variables.a]\nvalue = "x"\nteam_name = "nope"\n'
    with pytest.raises(ValidationFailed, match='variable "a" field team_name: there is no team "nope"'):
        plan_doc(db, tmp_path, text)
    db.execute(sa.text("INSERT INTO team (id, name) VALUES ('00000000000000000000000000000001', 'team_a')"))
    apply_doc(
        db, tmp_path, text.replace("nope", "team_a") + '\n[pools.etl]\nslots = 1\nteam_name = "team_a"\n'
    )
    assert [r["team_name"] for r in db.rows(db.variable)] == ["team_a"]
    assert db.pools()["etl"]["team_name"] == "team_a"


REFUSE_ETL = {
    "sqlite": [
        "CREATE TRIGGER refuse_etl BEFORE INSERT ON slot_pool WHEN NEW.pool = 'etl' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    ],
    "postgres": [
        "CREATE FUNCTION refuse_etl() RETURNS trigger AS $$ BEGIN "
        "IF NEW.pool = 'etl' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_etl BEFORE INSERT ON slot_pool FOR EACH ROW EXECUTE FUNCTION refuse_etl()",
    ],
    "mysql": [
        "CREATE TRIGGER refuse_etl BEFORE INSERT ON slot_pool FOR EACH ROW BEGIN "
        "IF NEW.pool = 'etl' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'; "
        "END IF; END"
    ],
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_kinds_are_one_transaction(kinds_db: Any, tmp_path: Path, backend: str) -> None:
    """When the pool insert fails (pools are written last), the connections and variables of the apply are not written."""
    db = kinds_db(backend)
    for statement in REFUSE_ETL[backend]:
        db.execute(sa.text(statement))
    with plan_doc(db, tmp_path, DOC) as run, pytest.raises(DatabaseError, match="nothing was changed"):
        apply(run)
    assert db.variables() == {}
    assert set(db.pools()) == {"default_pool"}
    assert db.pools()["default_pool"]["slots"] == 128
    assert db.db.rows() == []


def test_validation_names_kind_file_and_path(tmp_path: Path) -> None:
    """Bad variables and pools are reported with the file, dotted path and the kind's own rule, every problem at once."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[variables.a]\ndescription = "no value"\n\n[variables.b]\nvalue = 12345\n\n'
        '[variables."bad\\u0001key"]\nvalue = "x"\n\n[pools."p\\u0002"]\nslots = 1\n\n'
        '[pools.p]\nslots = -2\n\n[pools.q]\nslots = "4"\nsize = 1\n\n[pools.r]\ndescription = "no slots"\n'
    )
    with pytest.raises(ValidationFailed) as raised:
        load_desired(path)
    lines = str(raised.value)
    for expected in (
        f"{path}: variables.a: 'value' is a required property",
        f"{path}: variables.b.value: must be a string, a table or an array, or a secret reference",
        f'{path}: variables."bad\\u0001key": invalid variable key: use 1 to 250 characters',
        f'{path}: pools."p\\u0002": invalid pool name: use 1 to 256 characters',
        f"{path}: pools.p.slots: -2 is below the minimum -1",
        f"{path}: pools.q.slots: '4' is not of type 'integer'",
        f"{path}: pools.q: unknown field 'size'",
        f"{path}: pools.r: 'slots' is a required property",
    ):
        assert expected in lines, (expected, lines)
    assert "12345" not in lines  # a variable's value may be a secret: never echoed


def test_python_api_declares_every_kind(kinds_db: Any, tmp_path: Path) -> None:
    """desired_from_dicts takes variables= and pools= like connections=, with the same rules."""
    db = kinds_db()
    desired = desired_from_dicts(
        variables={"flags": {"value": {"on": True}}, "bucket": {"value": "s3://b"}},
        pools={"etl": {"slots": -1}},
    )
    assert desired.kinds == ("variable", "pool")
    with plan(desired, workspace(db, tmp_path)) as run:
        apply(run)
    assert db.variables() == {"flags": '{\n  "on": true\n}', "bucket": "s3://b"}
    assert db.pools()["etl"]["slots"] == -1
    with pytest.raises(ValidationFailed, match=r"pools\.etl\.slots"):
        desired_from_dicts(pools={"etl": {"slots": -5}})


def test_restore_puts_variables_and_pools_back(kinds_db: Any, tmp_path: Path) -> None:
    """A backup of an apply that changed variables and pools restores them as they were."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="a", val="before", is_encrypted=False))
    env = {"DCONN_DB_URL": db.db.url, "DCONN_FERNET_KEY": db.db.fernet_key}
    (tmp_path / "connections.toml").write_text(
        '[variables.a]\nvalue = "after"\n\n[pools.default_pool]\nslots = 3\n'
    )
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    assert db.variables() == {"a": "after"}
    (backup,) = (tmp_path / ".dconn" / "backups").iterdir()
    restored = run_dconn("restore", str(backup), "--auto-approve", cwd=tmp_path, env=env)
    assert restored.returncode == 0, restored.stderr
    assert db.variables() == {"a": "before"}
    assert db.pools()["default_pool"]["slots"] == 128


def test_restore_keeps_a_clear_secret_and_its_flag_together(kinds_db: Any, tmp_path: Path) -> None:
    """A sensitive variable stored in clear is backed up as a digest; restore leaves its value and flag as they are."""
    db = kinds_db()
    db.execute(db.variable.insert().values(key="api_token", val=f"{CANARY}-clear", is_encrypted=False))
    env = {"DCONN_DB_URL": db.db.url, "DCONN_FERNET_KEY": db.db.fernet_key}
    (tmp_path / "connections.toml").write_text(f'[variables.api_token]\nvalue = "{CANARY}-new"\n')
    assert run_dconn("apply", "--auto-approve", cwd=tmp_path, env=env).returncode == 0
    (backup,) = (tmp_path / ".dconn" / "backups").iterdir()
    assert CANARY not in backup.read_text()
    restored = run_dconn("restore", str(backup), "--auto-approve", cwd=tmp_path, env=env)
    assert restored.returncode == 0, restored.stderr
    assert "its val was a secret stored in clear" in restored.stdout
    assert db.variables() == {"api_token": f"{CANARY}-new"}


def test_a_plan_after_an_apply_leaves_the_state_as_the_apply_wrote_it(kinds_db: Any, tmp_path: Path) -> None:
    """The apply records a variable's table as the next plan reads it (its JSON text parsed): the plan rewrites nothing."""
    db = kinds_db()
    apply_doc(db, tmp_path, DOC)
    state = tmp_path / ".dconn" / "state.json"
    written = state.read_bytes()
    assert no_changes(db, tmp_path, DOC)
    import difflib

    diff = list(
        difflib.unified_diff(written.decode().splitlines(), state.read_text().splitlines(), lineterm="", n=0)
    )
    assert state.read_bytes() == written, "\n".join(diff[:40])


def test_a_table_variable_is_recorded_as_the_table_it_is(kinds_db: Any, tmp_path: Path) -> None:
    """The snapshot keeps a table variable as parsed JSON, the applied record's form: its text reformatted in
    Airflow (other whitespace, other key order) is neither drift nor a change, and the snapshot stays the record."""
    db = kinds_db()
    apply_doc(db, tmp_path, DOC)
    fernet = Fernet(db.db.fernet_key.encode())
    reformatted = '{"regions": ["eu", "us"], "max_rows": 5000,   "enabled": true}'
    db.execute(
        db.variable.update()
        .where(db.variable.c.key == "feature_flags")
        .values(val=fernet.encrypt(reformatted.encode()).decode(), is_encrypted=True)
    )
    assert no_changes(db, tmp_path, DOC)
    state = json.loads((tmp_path / ".dconn" / "state.json").read_text())
    (entry,) = [o for o in state["snapshot"]["objects"] if o["key"] == "feature_flags"]
    table = {"enabled": True, "max_rows": 5000, "regions": ["eu", "us"]}
    assert entry["fields"]["value"] == table == state["applied"]["variable"]["feature_flags"]["value"]
