"""Finding the database URL, Fernet key and schema as Airflow does; masking URLs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from declarative_conns.errors import TargetError
from declarative_conns.targets.discovery import describe_identity, mask_url, resolve_target, target_identity


def echo(text: str) -> str:
    """Return a command line (no shell) that prints the text, as `_CMD` options hold."""
    return shlex.join([sys.executable, "-c", f"print({text!r})"])


def write_cfg(home: Path, text: str) -> Path:
    """Write $AIRFLOW_HOME/airflow.cfg."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "airflow.cfg"
    path.write_text(text, encoding="utf-8")
    return path


# Every place a URL can come from, the winner first; each is (source named, env, cfg lines).
URL_SOURCES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("DCONN_DB_URL", {"DCONN_DB_URL": "sqlite:///dconn.db"}, {}),
    (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///env-database.db"},
        {},
    ),
    (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": echo("sqlite:///cmd-database.db")},
        {},
    ),
    ("AIRFLOW__CORE__SQL_ALCHEMY_CONN", {"AIRFLOW__CORE__SQL_ALCHEMY_CONN": "sqlite:///env-core.db"}, {}),
    (
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN_CMD",
        {"AIRFLOW__CORE__SQL_ALCHEMY_CONN_CMD": echo("sqlite:///cmd-core.db")},
        {},
    ),
    ("[database] sql_alchemy_conn", {}, {"database.sql_alchemy_conn": "sqlite:///cfg-database.db"}),
    ("[core] sql_alchemy_conn", {}, {"core.sql_alchemy_conn": "sqlite:///cfg-core.db"}),
    (
        "[database] sql_alchemy_conn_cmd",
        {},
        {"database.sql_alchemy_conn_cmd": echo("sqlite:///cfg-cmd-database.db")},
    ),
    ("[core] sql_alchemy_conn_cmd", {}, {"core.sql_alchemy_conn_cmd": echo("sqlite:///cfg-cmd-core.db")}),
]
URL_VALUES = [
    "sqlite:///dconn.db",
    "sqlite:///env-database.db",
    "sqlite:///cmd-database.db",
    "sqlite:///env-core.db",
    "sqlite:///cmd-core.db",
    "sqlite:///cfg-database.db",
    "sqlite:///cfg-core.db",
    "sqlite:///cfg-cmd-database.db",
    "sqlite:///cfg-cmd-core.db",
]


