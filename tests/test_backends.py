"""Every Airflow table shape on SQLite, PostgreSQL and MariaDB/MySQL, and each backend's quirks.

Server tests run against the machine's real servers, each in a fresh database made by the
`make_db` fixture; outside CI they skip when a server is down, with CI=true they fail.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from declarative_conns.api import PlannedRun, apply, plan
from declarative_conns.config.loader import load_desired
from declarative_conns.core.model import Address, Values
from declarative_conns.core.operations import Create
from declarative_conns.errors import DatabaseError, TargetError, ValidationFailed
from declarative_conns.targets.database import connect, timeouts
from declarative_conns.targets.discovery import mask_url, resolve_target
from declarative_conns.workspace import Workspace
from tests.airflow_tables import insert_raw
from tests.conftest import AirflowDb
from tests.helpers import open_target

CANARY = "canary-backend-5e21"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
SERVERS = BACKENDS[1:]
SHAPES = ["1.10", "2.x", "2.x-nounique", "3.1", "3.2"]
SHAPE_NAMES = {"1.10": "1.10", "2.x": "2.x", "2.x-nounique": "2.x", "3.1": "3.1", "3.2": "3.2+"}
EXTRA = {
    "text": "plain",
    "empty": "",
    "int": 42,
    "negative": -7,
    "big": 9007199254740993,
    "float": 1.5,
    "yes": True,
    "no": False,
    "list": [1, "two", 3.5, False, [], {}],
    "nested": {"deep": {"list": ["a", {"b": 1}]}},
    "unicode": "Entrepôt 東京",
    "api_token": f"{CANARY}-tok",
}


def toml_doc(shape: str, *, team: str | None = None) -> str:
    """Return a document using every field the shape has, and every JSON type in extra."""
    lines = [
        "[connections.warehouse]",
        'conn_type = "postgres"',
        'host = "wh.internal"',
        'schema = "analytics"',
        'login = "etl_üser"',
        f'password = "{CANARY}"',
        "port = 5432",
        f"extra_json = '{json.dumps(EXTRA, ensure_ascii=False)}'",
    ]
    if shape != "1.10":
        lines.append('description = "Entrepôt — 100% \\"quoted\\"\\nline two"')
    if team:
        lines.append(f'team_name = "{team}"')
    lines += ["", "[connections.minimal]", 'conn_type = "http"']
    return "\n".join(lines) + "\n"


def workspace(db: AirflowDb, tmp_path: Path, url: str | None = None, **env: str) -> Workspace:
    """Return a workspace for a test database; `env` are Airflow variables (e.g. its schema)."""
    environ = {"AIRFLOW_HOME": str(tmp_path / "no-airflow-home"), **env}
    target = resolve_target(url or db.url, db.fernet_key, environ=environ)
    return Workspace(target, tmp_path / ".dconn" / "state.json", lock_timeout=5)


def run_plan(db: AirflowDb, tmp_path: Path, doc: str, **kwargs: Any) -> PlannedRun:
    """Write the document and plan it against the database."""
    path = tmp_path / "connections.toml"
    path.write_text(doc, encoding="utf-8")
    ws = kwargs.pop("ws", None) or workspace(db, tmp_path)
    return plan(load_desired(path), ws, **kwargs)


def plan_and_apply(db: AirflowDb, tmp_path: Path, doc: str, **kwargs: Any) -> PlannedRun:
    """Plan, apply and close."""
    run = run_plan(db, tmp_path, doc, **kwargs)
    try:
        apply(run)
    finally:
        run.close()
    return run


def add_team(db: AirflowDb, name: str) -> None:
    """Create an Airflow 3.x team row."""
    team = sa.Table("team", sa.MetaData(), autoload_with=db.engine)
    with db.engine.begin() as conn:
        # sa.Uuid is native on PostgreSQL and CHAR(32) of hex elsewhere (as reflected here).
        team_id = uuid.uuid4() if db.backend == "postgres" else uuid.uuid4().hex
        conn.execute(team.insert(), [{"id": team_id, "name": name}])


def decrypted(db: AirflowDb, row: dict[str, Any]) -> dict[str, Any]:
    """Return a stored row with password and extra decrypted and extra parsed."""
    fernet = Fernet(db.fernet_key.encode())
    out = dict(row)
    if row["is_encrypted"]:
        out["password"] = fernet.decrypt(row["password"].encode()).decode()
    if row["is_extra_encrypted"]:
        out["extra"] = fernet.decrypt(row["extra"].encode()).decode()
    out["extra"] = json.loads(out["extra"]) if out["extra"] else None
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_field_round_trips_on_every_shape(
    make_db: Any, tmp_path: Path, backend: str, shape: str
) -> None:
    """Apply writes what Airflow would store, on every shape and backend; the next plan is empty."""
    db = make_db(backend, shape)
    team = "analytics" if shape == "3.2" else None
    if team:
        add_team(db, team)
    first = plan_and_apply(db, tmp_path, toml_doc(shape, team=team))
    assert first.context.shape == SHAPE_NAMES[shape]
    rows = {r["conn_id"]: decrypted(db, r) for r in db.rows()}
    assert set(rows) == {"warehouse", "minimal"}
    got = rows["warehouse"]
    assert (got["conn_type"], got["host"], got["schema"], got["login"], got["port"]) == (
        "postgres",
        "wh.internal",
        "analytics",
        "etl_üser",
        5432,
    )
    assert got["password"] == CANARY
    assert got["extra"] == EXTRA
    assert bool(got["is_encrypted"]) and bool(got["is_extra_encrypted"])
    if shape != "1.10":
        assert got["description"] == 'Entrepôt — 100% "quoted"\nline two'
    if team:
        assert got["team_name"] == team
    minimal = rows["minimal"]
    assert minimal["conn_type"] == "http" and minimal["host"] is None and minimal["extra"] is None
    assert not minimal["is_encrypted"] and not minimal["is_extra_encrypted"]
    again = run_plan(db, tmp_path, toml_doc(shape, team=team))
    try:
        assert not again.plan.summary.has_changes
    finally:
        again.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_names_the_target_with_the_password_masked(make_db: Any, tmp_path: Path, backend: str) -> None:
    """The plan's first line names the database it read, password masked, and the table's shape."""
    db = make_db(backend, "2.x")
    url = db.url
    if backend == "postgres":  # trust authentication accepts any password: show one masked
        url = sa.make_url(db.url).set(password=CANARY).render_as_string(hide_password=False)
    run = run_plan(db, tmp_path, toml_doc("2.x"), ws=workspace(db, tmp_path, url=url))
    try:
        text = run.render("text")
    finally:
        run.close()
    assert text.splitlines()[0].startswith(f"Target: {mask_url(url)} (Airflow 2.x table")
    assert CANARY not in text


@pytest.mark.parametrize(
    ("shape", "field", "line"),
    [
        ("1.10", "team_name", 'team_name = "analytics"'),
        ("2.x", "team_name", 'team_name = "analytics"'),
        ("3.1", "team_name", 'team_name = "analytics"'),
        ("1.10", "description", 'description = "d"'),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_field_the_table_lacks_is_an_error_at_plan(
    make_db: Any, tmp_path: Path, backend: str, shape: str, field: str, line: str
) -> None:
    """Declaring team_name before 3.2, or description on 1.10, is an error naming file and field."""
    db = make_db(backend, shape)
    doc = f'[connections.a]\nconn_type = "http"\n{line}\n'
    with pytest.raises(
        ValidationFailed, match=rf"connections\.toml: connections\.a\.{field}: .*has no {field}"
    ):
        run_plan(db, tmp_path, doc)
    assert db.rows() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_team_is_refused_before_writing(make_db: Any, tmp_path: Path, backend: str) -> None:
    """On 3.2+, a team_name with no team row is an error naming connection and team; nothing written."""
    db = make_db(backend, "3.2")
    add_team(db, "analytics")
    doc = '[connections.a]\nconn_type = "http"\nteam_name = "nobody"\n'
    with pytest.raises(ValidationFailed, match='connection "a" field team_name: there is no team "nobody"'):
        plan_and_apply(db, tmp_path, doc)
    assert db.rows() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_long_value_is_refused_before_writing(make_db: Any, tmp_path: Path, backend: str) -> None:
    """A host longer than VARCHAR(500) is an error naming connection and field; nothing is written."""
    db = make_db(backend, "2.x")
    insert_raw(db.engine, db.table, [{"conn_id": "keep", "conn_type": "http", "host": "old"}])
    before = db.rows()
    doc = f'[connections.keep]\nconn_type = "http"\nhost = "{"h" * 501}"\n'
    with pytest.raises(
        ValidationFailed, match='connection "keep" field host: 501 characters, the column holds 500'
    ):
        plan_and_apply(db, tmp_path, doc)
    assert db.rows() == before
    fits = plan_and_apply(db, tmp_path, doc.replace("h" * 501, "h" * 500))
    assert fits.plan.summary.change == 1
    assert db.rows()[0]["host"] == "h" * 500


@pytest.mark.parametrize("backend", BACKENDS)
def test_encrypted_length_is_checked_on_airflow_1_10(make_db: Any, tmp_path: Path, backend: str) -> None:
    """1.10's password is VARCHAR(5000): a password that fits in clear but not encrypted is refused."""
    db = make_db(backend, "1.10")
    doc = f'[connections.a]\nconn_type = "http"\npassword = "{"p" * 3900}"\n'
    with pytest.raises(
        ValidationFailed, match=r'connection "a" field password: \d+ characters once encrypted'
    ):
        plan_and_apply(db, tmp_path, doc)
    assert db.rows() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_airflow_1_10_rows_with_nulls_and_duplicates_are_read(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """1.10 rows with a NULL conn_type and duplicate conn_ids plan as Airflow's 2.0 upgrade needs."""
    db = make_db(backend, "1.10")
    insert_raw(
        db.engine,
        db.table,
        [
            {"conn_id": "dup", "conn_type": "http", "host": "a"},
            {"conn_id": "dup", "conn_type": None, "host": "b"},
            {"conn_id": "loose", "conn_type": None},
        ],
    )
    run = plan_and_apply(db, tmp_path, '[connections.dup]\nconn_type = "http"\nhost = "a"\n')
    assert run.plan.summary.destroy == 1
    assert [(r["conn_id"], r["host"]) for r in db.rows()] == [("dup", "a"), ("loose", None)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_conn_ids_differing_in_case_are_distinct_under_airflow_test_collations(
    make_db: Any, tmp_path: Path, backend: str
) -> None:
    """ "MyConn" and "myconn" are two connections on SQLite, PostgreSQL and a MySQL bin collation."""
    db = make_db(backend, "2.x")
    doc = '[connections.MyConn]\nconn_type = "http"\n\n[connections.myconn]\nconn_type = "ftp"\n'
    plan_and_apply(db, tmp_path, doc)
    assert sorted((r["conn_id"], r["conn_type"]) for r in db.rows()) == [
        ("MyConn", "http"),
        ("myconn", "ftp"),
    ]
    again = run_plan(db, tmp_path, doc)
    try:
        assert not again.plan.summary.has_changes
    finally:
        again.close()


@pytest.mark.mysql
def test_case_insensitive_collation_refuses_colliding_conn_ids(make_db: Any, tmp_path: Path) -> None:
    """Under utf8mb4_general_ci (what Airflow's own migrations leave), a case collision fails at plan."""
    db = make_db("mysql", "2.x")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE connection MODIFY conn_id VARCHAR(250) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
        )
    both = '[connections.MyConn]\nconn_type = "http"\n\n[connections.myconn]\nconn_type = "ftp"\n'
    with pytest.raises(ValidationFailed, match='connections "MyConn" and "myconn" are one connection here'):
        run_plan(db, tmp_path, both)
    insert_raw(db.engine, db.table, [{"conn_id": "MyConn", "conn_type": "http"}])
    with pytest.raises(ValidationFailed, match='connection "myconn" is the database\'s connection "MyConn"'):
        run_plan(db, tmp_path, '[connections.myconn]\nconn_type = "http"\n')
    assert [r["conn_id"] for r in db.rows()] == ["MyConn"]


@pytest.mark.mysql
def test_mysql_quotes_the_schema_column(make_db: Any) -> None:
    """`schema` is a reserved word in MySQL: every statement dconn writes quotes it."""
    db = make_db("mysql", "2.x")
    opened = open_target(db.url)
    try:
        table = opened.table("connection")
        insert = str(table.insert().compile(opened.engine))
        update = str(table.update().values(schema="x").compile(opened.engine))
    finally:
        opened.close()
    assert "`schema`" in insert and "`schema`" in update


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_columns_hold_what_the_backend_holds(make_db: Any, tmp_path: Path, backend: str) -> None:
    """A 40,000-character login of 2-byte letters exceeds MySQL TEXT's 65,535 bytes only on MySQL."""
    db = make_db(backend, "2.x")
    doc = f'[connections.a]\nconn_type = "http"\nlogin = "{"é" * 40000}"\n'
    if backend == "mysql":
        with pytest.raises(
            ValidationFailed, match='connection "a" field login: 80000 bytes, the column holds 65535'
        ):
            plan_and_apply(db, tmp_path, doc)
        assert db.rows() == []
    else:
        plan_and_apply(db, tmp_path, doc)
        assert db.rows()[0]["login"] == "é" * 40000


@pytest.mark.mysql
def test_utf8mb3_table_refuses_emoji_before_writing(make_db: Any, tmp_path: Path) -> None:
    """On a utf8mb3 table, text beyond U+FFFF is an error naming connection and field; BMP text is kept."""
    db = make_db("mysql", "2.x")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE connection CONVERT TO CHARACTER SET utf8mb3 COLLATE utf8mb3_bin")
    emoji = '[connections.a]\nconn_type = "http"\ndescription = "deploy 🚀"\n'
    with pytest.raises(ValidationFailed, match=r'connection "a" field description: .*utf8mb3 cannot store'):
        plan_and_apply(db, tmp_path, emoji)
    assert db.rows() == []
    plan_and_apply(db, tmp_path, emoji.replace("🚀", "東京 é ✓"))
    assert db.rows()[0]["description"] == "deploy 東京 é ✓"


@pytest.mark.mysql
def test_utf8mb4_table_keeps_emoji(make_db: Any, tmp_path: Path) -> None:
    """On a utf8mb4 table (Airflow's recommendation) emoji are stored and read back exactly."""
    db = make_db("mysql", "2.x")
    plan_and_apply(db, tmp_path, '[connections.a]\nconn_type = "http"\ndescription = "deploy 🚀"\n')
    assert db.rows()[0]["description"] == "deploy 🚀"
    again = run_plan(db, tmp_path, '[connections.a]\nconn_type = "http"\ndescription = "deploy 🚀"\n')
    try:
        assert not again.plan.summary.has_changes
    finally:
        again.close()


@pytest.mark.mysql
def test_mysql_sessions_are_strict_and_wait_db_timeout_or_for_the_lock(make_db: Any) -> None:
    """MySQL sessions never truncate; reads wait --db-timeout, plus --lock-timeout for the apply lock."""
    db = make_db("mysql", "2.x")
    opened = open_target(db.url, lock_timeout=30, db_timeout=7)
    try:
        with opened.reading() as conn:
            mode, row_locks, table_locks = conn.exec_driver_sql(
                "SELECT @@SESSION.sql_mode, @@SESSION.innodb_lock_wait_timeout, @@SESSION.lock_wait_timeout"
            ).one()
            dbapi: Any = conn.connection.dbapi_connection
            read_timeout = dbapi._read_timeout
            with timeouts.waiting_for_lock(conn, 30):
                lock_wait_timeout = dbapi._read_timeout
            after = dbapi._read_timeout
    finally:
        opened.close()
    assert "STRICT_ALL_TABLES" in str(mode)
    assert (read_timeout, lock_wait_timeout, after) == (7, 37, 7)
    assert (row_locks, table_locks) == (7, 7)


@pytest.mark.postgres
def test_postgres_sessions_never_prepare_statements(make_db: Any) -> None:
    """psycopg never prepares statements server-side, so PgBouncer's transaction pooling works."""
    db = make_db("postgres", "2.x")
    opened = open_target(db.url)
    try:
        with opened.reading() as conn:
            threshold = conn.connection.dbapi_connection.prepare_threshold  # type: ignore[union-attr]
    finally:
        opened.close()
    assert threshold is None


@pytest.mark.postgres
def test_nul_character_is_refused_on_postgres(make_db: Any, tmp_path: Path) -> None:
    """PostgreSQL cannot store NUL in text: an error naming connection and field, before writing."""
    db = make_db("postgres", "2.x")
    with pytest.raises(ValidationFailed, match='connection "a" field login: holds a NUL character'):
        plan_and_apply(db, tmp_path, '[connections.a]\nconn_type = "http"\nlogin = "a\\u0000b"\n')
    assert db.rows() == []


def move_to_schema(db: AirflowDb, schema: str) -> None:
    """Move the connection (and team) tables into a PostgreSQL schema, as sql_alchemy_schema has it."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        conn.exec_driver_sql(f"ALTER TABLE connection SET SCHEMA {schema}")


@pytest.mark.postgres
def test_sql_alchemy_schema_is_honoured_on_postgres(make_db: Any, tmp_path: Path) -> None:
    """With AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA, dconn reads and writes that schema's table."""
    db = make_db("postgres", "2.x")
    move_to_schema(db, "airflow_meta")
    doc = '[connections.a]\nconn_type = "http"\nhost = "h"\n'
    with pytest.raises(TargetError, match="has no connection table: is this"):
        run_plan(db, tmp_path, doc)
    ws = workspace(db, tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA="airflow_meta")
    assert ws.target.settings.schema == "airflow_meta"
    plan_and_apply(db, tmp_path, doc, ws=ws)
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT conn_id, host FROM airflow_meta.connection").all()
    assert [tuple(r) for r in rows] == [("a", "h")]
    again = run_plan(db, tmp_path, doc, ws=ws)
    try:
        assert not again.plan.summary.has_changes
    finally:
        again.close()


@pytest.mark.postgres
def test_missing_schema_is_named_in_the_error(make_db: Any, tmp_path: Path) -> None:
    """A sql_alchemy_schema without the table says which schema it looked in."""
    db = make_db("postgres", "2.x")
    ws = workspace(db, tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA="nowhere")
    with pytest.raises(TargetError, match='has no connection table in schema "nowhere"'):
        run_plan(db, tmp_path, '[connections.a]\nconn_type = "http"\n', ws=ws)


@pytest.mark.postgres
def test_search_path_in_the_url_finds_the_table(make_db: Any, tmp_path: Path) -> None:
    """A URL carrying `options=-csearch_path=...` (another way Airflow users set a schema) works."""
    db = make_db("postgres", "2.x")
    move_to_schema(db, "airflow_meta")
    url = db.url + "?options=-csearch_path%3Dairflow_meta"
    plan_and_apply(db, tmp_path, '[connections.a]\nconn_type = "http"\n', ws=workspace(db, tmp_path, url=url))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM airflow_meta.connection").scalar() == 1


AIRFLOW_SPELLINGS = {
    "postgres": ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"],
    "mysql": ["mysql", "mysql+mysqldb", "mysql+pymysql", "mariadb", "mariadb+mysqldb"],
}


@pytest.mark.parametrize(
    ("backend", "scheme"),
    [
        pytest.param(b, s, marks=getattr(pytest.mark, b), id=s)
        for b in ("postgres", "mysql")
        for s in AIRFLOW_SPELLINGS[b]
    ],
)
def test_airflow_url_spellings_work_with_the_installed_driver(
    make_db: Any, tmp_path: Path, backend: str, scheme: str
) -> None:
    """Airflow's URL works as written: the scheme's driver is swapped for one dconn has."""
    db = make_db(backend, "2.x")
    url = scheme + "://" + db.url.split("://", 1)[1]
    plan_and_apply(db, tmp_path, '[connections.a]\nconn_type = "http"\n', ws=workspace(db, tmp_path, url=url))
    assert [r["conn_id"] for r in db.rows()] == ["a"]


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql+psycopg2://u:pw@127.0.0.1/x", "declarative-conns[postgres]"),
        ("postgres://u:pw@127.0.0.1/x", "declarative-conns[postgres]"),
        ("mysql+mysqldb://u:pw@127.0.0.1/x", "declarative-conns[mysql]"),
        ("mariadb://u:pw@127.0.0.1/x", "declarative-conns[mysql]"),
    ],
)
def test_missing_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    """With no driver for the backend installed, the error says which extra to install."""
    monkeypatch.setattr(connect, "_installed", lambda module: False)
    with pytest.raises(
        TargetError, match=rf"no .* driver is installed: pip install '{extra}'".replace("[", r"\[")
    ):
        open_target(url)


