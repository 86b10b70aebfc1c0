"""The project file `dconn.toml`: the environments (deployments) one repository drives.

Each `[environments.NAME]` names a target (a database or an API URL, with credentials), a Fernet
key, a state location, the layers of desired state and the vars they use. Values that may be
secret are kept as written: a literal, or a SecretRef resolved only when a command needs it.
Relative paths (layers, state, `from_file`) are relative to dconn.toml itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from declarative_conns.config.interpolate import InterpolationError, VarValue, unescape
from declarative_conns.config.loader import _parse_refs, read_toml
from declarative_conns.config.project_schema import project_problems
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import ProjectError, UnknownEnvironment, ValidationFailed
from declarative_conns.targets.discovery import mask_url

PROJECT_FILE = "dconn.toml"
#: The state's name in the target database when `state = "db"` names none (CONTRACT §11).
DEFAULT_STATE_NAME = "default"

#: A value of dconn.toml that may be a secret: written in the file, or a reference to it.
Setting = str | SecretRef


@dataclass(frozen=True)
class StateLocation:
    """Say where an environment's state lives: a file, or a named row in the target database."""

    path: Path | None = None
    db_name: str | None = None

    @property
    def spelling(self) -> str:
        """Return the location as `--state` takes it: a path, or `db:NAME`."""
        return f"db:{self.db_name}" if self.path is None else str(self.path)


@dataclass(frozen=True, repr=False)
class Environment:
    """Hold one `[environments.NAME]`: target, key, state, layers, vars; repr hides secrets."""

    name: str
    #: The dconn.toml that declares it; relative paths were resolved against its folder.
    project: Path
    #: The `config` layers, in order: files or folders, as -c/--config takes them.
    layers: tuple[Path, ...]
    state: StateLocation
    db_url: Setting | None = None
    api_url: Setting | None = None
    api_token: Setting | None = None
    api_username: Setting | None = None
    api_password: Setting | None = None
    fernet_key: Setting | None = None
    vars: Mapping[str, VarValue] = field(default_factory=lambda: MappingProxyType({}))
    exclude: tuple[str, ...] = ()
    db_timeout: float | None = None
    api_timeout: float | None = None
    lock_timeout: float | None = None

    def __repr__(self) -> str:
        return f"Environment({self.name!r}, target={self.describe_target()!r}, state={self.state.spelling!r})"

    @property
    def target_kind(self) -> Literal["database", "api"] | None:
        """Return which kind of target the environment names, None when it names none."""
        if self.db_url is not None:
            return "database"
        return "api" if self.api_url is not None else None

    def describe_target(self) -> str:
        """Return the target as people may read it: the URL masked, a reference as written."""
        if self.db_url is not None:
            return f"database {describe_setting(self.db_url, url=True)}"
        if self.api_url is None:
            return "not set (as without an environment: flags, DCONN_* variables, Airflow's settings)"
        credentials = ", ".join(f"{name}: {shown}" for name, shown in self.credentials().items())
        return f"API {describe_setting(self.api_url, url=True)}" + (
            f" ({credentials})" if credentials else ""
        )

    def credentials(self) -> dict[str, str]:
        """Return the API credentials that are set, each as it may be shown (never a secret)."""
        found = {
            "token": (self.api_token, True),
            "username": (self.api_username, False),
            "password": (self.api_password, True),
        }
        return {
            name: describe_setting(value, secret=secret)
            for name, (value, secret) in found.items()
            if value is not None
        }


@dataclass(frozen=True)
class Project:
    """Hold a parsed dconn.toml: its environments by name, and warnings about how it is written."""

    path: Path
    environments: Mapping[str, Environment]
    warnings: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        """Return the folder that relative paths of the project are relative to."""
        return self.path.parent


def describe_setting(value: Setting | None, *, url: bool = False, secret: bool = True) -> str:
    """Return a setting as it may be shown: a reference as written, a URL masked, else hidden."""
    if value is None:
        return "(not set)"
    if isinstance(value, SecretRef):
        return value.describe()
    if url:
        return mask_url(value)
    return "written in dconn.toml" if secret else value


def resolve_setting(
    value: Setting | None, resolver: Callable[[SecretRef], str] = resolve_secret
) -> str | None:
    """Return a setting's value, resolving a secret reference (None stays None)."""
    return resolver(value) if isinstance(value, SecretRef) else value


def summarize(env: Environment) -> dict[str, Any]:
    """Return what `dconn envs` shows of an environment: JSON-ready, never a secret value.

    Paths are relative to the project's folder when inside it, folders end with `/`; a
    reference is shown as written (`from_env STAGING_DB_URL`), a URL with its password masked.
    """
    folder = env.project.parent
    url = env.db_url if env.db_url is not None else env.api_url
    seconds = {"db": env.db_timeout, "api": env.api_timeout, "lock": env.lock_timeout}
    return {
        "name": env.name,
        "target": env.target_kind,
        "url": None if url is None else describe_setting(url, url=True),
        "credentials": env.credentials(),
        "fernet_key": "none (empty: values are stored unencrypted)"
        if env.fernet_key == ""
        else (None if env.fernet_key is None else describe_setting(env.fernet_key)),
        "state": env.state.spelling if env.state.path is None else _shown(env.state.path, folder),
        "layers": [_shown(layer, folder) for layer in env.layers],
        "missing_layers": [_shown(layer, folder) for layer in env.layers if not layer.exists()],
        "vars": dict(env.vars),
        "exclude": list(env.exclude),
        "timeouts": {name: value for name, value in seconds.items() if value is not None},
    }