def cfg_text(options: dict[str, str]) -> str:
    """Render {"section.key": value} as an airflow.cfg (values with % escaped as %%)."""
    sections: dict[str, list[str]] = {}
    for dotted, value in options.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, []).append(f"{key} = {value.replace('%', '%%')}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())


def setup(tmp_path: Path, sources: list[tuple[str, dict[str, str], dict[str, str]]]) -> dict[str, str]:
    """Write the cfg lines of the given sources and return their environment."""
    env: dict[str, str] = {"AIRFLOW_HOME": str(tmp_path / "home")}
    options: dict[str, str] = {}
    for _, variables, lines in sources:
        env.update(variables)
        options.update(lines)
    write_cfg(tmp_path / "home", cfg_text(options))
    return env


@pytest.mark.parametrize("first", range(len(URL_SOURCES)), ids=[s[0] for s in URL_SOURCES])
def test_url_source_wins_over_every_later_source(tmp_path: Path, first: int) -> None:
    """The first URL source in Airflow's order (after dconn's own) wins over all that follow it."""
    env = setup(tmp_path, URL_SOURCES[first:])
    found = resolve_target(environ=env)
    assert found.url == URL_VALUES[first]
    assert found.url_source.endswith(URL_SOURCES[first][0])


def test_db_url_flag_wins_over_everything(tmp_path: Path) -> None:
    """--db-url beats DCONN_DB_URL, the AIRFLOW__ variables and airflow.cfg."""
    env = setup(tmp_path, URL_SOURCES)
    found = resolve_target("sqlite:///flag.db", environ=env)
    assert (found.url, found.url_source) == ("sqlite:///flag.db", "--db-url")


def test_default_is_airflow_db_in_airflow_home(tmp_path: Path) -> None:
    """With nothing set, the URL is Airflow's default: sqlite:///$AIRFLOW_HOME/airflow.db."""
    found = resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home")})
    assert found.url == f"sqlite:///{tmp_path / 'home' / 'airflow.db'}"
    assert found.fernet_key is None and found.schema is None


def test_airflow_home_defaults_to_home_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AIRFLOW_HOME, airflow.cfg and airflow.db are looked for in ~/airflow."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_cfg(tmp_path / "airflow", "[core]\nfernet_key = from-home-cfg\n")
    found = resolve_target(environ={"HOME": str(tmp_path)})
    assert found.url == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert found.fernet_key == "from-home-cfg"


def test_airflow_config_names_the_cfg_file(tmp_path: Path) -> None:
    """AIRFLOW_CONFIG points at an airflow.cfg outside AIRFLOW_HOME, as in Airflow."""
    other = write_cfg(tmp_path / "elsewhere", "[database]\nsql_alchemy_conn = sqlite:///other.db\n")
    env = {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW_CONFIG": str(other)}
    found = resolve_target(environ=env)
    assert found.url == "sqlite:///other.db"
    assert str(other) in found.url_source


KEY_SOURCES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("DCONN_FERNET_KEY", {"DCONN_FERNET_KEY": "k-dconn"}, {}),
    ("AIRFLOW__CORE__FERNET_KEY", {"AIRFLOW__CORE__FERNET_KEY": "k-env"}, {}),
    ("AIRFLOW__CORE__FERNET_KEY_CMD", {"AIRFLOW__CORE__FERNET_KEY_CMD": echo("k-cmd")}, {}),
    ("[core] fernet_key", {}, {"core.fernet_key": "k-cfg"}),
    ("[core] fernet_key_cmd", {}, {"core.fernet_key_cmd": echo("k-cfg-cmd")}),
]
KEY_VALUES = ["k-dconn", "k-env", "k-cmd", "k-cfg", "k-cfg-cmd"]


@pytest.mark.parametrize("first", range(len(KEY_SOURCES)), ids=[s[0] for s in KEY_SOURCES])
def test_fernet_key_source_wins_over_every_later_source(tmp_path: Path, first: int) -> None:
    """The first Fernet key source in Airflow's order (after dconn's own) wins over the rest."""
    env = setup(tmp_path, KEY_SOURCES[first:])
    found = resolve_target(environ=env)
    assert found.fernet_key == KEY_VALUES[first]
    assert (found.key_source or "").endswith(KEY_SOURCES[first][0])


def test_fernet_key_flag_wins(tmp_path: Path) -> None:
    """--fernet-key beats every other source of the key."""
    env = setup(tmp_path, KEY_SOURCES)
    found = resolve_target(fernet_key="k-flag", environ=env)
    assert (found.fernet_key, found.key_source) == ("k-flag", "--fernet-key")


def test_empty_airflow_key_variable_means_no_key_as_in_airflow(tmp_path: Path) -> None:
    """AIRFLOW__CORE__FERNET_KEY='' (Airflow's Docker Compose file) wins over airflow.cfg: no key."""
    write_cfg(tmp_path / "home", "[core]\nfernet_key = k-cfg\n")
    env = {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__FERNET_KEY": ""}
    found = resolve_target(environ=env)
    assert found.fernet_key is None
    assert found.key_source == "AIRFLOW__CORE__FERNET_KEY"


def test_empty_fernet_key_option_shadows_its_cmd_as_in_airflow(tmp_path: Path) -> None:
    """An empty `fernet_key =` line (as `airflow` writes it) wins over `fernet_key_cmd`."""
    write_cfg(tmp_path / "home", f"[core]\nfernet_key =\nfernet_key_cmd = {echo('k-cmd')}\n")
    found = resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home")})
    assert found.fernet_key is None


def test_empty_dconn_variables_count_as_unset(tmp_path: Path) -> None:
    """DCONN_DB_URL='' and DCONN_FERNET_KEY='' fall through to Airflow's settings."""
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "DCONN_DB_URL": "",
        "DCONN_FERNET_KEY": "",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///a.db",
        "AIRFLOW__CORE__FERNET_KEY": "k",
    }
    found = resolve_target(environ=env)
    assert (found.url, found.fernet_key) == ("sqlite:///a.db", "k")


def test_empty_url_variable_is_an_error(tmp_path: Path) -> None:
    """AIRFLOW__DATABASE__SQL_ALCHEMY_CONN set but empty is an error naming the variable."""
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": " "}
    with pytest.raises(TargetError, match="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is set but empty"):
        resolve_target(environ=env)


@pytest.mark.parametrize(
    ("env", "cfg", "named"),
    [
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET": "airflow/db"}, "", "SQL_ALCHEMY_CONN_SECRET"),
        ({"AIRFLOW__CORE__FERNET_KEY_SECRET": "airflow/key"}, "", "FERNET_KEY_SECRET"),
        ({}, "[database]\nsql_alchemy_conn_secret = airflow/db\n", "sql_alchemy_conn_secret"),
    ],
)
def test_secret_backend_variants_are_an_error(
    tmp_path: Path, env: dict[str, str], cfg: str, named: str
) -> None:
    """`_SECRET` settings need Airflow's secrets backend: an error, never a silent default."""
    write_cfg(tmp_path / "home", cfg)
    with pytest.raises(TargetError, match=f"{named} is set: .*--db-url"):
        resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home"), **env})


def test_variables_and_cfg_values_expand_vars_and_home(tmp_path: Path) -> None:
    """$VARS and ~ in variables and airflow.cfg values are expanded, as Airflow's expand_env_var does."""
    write_cfg(tmp_path / "home", "[core]\nfernet_key = ${KEY_PART}-$KEY_PART\n")
    env = {
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "DB_DIR": "$NESTED/db",
        "NESTED": "/srv",
        "KEY_PART": "abc",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///$DB_DIR/airflow.db",
    }
    found = resolve_target(environ=env)
    assert found.url == "sqlite:////srv/db/airflow.db"
    assert found.fernet_key == "abc-abc"


def test_command_output_is_not_expanded(tmp_path: Path) -> None:
    """What a `_CMD` prints is used as printed: a `$` in a password stays."""
    env = {"AIRFLOW_HOME": str(tmp_path), "HOME_X": "no", "AIRFLOW__CORE__FERNET_KEY_CMD": echo("k$HOME_X")}
    assert resolve_target(environ=env).fernet_key == "k$HOME_X"


def test_cfg_percent_escapes_read_as_airflow_reads_them(tmp_path: Path) -> None:
    """`%%` in airflow.cfg is one `%` (a URL-encoded password), as Airflow's parser reads it."""
    write_cfg(tmp_path / "home", "[database]\nsql_alchemy_conn = postgresql://u:p%%40ss@db/airflow\n")
    found = resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home")})
    assert found.url == "postgresql://u:p%40ss@db/airflow"


def test_cfg_stray_percent_is_an_error_without_the_value(tmp_path: Path) -> None:
    """A single `%` breaks Airflow's parser too: the error says to write `%%`, without the value."""
    write_cfg(tmp_path / "home", "[database]\nsql_alchemy_conn = postgresql://u:p%40ss@db/airflow\n")
    with pytest.raises(TargetError, match="must be written '%%'") as caught:
        resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home")})
    assert "p%40ss" not in str(caught.value)


def test_unparsable_cfg_is_an_error(tmp_path: Path) -> None:
    """An airflow.cfg that is not INI is an error naming the file."""
    path = write_cfg(tmp_path / "home", "this is not [ini\n")
    with pytest.raises(TargetError, match=f"{path}: cannot parse"):
        resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home")})


def test_failing_command_is_an_error_without_its_output(tmp_path: Path) -> None:
    """A `_CMD` that fails is an error naming the variable and exit code, not what it printed."""
    command = shlex.join([sys.executable, "-c", "print('leaked-secret'); raise SystemExit(3)"])
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__FERNET_KEY_CMD": command}
    with pytest.raises(
        TargetError, match="AIRFLOW__CORE__FERNET_KEY_CMD: the command exited with code 3"
    ) as err:
        resolve_target(environ=env)
    assert "leaked-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("variable", "cfg"),
    [
        ("AIRFLOW__CORE__FERNET_KEY_CMD", ""),
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", ""),
        ("", "[core]\nfernet_key_cmd = {command}\n"),
        ("", "[database]\nsql_alchemy_conn_cmd = {command}\n"),
    ],
    ids=["fernet-env", "url-env", "fernet-cfg", "url-cfg"],
)
def test_failing_command_shows_its_stderr_never_its_stdout(tmp_path: Path, variable: str, cfg: str) -> None:
    """A failing `_CMD`/`*_cmd` shows the last lines of its stderr (truncated), never its stdout."""
    script = (
        "import sys; print('leaked-secret'); "
        "sys.stderr.write('early line\\n' * 5 + 'vault: permission denied for path secret/af' + 'x' * 400)"
        "; raise SystemExit(2)"
    )
    command = shlex.join([sys.executable, "-c", script])
    env = {"AIRFLOW_HOME": str(tmp_path / "home")}
    if variable:
        env[variable] = command
    write_cfg(tmp_path / "home", cfg.format(command=command.replace("%", "%%")))
    with pytest.raises(TargetError) as caught:
        resolve_target(environ=env)
    message = str(caught.value)
    assert "exited with code 2: " in message and "vault: permission denied for path secret/af" in message
    assert "leaked-secret" not in message and "\n" not in message and len(message) < 500


