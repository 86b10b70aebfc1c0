"""The project file dconn.toml: finding it, its schema, environments, secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from declarative_conns.config.project import (
    Environment,
    Project,
    StateLocation,
    describe_setting,
    find_project,
    load_project,
    pick_environment,
    resolve_setting,
    summarize,
)
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import InputError, ProjectError, UnknownEnvironment, ValidationFailed

CANARY = "canary-project-51f0"
MINIMAL = '[environments.dev]\nconfig = ["connections.toml"]\n'


def write_project(folder: Path, text: str) -> Path:
    """Write a dconn.toml into a folder and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dconn.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    """Return the validation problems of a project file (asserting it is invalid)."""
    with pytest.raises(ValidationFailed) as info:
        load_project(path)
    return info.value.problems


def one(text: str, tmp_path: Path, name: str = "dev") -> Environment:
    """Load a project and return one of its environments."""
    return load_project(write_project(tmp_path, text)).environments[name]


# --- finding the file ---------------------------------------------------------------------------


def test_found_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dconn.toml in the current directory is found."""
    path = write_project(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert find_project() == path
    assert load_project().path == path


def test_found_in_a_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without one in the current directory, the nearest parent's dconn.toml is found."""
    path = write_project(tmp_path, MINIMAL)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_project() == path
    assert find_project(deep) == path


def test_nearest_one_wins(tmp_path: Path) -> None:
    """A dconn.toml in the folder itself wins over one in a parent."""
    write_project(tmp_path, MINIMAL)
    inner = write_project(tmp_path / "inner", MINIMAL)
    assert find_project(tmp_path / "inner") == inner