def test_driver_without_its_libpq_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg found but not loadable (no libpq) is the same one-line error, not a traceback."""

    def broken(driver: str) -> int:
        raise ImportError("no pq wrapper available")

    monkeypatch.setattr(timeouts, "_libpq_version", broken)
    with pytest.raises(TargetError, match=r"cannot be loaded .*declarative-conns\[postgres\]"):
        open_target("postgresql://u:pw@127.0.0.1/x")


def test_driver_that_fails_to_load_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver found but not loadable (e.g. psycopg without its libpq) is an error naming the extra."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ImportError("no pq wrapper available")

    monkeypatch.setattr(connect.sa, "create_engine", broken)
    with pytest.raises(TargetError, match=r"cannot be loaded .*declarative-conns\[postgres\]"):
        open_target("postgresql://u:pw@127.0.0.1/x")


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_silent_server_is_an_error_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, silent_server: int, scheme: str
) -> None:
    """A server that accepts but never answers fails within the connect timeout, password masked."""
    monkeypatch.setattr(connect, "CONNECT_TIMEOUT_SECONDS", 2)
    started = time.monotonic()
    with pytest.raises(DatabaseError, match=r"no answer within 2 s \(connect timeout\)") as caught:
        open_target(f"{scheme}://u:{CANARY}@127.0.0.1:{silent_server}/x")
    assert time.monotonic() - started < 8
    assert CANARY not in str(caught.value) and f"u:***@127.0.0.1:{silent_server}" in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgres", "mysql"])
def test_refused_connection_fails_fast_with_password_masked(closed_port: int, scheme: str) -> None:
    """Nothing listening: an immediate error naming the masked URL."""
    started = time.monotonic()
    with pytest.raises(
        DatabaseError, match=rf"cannot read {scheme}://u:\*\*\*@127.0.0.1:{closed_port}/x: "
    ) as caught:
        open_target(f"{scheme}://u:{CANARY}@127.0.0.1:{closed_port}/x")
    assert time.monotonic() - started < 5
    assert CANARY not in str(caught.value)


@pytest.mark.mysql
def test_wrong_mysql_password_is_a_clear_error(make_db: Any) -> None:
    """Wrong credentials: MySQL's 'Access denied' with the password masked."""
    db = make_db("mysql", "2.x")
    url = sa.make_url(db.url).set(password=CANARY).render_as_string(hide_password=False)
    with pytest.raises(DatabaseError, match="Access denied for user 'root'") as caught:
        open_target(url)
    assert CANARY not in str(caught.value) and "root:***@" in str(caught.value)