def test_hanging_command_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `_CMD` that never ends is stopped after the timeout with an error."""
    monkeypatch.setattr("declarative_conns.commands.COMMAND_TIMEOUT_SECONDS", 0.5)
    command = shlex.join([sys.executable, "-c", "import time; time.sleep(30)"])
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": command}
    with pytest.raises(TargetError, match=r"did not finish within 0\.5 s"):
        resolve_target(environ=env)


def test_missing_command_is_an_error(tmp_path: Path) -> None:
    """A `_CMD` naming a program that does not exist is an error, not a traceback."""
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__FERNET_KEY_CMD": "/no/such/program --x"}
    with pytest.raises(TargetError, match="was not found"):
        resolve_target(environ=env)


@pytest.mark.parametrize(
    ("env", "cfg", "expected"),
    [
        (
            {"AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA": "airflow"},
            "[database]\nsql_alchemy_schema = cfg\n",
            "airflow",
        ),
        ({}, "[database]\nsql_alchemy_schema = cfg_db\n[core]\nsql_alchemy_schema = cfg_core\n", "cfg_db"),
        ({}, "[core]\nsql_alchemy_schema = cfg_core\n", "cfg_core"),
        (
            {"AIRFLOW__CORE__SQL_ALCHEMY_SCHEMA": "old_env"},
            "[database]\nsql_alchemy_schema = cfg\n",
            "old_env",
        ),
        ({}, "[database]\nsql_alchemy_schema =   \n", None),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA_CMD": echo("from_cmd")}, "", None),
    ],
    ids=["env", "cfg-database", "cfg-core", "env-core", "blank", "no-cmd-for-schema"],
)
def test_schema_found_as_airflow_finds_it(
    tmp_path: Path, env: dict[str, str], cfg: str, expected: str | None
) -> None:
    """sql_alchemy_schema: variables, then airflow.cfg; blank is none; no `_CMD` (not sensitive)."""
    write_cfg(tmp_path / "home", cfg)
    found = resolve_target(environ={"AIRFLOW_HOME": str(tmp_path / "home"), **env})
    assert found.schema == expected


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://etl:s3cret@db:5432/airflow", "postgresql://etl:***@db:5432/airflow"),
        ("postgres://etl:s3cret@db/airflow", "postgres://etl:***@db/airflow"),
        ("mysql+mysqldb://root:p@ss@db/airflow", "mysql+mysqldb://root:***@db/airflow"),
        ("postgresql://etl:pa/ss:w@db/airflow", "postgresql://etl:***@db/airflow"),
        (
            "postgresql://etl:pa%2Fss@db/airflow?sslmode=require",
            "postgresql://etl:***@db/airflow?sslmode=require",
        ),
        ("postgresql://etl@db/airflow?password=s3cret&x=1", "postgresql://etl@db/airflow?password=***&x=1"),
        ("postgresql://etl@db/airflow", "postgresql://etl@db/airflow"),
        ("sqlite:////srv/airflow/airflow.db", "sqlite:////srv/airflow/airflow.db"),
        ("not a url", "not a url"),
        ("db:notaport/af?sslmode=require&password=s3cret", "db:notaport/af?sslmode=require&password=***"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    """mask_url replaces the password (in the authority or the query) by *** and keeps the rest."""
    assert mask_url(url) == masked


def test_target_repr_hides_password_and_key() -> None:
    """repr(Target) shows the masked URL and where it came from, never the password or the key."""
    found = resolve_target("postgresql://etl:s3cret@db/airflow", "k-secret-key", environ={})
    assert "s3cret" not in repr(found) and "k-secret-key" not in repr(found)
    assert "postgresql://etl:***@db/airflow" in repr(found)


def test_identity_ignores_driver_spelling_and_password() -> None:
    """postgres://, postgresql+psycopg2:// and another password name the same database."""
    a = target_identity("postgres://etl:one@DB.internal/airflow", None)
    b = target_identity("postgresql+psycopg2://etl:two@db.internal:5432/airflow", None)
    assert a == b
    assert a != target_identity("postgresql://etl:one@db.internal:5433/airflow", None)
    assert a != target_identity("postgresql://etl:one@db.internal/airflow", "other_schema")
    assert target_identity("mariadb://u@h/a", None) == target_identity("mysql+pymysql://u@h:3306/a", None)