def test_none_found_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dconn.toml anywhere up the tree: find returns None, load says what to do."""
    monkeypatch.chdir(tmp_path)
    if find_project() is not None:
        pytest.skip("a dconn.toml exists above the temporary directory")
    with pytest.raises(
        ProjectError, match=r"no dconn\.toml in .* or its parents: create one, or pass --project"
    ):
        load_project()


def test_explicit_path_may_be_the_folder(tmp_path: Path) -> None:
    """--project accepts the file or the folder holding it."""
    path = write_project(tmp_path / "proj", MINIMAL)
    assert load_project(tmp_path / "proj").path == path
    assert load_project(str(path)).path == path


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    """A --project that does not exist is named in the error."""
    with pytest.raises(ProjectError, match=r"nope\.toml: no such project file"):
        load_project(tmp_path / "nope.toml")


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """Malformed TOML reports the file, line and column."""
    path = write_project(tmp_path, '[environments.dev]\nconfig = = ["a"]\n')
    with pytest.raises(InputError, match=r"dconn\.toml: invalid TOML: .*line 2, column \d+"):
        load_project(path)


# --- the schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version = 1\n", "(document): declares no environments: add at least one [environments.NAME]"),
        ("[environments]\n", "environments: declares no environments"),
        ('[connections.a]\nconn_type = "x"\n', "(document): unknown key 'connections'"),
        ("version = 2\n" + MINIMAL, "version: 2 must be 1"),
        ("[environments.dev]\n", "environments.dev: missing 'config'"),
        ("[environments.dev]\nconfig = []\n", "environments.dev.config: list at least one layer"),
        ('[environments.dev]\nconfig = [""]\n', "environments.dev.config.0: must not be empty"),
        (
            "[environments.dev]\nconfig = 'c.toml'\n",
            "environments.dev.config: 'c.toml' is not of type 'array'",
        ),
        (MINIMAL + "colour = 1\n", "environments.dev: unknown key 'colour'"),
        ('[environments."dev box"]\nconfig = ["c"]\n', "environments.dev box: invalid environment name"),
        (
            MINIMAL + 'db_url = "sqlite:///a.db"\napi_url = "http://x"\n',
            "environments.dev: declare either db_url or api_url, not both",
        ),
        (
            MINIMAL + 'api_url = "http://x"\napi_token = { from_env = "T" }\n'
            'api_username = "u"\napi_password = { from_env = "P" }\n',
            "environments.dev: declare either api_token or api_username, not both",
        ),
        (
            MINIMAL + 'api_url = "http://x"\napi_username = "u"\n',
            "environments.dev: api_username needs api_password",
        ),
        (MINIMAL + 'api_token = { from_env = "T" }\n', "environments.dev: api_token needs api_url"),
        (MINIMAL + "db_url = 5\n", "environments.dev.db_url: must be a string or a secret reference"),
        (MINIMAL + 'db_url = ""\n', "environments.dev.db_url: must not be empty"),
        (
            MINIMAL + 'db_url = { from_vault = "x" }\n',
            "environments.dev.db_url: unknown key 'from_vault': a secret reference is",
        ),
        (MINIMAL + 'db_url = { from_env = "1X" }\n', "environments.dev.db_url.from_env: '1X' does not match"),
        (
            MINIMAL + 'db_url = { from_env = "A", from_file = "b" }\n',
            "environments.dev.db_url: a secret reference has exactly one of from_env, from_file, from_command",
        ),
        (
            MINIMAL + "api_token = { from_command = [] }\n",
            "environments.dev.api_token.from_command: must not be empty",
        ),
        (
            MINIMAL + 'state = "db:my state"\n',
            "environments.dev.state: 'db:my state': a state in the database is db or db:NAME",
        ),
        (MINIMAL + "state = 1\n", "environments.dev.state: 1 is not of type 'string'"),
        (MINIMAL + 'vars = { "1st" = 1 }\n', "environments.dev.vars.1st: invalid var name"),
        (
            MINIMAL + "vars = { hosts = ['a', 'b'] }\n",
            "environments.dev.vars.hosts: the value is not of type 'string' or",
        ),
        (MINIMAL + "vars = { t = { a = 1 } }\n", "environments.dev.vars.t: the value is not of type"),
        (MINIMAL + "exclude = 'x'\n", "environments.dev.exclude: 'x' is not of type 'array'"),
        (MINIMAL + "db_timeout = 0\n", "environments.dev.db_timeout: 0 must be more than 0"),
        (MINIMAL + "api_timeout = 'soon'\n", "environments.dev.api_timeout: 'soon' is not of type 'number'"),
        (MINIMAL + "lock_timeout = -1\n", "environments.dev.lock_timeout: -1 must be at least 0"),
    ],
)
def test_schema_problems_name_file_and_path(tmp_path: Path, text: str, expected: str) -> None:
    """Each schema problem is reported as `file: dotted.path: message`."""
    path = write_project(tmp_path, text)
    found = problems_of(path)
    assert any(p.startswith(f"{path}: {expected}") for p in found), found


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """All problems of all environments are reported together, not only the first."""
    path = write_project(
        tmp_path,
        '[environments.a]\nconfig = []\nbogus = 1\n[environments.b]\nconfig = ["c"]\ndb_timeout = -5\n',
    )
    found = problems_of(path)
    assert len(found) == 3, found


@pytest.mark.parametrize(
    "setting",
    [
        f'db_url = ["postgresql://etl:{CANARY}@db/airflow"]',
        f'fernet_key = ["{CANARY}"]',
        f"api_token = [\"{CANARY}\"]\napi_url = 'http://x'",
        f'api_password = {{ value = "{CANARY}" }}\napi_username = "u"\napi_url = "http://x"',
    ],
)
def test_problems_never_echo_a_setting_that_may_be_secret(tmp_path: Path, setting: str) -> None:
    """A malformed URL, key or credential is reported without its value."""
    found = problems_of(write_project(tmp_path, MINIMAL + setting + "\n"))
    assert found and not any(CANARY in p for p in found), found


def test_a_var_using_a_var_is_an_error(tmp_path: Path) -> None:
    """vars are plain values: `${vars.x}` in a var (itself or another) is an error saying so."""
    path = write_project(tmp_path, MINIMAL + 'vars = { a = "${vars.a}", b = "x-${vars.a}" }\n')
    found = problems_of(path)
    assert found == [
        f"{path}: environments.dev.vars.a: a var cannot use another var (${{vars.a}}): vars are plain values; "
        "write $${ for a literal ${",
        f"{path}: environments.dev.vars.b: a var cannot use another var (${{vars.a}}): vars are plain values; "
        "write $${ for a literal ${",
    ]


def test_an_escaped_template_in_a_var_is_text(tmp_path: Path) -> None:
    """`$${` in a var is a literal `${`, and other values keep their TOML type."""
    env = one(MINIMAL + 'vars = { a = "$${vars.a}", n = 5, f = 1.5, b = true }\n', tmp_path)
    assert dict(env.vars) == {"a": "${vars.a}", "n": 5, "f": 1.5, "b": True}
    assert type(env.vars["n"]) is int and type(env.vars["b"]) is bool


def test_database_state_needs_a_database_target(tmp_path: Path) -> None:
    """state = "db" with an API target is an error saying why."""
    path = write_project(tmp_path, MINIMAL + 'api_url = "http://x"\nstate = "db"\n')
    assert problems_of(path) == [
        f"{path}: environments.dev.state: the state in the target database needs a database target; "
        "an API target keeps its state in a file"
    ]


# --- what an environment holds ------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_project_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers, state and from_file references resolve against dconn.toml's folder, not the cwd."""
    folder = tmp_path / "repo"
    write_project(
        folder,
        '[environments.dev]\nconfig = ["connections/", "overlays/dev.toml"]\nstate = "state/dev.json"\n'
        'db_url = { from_file = "secrets/db_url" }\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    env = load_project(folder / "dconn.toml").environments["dev"]
    assert env.layers == (folder / "connections", folder / "overlays/dev.toml")
    assert env.state == StateLocation(path=folder / "state/dev.json")
    assert env.db_url == SecretRef("file", "secrets/db_url", str(folder))


def test_project_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative --project gives absolute paths, so a later chdir changes nothing."""
    write_project(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    project = load_project("dconn.toml")
    assert project.path.is_absolute() and project.environments["dev"].layers[0].is_absolute()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, StateLocation(path=Path(".dconn/dev.json"))),
        ('"my-state.json"', StateLocation(path=Path("my-state.json"))),
        ('"db"', StateLocation(db_name="default")),
        ('"db:"', StateLocation(db_name="default")),
        ('"db:analytics"', StateLocation(db_name="analytics")),
        ('"./db"', StateLocation(path=Path("db"))),
    ],
)
def test_state_location(tmp_path: Path, state: str | None, expected: StateLocation) -> None:
    """state: a path (default .dconn/NAME.json beside dconn.toml), or db / db:NAME in the database."""
    env = one(MINIMAL + (f"state = {state}\n" if state else ""), tmp_path)
    if expected.path is not None:
        expected = StateLocation(path=tmp_path / expected.path)
    assert env.state == expected


def test_each_environment_gets_its_own_default_state(tmp_path: Path) -> None:
    """Two environments without `state` never share one state file."""
    project = load_project(write_project(tmp_path, MINIMAL + '[environments.prod]\nconfig = ["c"]\n'))
    states = {env.state for env in project.environments.values()}
    assert len(states) == 2


def test_settings_are_literals_or_references(tmp_path: Path) -> None:
    """Every target setting is kept as written: a literal string, or a SecretRef (unresolved)."""
    env = one(
        MINIMAL + 'api_url = "https://airflow.example.com"\napi_username = "admin"\n'
        'api_password = { from_command = ["pass", "airflow/admin"] }\nfernet_key = { from_env = "KEY" }\n'
        "api_timeout = 10\nlock_timeout = 0\n",
        tmp_path,
    )
    assert env.api_url == "https://airflow.example.com" and env.api_username == "admin"
    assert env.api_password == SecretRef("command", ("pass", "airflow/admin"), str(tmp_path))
    assert env.fernet_key == SecretRef("env", "KEY", str(tmp_path))
    assert (env.api_timeout, env.lock_timeout, env.db_timeout) == (10.0, 0.0, None)
    assert env.target_kind == "api" and env.db_url is None


def test_environment_is_frozen(tmp_path: Path) -> None:
    """Environments and their vars cannot be changed after loading."""
    env = one(MINIMAL + "vars = { a = 1 }\n", tmp_path)
    with pytest.raises(AttributeError):
        env.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        env.vars["a"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("setting", "warned"),
    [
        (f'api_url = "http://x"\napi_token = "{CANARY}"', "api_token: the API token is written in the file"),
        (
            f'api_url = "http://x"\napi_username = "u"\napi_password = "{CANARY}"',
            "api_password: the API password is written in the file",
        ),
        (f'fernet_key = "{CANARY}"', "fernet_key: the Fernet key is written in the file"),
        (f'db_url = "postgresql://etl:{CANARY}@db/airflow"', "db_url: the URL holds a password"),
        (f'api_url = "https://admin:{CANARY}@airflow.example.com"', "api_url: the URL holds a password"),
        ('db_url = "postgresql://etl@db/airflow"', None),
        ('db_url = { from_env = "DB_URL" }', None),
        ('api_url = "http://x"\napi_token = { from_env = "T" }', None),
        ('fernet_key = ""', None),
    ],
)
def test_literal_credentials_are_warned_about(tmp_path: Path, setting: str, warned: str | None) -> None:
    """A credential written in dconn.toml (instead of referenced) is a warning, never echoed."""
    project = load_project(write_project(tmp_path, MINIMAL + setting + "\n"))
    if warned is None:
        assert project.warnings == ()
    else:
        assert len(project.warnings) == 1 and f"environments.dev.{warned}" in project.warnings[0]
        assert "secret reference" in project.warnings[0] and CANARY not in project.warnings[0]


def test_repr_never_shows_a_secret(tmp_path: Path) -> None:
    """repr/str of the project and its environments show no literal token, password or key."""
    project = load_project(
        write_project(
            tmp_path,
            f'[environments.db]\nconfig = ["c"]\ndb_url = "postgresql://etl:{CANARY}@db/airflow"\n'
            f'fernet_key = "{CANARY}"\n'
            f'[environments.api]\nconfig = ["c"]\napi_url = "https://u:{CANARY}@x"\napi_username = "u"\n'
            f'api_password = "{CANARY}"\n'
            f'[environments.tok]\nconfig = ["c"]\napi_url = "https://x"\napi_token = "{CANARY}"\n',
        )
    )
    shown = (
        repr(project)
        + str(project)
        + "".join(repr(e) + e.describe_target() for e in project.environments.values())
    )
    assert CANARY not in shown
    assert "postgresql://etl:***@db/airflow" in shown and "password: written in dconn.toml" in shown


# --- picking one --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "flag", "variable", "expected"),
    [
        (["dev"], None, None, "dev"),
        (["dev", "prod"], "prod", None, "prod"),
        (["dev", "prod"], None, "prod", "prod"),
        (["dev", "prod"], "dev", "prod", "dev"),
        (
            ["dev", "prod"],
            None,
            "",
            "several environments (dev, prod): pick one with --env NAME or DCONN_ENV",
        ),
        (
            ["dev", "prod"],
            None,
            None,
            "several environments (dev, prod): pick one with --env NAME or DCONN_ENV",
        ),
        (
            ["dev", "prod"],
            "stage",
            None,
            '--env names environment "stage", which .* lacks; it has: dev, prod',
        ),
        (["dev"], None, "stage", 'DCONN_ENV names environment "stage", which .* lacks; it has: dev'),
    ],
)
def test_pick_environment(
    tmp_path: Path, names: list[str], flag: str | None, variable: str | None, expected: str
) -> None:
    """--env, then DCONN_ENV, then the only one; otherwise an error listing the names."""
    project = load_project(
        write_project(tmp_path, "".join(f'[environments.{n}]\nconfig = ["c"]\n' for n in names))
    )
    environ = {} if variable is None else {"DCONN_ENV": variable}
    if expected in names:
        assert pick_environment(project, flag, environ).name == expected
    else:
        with pytest.raises(UnknownEnvironment, match=expected.replace("(", r"\(").replace(")", r"\)")):
            pick_environment(project, flag, environ)


def test_pick_reads_dconn_env_from_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping, DCONN_ENV comes from the process environment."""
    project = load_project(write_project(tmp_path, MINIMAL + '[environments.prod]\nconfig = ["c"]\n'))
    monkeypatch.setenv("DCONN_ENV", "prod")
    assert pick_environment(project).name == "prod"


# --- showing and resolving settings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        (None, {}, "(not set)"),
        (SecretRef("env", "STAGING_DB_URL"), {"url": True}, "from_env STAGING_DB_URL"),
        (SecretRef("command", ("vault", "read", "x")), {}, "from_command vault read x"),
        (f"postgresql://etl:{CANARY}@db/airflow", {"url": True}, "postgresql://etl:***@db/airflow"),
        (CANARY, {}, "written in dconn.toml"),
        ("admin", {"secret": False}, "admin"),
    ],
)
def test_describe_setting(value: Any, options: dict[str, bool], expected: str) -> None:
    """A setting shows as its reference, its masked URL, or hidden; never a secret."""
    assert describe_setting(value, **options) == expected


