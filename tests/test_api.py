"""The public Python API, used only as `import declarative_conns as dc`: dicts -> plan -> apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import declarative_conns as dc
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb

CANARY = "canary-api-9d1e"

CONNECTIONS: dict[str, dict[str, Any]] = {
    "warehouse": {
        "conn_type": "postgres",
        "host": "wh.internal",
        "schema": "analytics",
        "login": "etl",
        "password": CANARY,
        "port": 5432,
        "extra": {"sslmode": "require", "api_token": f"{CANARY}-tok"},
    },
    "slack": {"conn_type": "http", "host": "hooks.slack.com", "password": {"from_env": "API_SLACK"}},
    "files": {"conn_type": "fs", "extra": {"path": dc.SecretRef("env", "API_FILES_PATH")}},
}

ERRORS = [
    "ApplyRefused",
    "DatabaseError",
    "DecryptionError",
    "InputError",
    "PlanIsStale",
    "SecretError",
    "StateError",
    "TargetError",
    "ValidationFailed",
]


@pytest.fixture
def env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give the references in CONNECTIONS their values; return the work dir."""
    monkeypatch.setenv("API_SLACK", f"{CANARY}-slack")
    monkeypatch.setenv("API_FILES_PATH", "/data/in")
    return clean_env


def workspace(db: AirflowDb, tmp_path: Path, key: str | None = None) -> dc.Workspace:
    """Return the workspace of a test database, with its own Fernet key unless told."""
    return dc.Workspace.from_url(db.url, key or db.fernet_key, state_path=tmp_path / ".dconn" / "state.json")


def decrypt(db: AirflowDb, token: str) -> str:
    """Decrypt a stored value with the test database's key."""
    return Fernet(db.fernet_key.encode()).decrypt(token.encode()).decode()


def test_dicts_plan_render_apply_round_trip(make_db: Any, env: Path) -> None:
    """Dicts plan as creates, apply writes encrypted rows, and a second plan has no changes."""
    db = make_db("sqlite", "2.x")
    ws = workspace(db, env)
    with dc.plan(dc.desired_from_dicts(CONNECTIONS), ws) as run:
        assert "Plan: 3 to add, 0 to change, 0 to destroy." in run.render("text")
        assert dc.apply(run) == 3
    rows = {r["conn_id"]: r for r in db.rows()}
    assert decrypt(db, rows["warehouse"]["password"]) == CANARY
    assert json.loads(decrypt(db, rows["files"]["extra"])) == {"path": "/data/in"}
    assert decrypt(db, rows["slack"]["password"]) == f"{CANARY}-slack"
    with dc.plan(dc.desired_from_dicts(CONNECTIONS), ws) as again:
        assert not again.plan.summary.has_changes
        assert "No changes." in again.render("text")


def test_apply_keeps_the_cli_guarantees(make_db: Any, env: Path) -> None:
    """An API apply records the state, backs up changed rows, and removes duplicate rows."""
    db = make_db("sqlite", "1.10")
    insert_raw(
        db.engine,
        db.table,
        [{"conn_id": "slack", "conn_type": "http", "host": h} for h in ("old", "older")],
    )
    ws = workspace(db, env)
    with dc.plan(dc.desired_from_dicts({"slack": CONNECTIONS["slack"]}), ws) as run:
        assert (run.plan.summary.change, run.plan.summary.duplicates) == (1, 1)
        dc.apply(run)
    assert [(r["id"], r["host"]) for r in db.rows()] == [(1, "hooks.slack.com")]
    state = json.loads(ws.state_path.read_text())
    assert state["managed"] == {"connection": ["slack"]}
    (backup,) = (ws.state_path.parent / "backups").glob("*.json")
    assert sorted(r["id"] for r in json.loads(backup.read_text())["rows"]) == [1, 2]


def test_rows_changed_after_plan_make_apply_stale(make_db: Any, env: Path) -> None:
    """A row created between plan and apply raises PlanIsStale and nothing is written."""
    db = make_db("sqlite", "2.x")
    with dc.plan(dc.desired_from_dicts(CONNECTIONS), workspace(db, env)) as run:
        insert_raw(db.engine, db.table, [{"conn_id": "warehouse", "conn_type": "mysql"}])
        with pytest.raises(dc.PlanIsStale, match="the plan is stale"):
            dc.apply(run)
    assert [(r["conn_id"], r["conn_type"]) for r in db.rows()] == [("warehouse", "mysql")]