def test_malformed_url_is_an_error_not_a_traceback() -> None:
    """A URL that cannot be split (a broken IPv6 host) is a TargetError with the password masked."""
    with pytest.raises(TargetError, match=r"not a database URL: mysql://root:\*\*\*@\[::1/x"):
        target_identity("mysql://root:s3cret@[::1/x", None)


def test_identity_reads_a_password_holding_hash_as_sqlalchemy_does() -> None:
    """A '#' in the password (unescaped) no longer hides host and database: two databases stay two."""
    prod = target_identity("postgresql://u:p#x@prod/airflow", None)
    assert prod == {
        "family": "postgresql",
        "host": "prod",
        "port": 5432,
        "database": "airflow",
        "schema": None,
    }
    assert prod != target_identity("postgresql://u:p#x@staging/airflow", None)
    assert target_identity("mysql://u:a/b?c#d@DB:3307/af", None)["host"] == "db"


def test_identity_of_a_unix_socket_is_its_directory() -> None:
    """A socket URL names the socket as host, not "localhost" (two servers on one machine differ)."""
    one = target_identity("postgresql:///airflow?host=/run/pg1", None)
    assert one["host"] == "/run/pg1" and one != target_identity("postgresql:///airflow?host=/run/pg2", None)
    assert target_identity("mysql+pymysql://u@/af?unix_socket=/run/my.sock", None)["host"] == "/run/my.sock"


