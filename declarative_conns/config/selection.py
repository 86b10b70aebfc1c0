"""Pick what a command works on: an environment of dconn.toml, with the command line's flags over it.

An environment is in play when `--env NAME` or `DCONN_ENV` names one, when `--project` names a
dconn.toml, or when one is found in the current directory or a parent: it then gives the target
(db_url, or api_url with credentials), the Fernet key, the state, the layers with their vars and
exclude patterns, and the timeouts. A flag the command line gives explicitly (`-c`, `--db-url`,
`--fernet-key`, `--state`, `--db-timeout`, `--lock-timeout`) replaces the environment's value;
`-c PATH` replaces the environment's layers by that one file or folder, still filled in with
the environment's vars and filtered by its exclude patterns.

Without a project file, every command works as it always did: `connections.toml`,
`.dconn/state.json` and the target found as Airflow finds it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from declarative_conns.config.project import (
    Environment,
    find_project,
    load_project,
    pick_environment,
    resolve_setting,
)
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import ProjectError, TargetError

if TYPE_CHECKING:
    from declarative_conns.config.validation import Validation
    from declarative_conns.targets.discovery import DatabaseSettings

DEFAULT_CONFIG = Path("connections.toml")
DEFAULT_STATE = ".dconn/state.json"
DEFAULT_LOCK_TIMEOUT = 30.0
#: The same as declarative_conns.targets.discovery's (imported lazily there: it pulls SQLAlchemy).
DEFAULT_DB_TIMEOUT = 60.0


@dataclass(frozen=True, repr=False)
class Flags:
    """Hold what the command line gave explicitly; None: not given (the environment's value holds)."""

    config: Path | None = None
    db_url: str | None = None
    fernet_key: str | None = None
    state: str | None = None
    db_timeout: float | None = None
    lock_timeout: float | None = None
    api_url: str | None = None
    api_timeout: float | None = None

    def __repr__(self) -> str:
        given = [name for name in vars(self) if getattr(self, name) is not None]
        return f"Flags({', '.join(given)})"


@dataclass(frozen=True, repr=False)
class Selection:
    """Hold the environment picked (or None) and the flags over it; every setting a command needs."""

    environment: Environment | None
    flags: Flags = field(default_factory=Flags)
    #: Warnings about the project file (credentials written in it).
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        name = self.environment.name if self.environment else None
        return f"Selection(environment={name!r}, {self.flags!r})"

    @property
    def label(self) -> str:
        """Return `environment "staging"`, or "" without an environment."""
        return f'environment "{self.environment.name}"' if self.environment else ""

    @property
    def layers(self) -> tuple[Path, ...]:
        """Return the layers of desired state: `-c`, else the environment's, else connections.toml."""
        if self.flags.config is not None:
            return (self.flags.config,)
        return self.environment.layers if self.environment else (DEFAULT_CONFIG,)

    @property
    def state(self) -> str:
        """Return where the state lives, as `--state` takes it."""
        if self.flags.state is not None:
            return self.flags.state
        return self.environment.state.spelling if self.environment else DEFAULT_STATE

    @property
    def db_timeout(self) -> float:
        """Return the longest wait for a database statement, in seconds."""
        return _first(
            self.flags.db_timeout,
            self.environment.db_timeout if self.environment else None,
            DEFAULT_DB_TIMEOUT,
        )

    @property
    def lock_timeout(self) -> float:
        """Return the longest wait for another apply's lock, in seconds."""
        return _first(
            self.flags.lock_timeout,
            self.environment.lock_timeout if self.environment else None,
            DEFAULT_LOCK_TIMEOUT,
        )

    @property
    def api_url(self) -> str | SecretRef | None:
        """Return the environment's API URL when it gives the target (no --db-url replaces it)."""
        if self.flags.db_url is not None or self.environment is None:
            return None
        return self.environment.api_url if self.environment.db_url is None else None

    @property
    def api_timeout(self) -> float | None:
        """Return the environment's api_timeout (None: the API target's default or --api-timeout)."""
        return self.environment.api_timeout if self.environment else None

    def api_environ(self, resolver: Callable[[SecretRef], str] = resolve_secret) -> dict[str, str]:
        """Return the environment's API target as the DCONN_API_* variables the API target reads.

        The same route as the command line's: an API environment's URL and credentials, resolved,
        under the names `--api-url`'s lookup reads (DCONN_API_URL, DCONN_API_TOKEN,
        DCONN_API_USERNAME, DCONN_API_PASSWORD); empty when the environment names no API target.
        """
        env = self.environment
        if env is None or self.api_url is None:
            return {}
        names = {
            "DCONN_API_URL": env.api_url,
            "DCONN_API_TOKEN": env.api_token,
            "DCONN_API_USERNAME": env.api_username,
            "DCONN_API_PASSWORD": env.api_password,
        }
        return {
            name: str(resolve_setting(value, resolver)) for name, value in names.items() if value is not None
        }

    def database(
        self, resolver: Callable[[SecretRef], str] = resolve_secret, environ: Mapping[str, str] | None = None
    ) -> DatabaseSettings:
        """Return the database and key: flags, then the environment's, then as Airflow finds them.

        An environment's `fernet_key = ""` means no key (values stored in clear), as Airflow's
        empty setting does. Secret references are resolved here, and only here.
        """
        from declarative_conns.targets.discovery import resolve_target

        env = self.environment
        if self.api_url is not None:
            assert env is not None
            raise TargetError(
                f"{self.label} targets the REST API at {env.describe_target()[4:]}, not a database"
            )
        url = self.flags.db_url
        url_source = "--db-url"
        if url is None and env is not None and env.db_url is not None:
            url, url_source = resolve_setting(env.db_url, resolver), f"{self.label} db_url"
            if not url or not url.strip():
                raise TargetError(
                    f"{url_source} ({_shown(env.db_url)}) is empty: give the metadata database URL"
                )
        key = self.flags.fernet_key
        key_source = "--fernet-key"
        if key is None and env is not None and env.fernet_key is not None:
            key, key_source = resolve_setting(env.fernet_key, resolver), f"{self.label} fernet_key"
        found = resolve_target(url, key or None, environ, db_timeout=self.db_timeout)
        if url is not None:
            found = replace(found, url_source=url_source)
        if key is not None:
            found = replace(found, fernet_key=key.strip() or None, key_source=key_source)
        return found

    def validate(self, strict: bool = False) -> Validation:
        """Read and check the desired state: the layers with the environment's vars and exclude."""
        from declarative_conns.config.validation import validate_config, validate_layers

        env = self.environment
        if env is None:
            return validate_config(self.layers[0], strict)
        return validate_layers(self.layers, env.vars, env.exclude, strict, label=self.label, skip=env.project)


def _first(*values: float | None) -> float:
    """Return the first value that is set."""
    return next(float(v) for v in values if v is not None)


def _shown(value: str | SecretRef) -> str:
    """Return a setting as messages may show it: a reference as written, a literal never."""
    return value.describe() if isinstance(value, SecretRef) else "written in dconn.toml"


def select(
    project: Path | None,
    env_name: str | None,
    flags: Flags | None = None,
    environ: Mapping[str, str] | None = None,
) -> Selection:
    """Return the selection a command works on; raise UnknownEnvironment listing the names.

    With `--env`/`DCONN_ENV` or `--project` the project file must exist; otherwise one found in
    the current directory or a parent is used, and without one no environment is in play.
    """
    env = os.environ if environ is None else environ
    flags = flags or Flags()
    name = env_name or env.get("DCONN_ENV") or None
    if project is None and find_project() is None:
        if name is not None:
            how = "--env" if env_name else "DCONN_ENV"
            raise ProjectError(
                f'{how} names environment "{name}", but there is no dconn.toml in {Path.cwd()} or its '
                "parents: pass --project FILE"
            )
        return Selection(None, flags)
    loaded = load_project(project)
    return Selection(pick_environment(loaded, env_name, env), flags, loaded.warnings)