@pytest.mark.parametrize("declared", [CONNECTIONS, {}], ids=["with-changes", "without-changes"])
def test_a_run_applies_once(make_db: Any, env: Path, declared: dict[str, Any]) -> None:
    """Applying the same run twice is refused as stale, with or without changes; nothing more is written."""
    db = make_db("sqlite", "2.x")
    with dc.plan(dc.desired_from_dicts(declared), workspace(db, env)) as run:
        dc.apply(run)
        rows = db.rows()
        with pytest.raises(dc.PlanIsStale, match="applied already"):
            dc.apply(run)
    assert db.rows() == rows


def test_typed_workspace_from_url_takes_every_option(make_db: Any, env: Path) -> None:
    """from_url sets the db timeout, read-only and the backups folder without a cast."""
    db = make_db("sqlite", "2.x")
    ws = dc.Workspace.from_url(
        db.url,
        db.fernet_key,
        state_path=env / "s.json",
        db_timeout=5.0,
        read_only=True,
        backups_dir=env / "b",
    )
    assert ws.read_only and ws.backups_dir == env / "b"
    assert ws.target.settings.db_timeout == 5.0  # type: ignore[attr-defined]
    with (
        dc.plan(dc.desired_from_dicts(CONNECTIONS), ws) as run,
        pytest.raises(dc.InputError, match="read-only"),
    ):
        dc.apply(run)
    assert not (env / "s.json").exists()


def test_with_block_closes_the_database(make_db: Any, env: Path) -> None:
    """Leaving `with dc.plan(...) as run`, even by an exception, releases the pooled connections."""
    db = make_db("sqlite", "2.x")
    with pytest.raises(RuntimeError), dc.plan(dc.desired_from_dicts(CONNECTIONS), workspace(db, env)) as run:
        assert run.target.is_open
        raise RuntimeError("boom")
    assert not run.target.is_open


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("port", "abc", "connections.a.port: 'abc' is not of type 'integer'"),
        ("port", 70000, "connections.a.port: 70000 is above the maximum 65535"),
        ("bogus", 1, "connections.a: unknown field 'bogus'"),
        ("host", 1, "connections.a.host: 1: expected a string or a secret reference"),
        ("extra", {"x": {"from_env": "1BAD"}}, "connections.a.extra.x.from_env: '1BAD' does not match"),
    ],
)
def test_dict_errors_match_the_toml_messages(tmp_path: Path, field: str, value: Any, expected: str) -> None:
    """A bad value in a dict gets the message and path the same value gets in TOML."""
    with pytest.raises(dc.ValidationFailed) as from_dicts:
        dc.desired_from_dicts({"a": {"conn_type": "http", field: value}}, source="secrets.json")
    toml_value = json.dumps(value) if not isinstance(value, dict) else '{ x = { from_env = "1BAD" } }'
    (tmp_path / "c.toml").write_text(f'[connections.a]\nconn_type = "http"\n{field} = {toml_value}\n')
    with pytest.raises(dc.ValidationFailed) as from_toml:
        dc.load(tmp_path / "c.toml")
    assert from_dicts.value.problems == [
        p.replace(str(tmp_path / "c.toml"), "secrets.json") for p in from_toml.value.problems
    ]
    assert any(p.startswith(f"secrets.json: {expected}") for p in from_dicts.value.problems)


def test_non_string_keys_are_refused() -> None:
    """A conn_id or extra key that is not a string is refused by path (TOML keys are all strings)."""
    with pytest.raises(dc.ValidationFailed) as info:
        dc.desired_from_dicts(
            {"a": {"conn_type": "x", "extra": {1: "x"}}, 7: {"conn_type": "x"}}  # type: ignore[dict-item]
        )
    assert info.value.problems == [
        "<python>: connections.a.extra.1: keys must be strings",
        "<python>: connections.7: keys must be strings",
    ]


def test_every_problem_is_reported_with_its_path() -> None:
    """All problems of connections and settings come in one ValidationFailed, each with a path."""
    with pytest.raises(dc.ValidationFailed) as info:
        dc.desired_from_dicts({"a": {"port": "5432x"}, "bad id": {"conn_type": "x"}}, {"prune": "yes"})
    assert info.value.problems == [
        '<python>: connections."bad id": invalid conn_id: use 1 to 250 letters, digits and _ # ! ( ) - . : / \\ '
        "(Airflow's rule)",
        "<python>: connections.a: 'conn_type' is a required property",
        "<python>: connections.a.port: '5432x' is not of type 'integer'",
        "<python>: settings.prune: 'yes' is not of type 'boolean'",
    ]