def test_identity_of_sqlite_is_the_resolved_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///relative.db and the absolute spelling of the same file are one target."""
    monkeypatch.chdir(tmp_path)
    relative = target_identity("sqlite:///airflow.db", None)
    assert relative == target_identity(f"sqlite:///{tmp_path / 'airflow.db'}", "ignored_schema")
    assert relative["database"] == str((tmp_path / "airflow.db").resolve())


def test_password_with_an_unescaped_at_is_refused_without_showing_it() -> None:
    """make_url would take part of such a password for the host: an error says to write %40."""
    with pytest.raises(TargetError, match=r"holds an '@'.*%40") as caught:
        target_identity("postgresql://etl:pa@canary-part@db/airflow", None)
    assert "canary-part" not in str(caught.value)


def test_unsupported_backend_is_an_error_naming_the_backends() -> None:
    """An identity is only taken of the databases Airflow supports."""
    with pytest.raises(TargetError, match=r"unsupported database 'mssql'.*SQLite, PostgreSQL or MySQL"):
        target_identity("mssql+pyodbc://u:s3cret@h/af", None)


CANARY = "canary-9b7e"


@pytest.mark.parametrize(
    "password",
    [CANARY, f"a#{CANARY}", f"{CANARY}/x", f"x?{CANARY}", f"p@{CANARY}", f"{CANARY}@@", f":{CANARY}#@/?"],
)
@pytest.mark.parametrize("host", ["db", "[::1", "db:notaport"])
def test_mask_url_never_shows_a_password(password: str, host: str) -> None:
    """Whatever the password holds, and whether or not make_url can read the URL, it is masked."""
    masked = mask_url(f"postgresql+psycopg://etl:{password}@{host}/airflow?sslmode=require")
    assert "canary" not in masked and "9b7e" not in masked
    assert masked.startswith("postgresql+psycopg://etl:***@")


@pytest.mark.parametrize(
    ("url", "schema", "described"),
    [
        ("postgresql://u:p@Prod/airflow", "public", "postgresql://prod:5432/airflow (schema public)"),
        ("postgresql+psycopg2://u@prod:5433/airflow", None, "postgresql://prod:5433/airflow"),
        ("mariadb://u@[::1]/af", None, "mysql://[::1]:3306/af"),
        ("postgresql:///af?host=/run/pg", None, "postgresql://%2Frun%2Fpg:5432/af"),
        ("sqlite:////srv/airflow.db", None, "sqlite:////srv/airflow.db"),
    ],
)
def test_describe_identity_names_the_database(url: str, schema: str | None, described: str) -> None:
    """An identity reads as a URL without user or password, plus the schema when there is one."""
    assert describe_identity(target_identity(url, schema)) == described


def test_describe_identity_hides_what_an_older_parser_took_from_a_password() -> None:
    """urlsplit read `etl:pa/ss@db/af` as host etl, database ss@db/af: such an identity is not shown."""
    old = {"family": "postgresql", "host": "etl", "port": 5432, "database": "canary@db/af", "schema": None}
    assert "canary" not in describe_identity(old)
    assert (
        describe_identity(old)
        == "a postgresql database recorded by an older dconn (its identity is not shown)"
    )


def test_describe_identity_of_nothing_recorded() -> None:
    """A file without a recorded identity is named as such, not as an empty URL."""
    assert describe_identity(None) == describe_identity({}) == "an unnamed database (no identity recorded)"


def test_version_imports_no_sqlalchemy() -> None:
    """`dconn --version` stays light: URL parsing imports SQLAlchemy only when a URL is read."""
    code = (
        "import sys\nfrom declarative_conns.cli import main\nsys.argv = ['dconn', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy')[:1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("[]")