def _shown(path: Path, folder: Path) -> str:
    """Return a path relative to the project's folder when it is inside it; folders end with /."""
    try:
        shown = str(path.relative_to(folder))
    except ValueError:
        shown = str(path)
    return shown + "/" if path.is_dir() else shown


def find_project(start: Path | None = None) -> Path | None:
    """Return the dconn.toml in `start` (default: the current directory) or its nearest parent."""
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate / PROJECT_FILE
    return None


def load_project(path: Path | str | None = None) -> Project:
    """Read and validate a dconn.toml: the one named (a file or its folder), else the one found.

    Raise ProjectError when there is none, InputError for bad TOML (file, line, column) and
    ValidationFailed listing every problem with file and path.
    """
    file = _project_file(path)
    document = read_toml(file)
    problems = project_problems(document, file)
    if problems:
        raise ValidationFailed(problems)
    environments: dict[str, Environment] = {}
    for name, table in document["environments"].items():
        environments[name] = _environment(name, table, file, problems)
    if problems:
        raise ValidationFailed(problems)
    warnings = tuple(w for env in environments.values() for w in _literal_secrets(env))
    return Project(file, MappingProxyType(environments), warnings)


def pick_environment(
    project: Project, name: str | None = None, environ: Mapping[str, str] | None = None
) -> Environment:
    """Return the environment named (else DCONN_ENV, else the only one); raise UnknownEnvironment."""
    env = os.environ if environ is None else environ
    chosen, how = (name, "--env") if name else (env.get("DCONN_ENV") or None, "DCONN_ENV")
    names = ", ".join(sorted(project.environments))
    if chosen is None:
        if len(project.environments) == 1:
            return next(iter(project.environments.values()))
        raise UnknownEnvironment(
            f"{project.path} has several environments ({names}): pick one with --env NAME or DCONN_ENV "
            "(plan and validate also take --all-envs)"
        )
    if chosen not in project.environments:
        raise UnknownEnvironment(
            f'{how} names environment "{chosen}", which {project.path} lacks; it has: {names}'
        )
    return project.environments[chosen]


def _project_file(path: Path | str | None) -> Path:
    """Return the absolute path of the project file to read; raise ProjectError if missing."""
    if path is None:
        found = find_project()
        if found is None:
            raise ProjectError(
                f"no {PROJECT_FILE} in {Path.cwd()} or its parents: create one, or pass --project FILE"
            )
        return found
    file = Path(path).absolute()
    if file.is_dir():
        file = file / PROJECT_FILE
    if not file.is_file():
        raise ProjectError(f"{file}: no such project file; pass --project with a {PROJECT_FILE}")
    return file


_SETTINGS = ("db_url", "api_url", "api_token", "api_username", "api_password", "fernet_key")


def _environment(name: str, table: Mapping[str, Any], file: Path, problems: list[Any]) -> Environment:
    """Build one Environment from its validated table; var problems go to `problems`."""
    folder = file.parent
    settings = {key: _parse_refs(table[key], str(folder)) for key in _SETTINGS if key in table}
    variables: dict[str, VarValue] = {}
    for var, value in table.get("vars", {}).items():
        try:
            variables[var] = unescape(value) if isinstance(value, str) else value
        except InterpolationError as exc:
            problems.append(f"{file}: environments.{name}.vars.{var}: {exc}")
    state = _state(table.get("state"), name, folder)
    if state.path is None and "api_url" in table:
        problems.append(
            f"{file}: environments.{name}.state: the state in the target database needs a database "
            "target; an API target keeps its state in a file"
        )
    seconds = {
        key: float(table[key]) for key in ("db_timeout", "api_timeout", "lock_timeout") if key in table
    }
    return Environment(
        name=name,
        project=file,
        layers=tuple(folder / layer for layer in table["config"]),
        state=state,
        vars=MappingProxyType(variables),
        exclude=tuple(table.get("exclude", ())),
        db_timeout=seconds.get("db_timeout"),
        api_timeout=seconds.get("api_timeout"),
        lock_timeout=seconds.get("lock_timeout"),
        **settings,
    )


def _state(spelling: str | None, name: str, folder: Path) -> StateLocation:
    """Parse `state`: "db" or "db:NAME" in the target database, else a path; default per environment.

    Without `state`, each environment gets its own file, `.dconn/NAME.json` beside dconn.toml, so
    that two environments never share (and overwrite) one state.
    """
    if spelling is None:
        return StateLocation(path=folder / ".dconn" / f"{name}.json")
    if spelling == "db" or spelling.startswith("db:"):
        return StateLocation(db_name=spelling[3:] or DEFAULT_STATE_NAME)
    return StateLocation(path=folder / spelling)


def _literal_secrets(env: Environment) -> list[str]:
    """Warn about credentials written in dconn.toml (which is in git) instead of referenced."""
    where = f"{env.project}: environments.{env.name}"
    advice = 'use a secret reference such as { from_env = "..." } so it stays out of git'
    warnings = [
        f"{where}.{key}: the {what} is written in the file; {advice}"
        for key, what in (
            ("api_token", "API token"),
            ("api_password", "API password"),
            ("fernet_key", "Fernet key"),
        )
        if isinstance(getattr(env, key), str) and getattr(env, key)
    ]
    for key in ("db_url", "api_url"):
        value = getattr(env, key)
        if isinstance(value, str) and mask_url(value) != value:
            warnings.append(f"{where}.{key}: the URL holds a password written in the file; {advice}")
    return warnings