def test_secret_values_never_in_validation_messages() -> None:
    """A wrongly typed secret is named by its path but its value is never echoed."""
    with pytest.raises(dc.ValidationFailed) as info:
        dc.desired_from_dicts(
            {"a": {"conn_type": "x", "password": [CANARY], "extra": {"api_key": {"nested": None}}}}
        )
    assert "connections.a.password: must be a string or a secret reference" in str(info.value)
    assert CANARY not in str(info.value)


def test_extra_as_json_text_is_refused_without_echoing_it() -> None:
    """extra given as JSON text (Airflow's stored form) is refused by path; the text is never shown."""
    with pytest.raises(dc.ValidationFailed) as info:
        dc.desired_from_dicts({"a": {"conn_type": "x", "extra": json.dumps({"password": CANARY})}})
    assert info.value.problems == ["<python>: connections.a.extra: the value is not of type 'object'"]


def test_python_shapes_are_accepted(tmp_path: Path) -> None:
    """None fields are undeclared, tuples are lists, settings apply, refs resolve in base_dir."""
    from types import MappingProxyType

    desired = dc.desired_from_dicts(
        MappingProxyType(
            {
                "a": {
                    "conn_type": "http",
                    "description": None,
                    "password": {"from_file": "pw.txt"},
                    "extra": {"hosts": ("h1", "h2")},
                }
            }
        ),
        {"prune": True, "ignore": ("*_default",)},
        base_dir=tmp_path,
    )
    fields = desired.connections["a"].fields
    assert set(fields) == {"conn_type", "password", "extra"}
    assert fields["extra"] == {"hosts": ["h1", "h2"]}
    assert fields["password"] == dc.SecretRef("file", "pw.txt", str(tmp_path))
    assert (desired.settings.prune, desired.settings.ignore) == (True, ("*_default",))


def test_extra_json_and_ignore_warning() -> None:
    """extra_json parses as in TOML, and a declared conn_id matching `ignore` warns."""
    desired = dc.desired_from_dicts(
        {"aws_default": {"conn_type": "aws", "extra_json": '{"region_name": null}'}},
        {"ignore": ["*_default"]},
    )
    assert desired.connections["aws_default"].fields["extra"] == {"region_name": None}
    assert desired.warnings == (
        'connection "aws_default" matches an ignore pattern but is declared, so dconn manages it',
    )


def test_library_calls_print_nothing(make_db: Any, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validation, plan (without a Fernet key, which warns), render and apply write nothing to stdout/stderr."""
    db = make_db("sqlite", "2.x")
    with pytest.raises(dc.ValidationFailed):
        dc.desired_from_dicts({"a": {"port": "x"}})
    ws = dc.Workspace(dc.resolve_target(db.url, None), str(env / "state.json"))  # type: ignore[arg-type]
    with dc.plan(dc.desired_from_dicts(CONNECTIONS), ws) as run:
        for fmt in ("text", "json", "markdown"):
            run.render(fmt)
        dc.apply(run)
    assert any("no Fernet key" in w for w in run.warnings)
    assert capsys.readouterr() == ("", "")


def test_canary_never_in_renders_or_reprs(make_db: Any, env: Path) -> None:
    """A secret from a literal, a from_env dict or a sensitive extra key shows in no render or repr."""
    db = make_db("sqlite", "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": "warehouse", "conn_type": "postgres", "password": "old"}])
    ws = workspace(db, env)
    desired = dc.desired_from_dicts(CONNECTIONS)
    with dc.plan(desired, ws) as run:
        shown = [run.render(fmt) for fmt in ("text", "json", "markdown")]
        shown += [repr(run), repr(desired), repr(ws), repr(run.plan), repr(run.values), str(run.__dict__)]
        assert "(sensitive value" in shown[0]
        # A compact repr: the default one would reach the raw database URL through the target.
        assert repr(run) == f"PlannedRun(target={db.url!r}, add=2, change=1, destroy=0)"
    for text in shown:
        assert CANARY not in text
        assert db.fernet_key not in text


def test_render_rejects_an_unknown_format(make_db: Any, env: Path) -> None:
    """render('yaml') raises InputError rather than silently printing text."""
    db = make_db("sqlite", "2.x")
    with (
        dc.plan(dc.desired_from_dicts(CONNECTIONS), workspace(db, env)) as run,
        pytest.raises(dc.InputError, match="text, json or markdown, not 'yaml'"),
    ):
        run.render("yaml")


def test_missing_secret_is_a_secret_error(make_db: Any, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset from_env reference raises SecretError naming the variable and writes no state."""
    monkeypatch.delenv("API_SLACK")
    db = make_db("sqlite", "2.x")
    ws = workspace(db, env)
    with pytest.raises(dc.SecretError, match="environment variable API_SLACK is not set"):
        dc.plan(dc.desired_from_dicts(CONNECTIONS), ws)
    assert not ws.state_path.exists()


def docs_example(title: str) -> str:
    """Return the first python code block after a heading of docs/api.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {title}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_docs_complete_example_runs(make_db: Any, env: Path) -> None:
    """docs/api.md's complete example, run as a script on an Airflow-configured SQLite DB, applies."""
    db = make_db("sqlite", "2.x")
    (env / "example.py").write_text(docs_example("Complete example"))
    variables = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.url,
        "AIRFLOW__CORE__FERNET_KEY": db.fernet_key,
        "WAREHOUSE_PASSWORD": CANARY,
        "SLACK_TOKEN": f"{CANARY}-slack",
    }
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=env,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in done.stdout
    assert done.stdout.endswith("Applied: 2 rows written or deleted.\n")
    assert CANARY not in done.stdout + done.stderr
    assert sorted(r["conn_id"] for r in db.rows()) == ["slack_alerts", "warehouse"]
    assert (env / ".dconn" / "state.json").is_file()