@pytest.mark.postgres
def test_unknown_postgres_role_is_a_clear_error(make_db: Any) -> None:
    """Wrong credentials: PostgreSQL's refusal names the role; the password is masked."""
    db = make_db("postgres", "2.x")
    url = (
        sa.make_url(db.url)
        .set(username="no_such_role", password=CANARY)
        .render_as_string(hide_password=False)
    )
    with pytest.raises(DatabaseError, match='role "no_such_role" does not exist') as caught:
        open_target(url)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("backend", SERVERS)
def test_missing_database_is_a_clear_error(make_db: Any, backend: str) -> None:
    """A database name that does not exist on the server is named as such."""
    db = make_db(backend, "2.x")
    url = sa.make_url(db.url).set(database="dconn_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(DatabaseError, match="dconn_no_such_db"):
        open_target(url)


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_without_connection_table_is_not_changed(make_db: Any, backend: str) -> None:
    """A database without Airflow's table is an error that says so; dconn creates nothing."""
    db = make_db(backend, "1.10")
    db.table.drop(db.engine)
    with pytest.raises(TargetError, match=r"has no connection table: is this Airflow's metadata database"):
        open_target(db.url)
    assert not sa.inspect(db.engine).has_table("connection")


@pytest.mark.parametrize("backend", SERVERS)
def test_apply_lock_times_out_while_another_apply_holds_it(make_db: Any, backend: str) -> None:
    """A second apply waits for the lock (advisory lock / GET_LOCK) and gives up after its timeout."""
    db = make_db(backend, "2.x")
    first, second = open_target(db.url), open_target(db.url)
    try:
        with first.session(1):
            started = time.monotonic()
            with (
                pytest.raises(DatabaseError, match=r"another dconn apply .*holds the lock"),
                second.session(0.5),
            ):
                pass
            assert time.monotonic() - started < 5
        with second.session(1):
            pass
    finally:
        first.close()
        second.close()


def test_missing_sqlite_file_is_never_created(tmp_path: Path) -> None:
    """A SQLite URL naming no file is an error; the file is not created."""
    path = tmp_path / "airflow.db"
    with pytest.raises(TargetError, match="does not exist; dconn never creates an Airflow database"):
        open_target(f"sqlite:///{path}")
    assert not path.exists()


def test_in_memory_sqlite_is_refused() -> None:
    """sqlite:// (in memory) cannot hold Airflow's tables: an error, not an empty plan."""
    with pytest.raises(TargetError, match="in-memory SQLite"):
        open_target("sqlite://")


def test_sqlite_ignores_airflow_schema_setting(make_db: Any) -> None:
    """sql_alchemy_schema has no meaning for SQLite: the table is found anyway."""
    db = make_db("sqlite", "2.x")
    opened = open_target(db.url, schema="airflow")
    try:
        assert opened.open().shape == "2.x"
    finally:
        opened.close()


@pytest.mark.parametrize("url", ["mssql://u:pw@h/x", "oracle://u:pw@h/x"])
def test_unsupported_backend_is_named(url: str) -> None:
    """Only Airflow's metadata backends are accepted; the error masks the password."""
    with pytest.raises(TargetError, match=r"unsupported database .*u:\*\*\*@h/x"):
        open_target(url)


def test_check_lengths_names_an_over_long_conn_id(make_db: Any) -> None:
    """A conn_id longer than the column's 250 characters is refused, shown shortened."""
    db = make_db("sqlite", "2.x")
    opened = open_target(db.url)
    address = Address("connection", "c" * 251)
    try:
        problems = opened.check_writes([Create(address, Values({"conn_type": "http"}), ("conn_type",))])
    finally:
        opened.close()
    assert problems == [f'connection "{"c" * 57}..." field conn_id: 251 characters, the column holds 250']


def test_url_parameter_the_driver_does_not_take_is_a_clear_error(closed_port: int) -> None:
    """mysqlclient's ?ssl_mode= served by PyMySQL: an error naming the parameter, not a traceback."""
    url = f"mysql+mysqldb://root:{CANARY}@127.0.0.1:{closed_port}/x?ssl_mode=REQUIRED"
    with pytest.raises(
        DatabaseError, match=r"pymysql driver does not take the URL's parameters .*'ssl_mode'"
    ) as caught:
        open_target(url)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("password", [CANARY, "p@ss/wörd"])
def test_driver_messages_are_scrubbed_of_the_password(password: str) -> None:
    """Should a driver echo the URL's password, as written or URL-encoded, the message hides it."""
    encoded = sa.engine.URL.create("postgresql", "u", password, "h", database="x")
    url = encoded.render_as_string(hide_password=False)
    error = RuntimeError(f"failed for {password} and {url.split(':', 2)[2].split('@')[0]}\nsecond line")
    assert connect.short_reason(error, url) == "failed for *** and ***"