def test_resolve_setting() -> None:
    """A literal is itself, None stays None, a reference goes through the resolver."""
    ref = SecretRef("env", "X")
    assert resolve_setting("literal") == "literal"
    assert resolve_setting(None) is None
    assert resolve_setting(ref, resolver=lambda r: f"value of {r.target}") == "value of X"


def test_summary_shows_references_and_relative_paths(tmp_path: Path) -> None:
    """summarize: URL as reference, layers relative (folders with /), missing layers, no secret."""
    (tmp_path / "connections").mkdir()
    env = one(
        '[environments.dev]\nconfig = ["connections/", "overlays/dev.toml"]\n'
        f'db_url = {{ from_env = "DEV_DB_URL" }}\nfernet_key = "{CANARY}"\nstate = "db:dev"\n'
        'vars = { port = 5433 }\nexclude = ["*_sandbox"]\ndb_timeout = 5\n',
        tmp_path,
    )
    assert summarize(env) == {
        "name": "dev",
        "target": "database",
        "url": "from_env DEV_DB_URL",
        "credentials": {},
        "fernet_key": "written in dconn.toml",
        "state": "db:dev",
        "layers": ["connections/", "overlays/dev.toml"],
        "missing_layers": ["overlays/dev.toml"],
        "vars": {"port": 5433},
        "exclude": ["*_sandbox"],
        "timeouts": {"db": 5.0},
    }


def test_project_dataclass_holds_path_and_folder(tmp_path: Path) -> None:
    """Project.folder is the folder relative paths start from."""
    project = load_project(write_project(tmp_path, MINIMAL))
    assert isinstance(project, Project) and project.folder == tmp_path