def test_docs_validation_example_holds() -> None:
    """The ValidationFailed example in docs/api.md's Errors section runs as written."""
    exec(docs_example("Errors"), {"dc": dc})


def test_error_hierarchy_is_exported() -> None:
    """Every exported error is a DconnError, the same class as in declarative_conns.errors."""
    from declarative_conns import errors

    for name in ERRORS:
        cls = getattr(dc, name)
        assert issubclass(cls, dc.DconnError) and cls is getattr(errors, name)
    assert issubclass(dc.ValidationFailed, dc.InputError)
    assert issubclass(dc.DconnError, Exception)


def test_all_names_resolve_and_dir_lists_them() -> None:
    """Every name in __all__ is importable from the package, and dir() lists it."""
    for name in dc.__all__:
        assert getattr(dc, name) is not None
    assert set(dc.__all__) <= set(dir(dc))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        dc.nope  # noqa: B018


def test_apply_stays_the_function_after_the_engine_loads() -> None:
    """`dc.apply` is the apply function even after the database target's modules were imported directly."""
    code = (
        "from declarative_conns.targets.database.target import DatabaseTarget as execute\n"
        "import declarative_conns as dc, declarative_conns.api as api\n"
        "print(dc.apply is api.apply, callable(execute))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True True"


def test_import_is_cheap() -> None:
    """`import declarative_conns` loads none of SQLAlchemy, jsonschema, typer, rich, cryptography."""
    code = (
        "import sys, declarative_conns\n"
        "heavy = {'sqlalchemy', 'jsonschema', 'typer', 'rich', 'cryptography', 'deepdiff'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_package_ships_py_typed() -> None:
    """The package holds the PEP 561 marker, so users' type checkers read its hints."""
    from importlib.resources import files

    assert files("declarative_conns").joinpath("py.typed").is_file()


def test_workspace_from_airflow_config(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """from_airflow_config finds the URL and key in airflow.cfg, as Airflow does; str paths work."""
    key = Fernet.generate_key().decode()
    home = env / "airflow-home"
    home.mkdir()
    (home / "airflow.cfg").write_text(
        f"[database]\nsql_alchemy_conn = postgresql://etl:{CANARY}@db/airflow\n[core]\nfernet_key = {key}\n"
    )
    ws = dc.Workspace.from_airflow_config("state/s.json", lock_timeout=5)
    assert ws.target.display == "postgresql://etl:***@db/airflow"
    assert ws.target.settings.fernet_key == key
    assert ws.state_path == Path("state/s.json") and ws.lock_timeout == 5
    assert CANARY not in repr(ws)


def test_database_errors_are_dconn_errors(env: Path) -> None:
    """A database that does not exist raises TargetError, a DconnError, and creates nothing."""
    missing = env / "nope.db"
    ws = dc.Workspace.from_url(f"sqlite:///{missing}", None, state_path=env / "s.json")
    with pytest.raises(dc.DconnError):
        dc.plan(dc.desired_from_dicts({"a": {"conn_type": "x"}}), ws)
    assert not missing.exists()
