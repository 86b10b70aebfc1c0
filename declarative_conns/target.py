"""Find the target database and Fernet key the way Airflow itself finds them.

Order (the first that is set wins): flag, DCONN_* variable, AIRFLOW__DATABASE__* / AIRFLOW__CORE__*
variables and their `_CMD` variants, then `$AIRFLOW_HOME/airflow.cfg`, then Airflow's default.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import TargetError


@dataclass(frozen=True, repr=False)
class Target:
    """Hold where the database is and which key encrypts it; secrets hidden from repr."""

    url: str
    fernet_key: str | None
    schema: str | None
    url_source: str
    key_source: str | None

    def __repr__(self) -> str:
        return f"Target({mask_url(self.url)!r}, from {self.url_source})"

    @property
    def masked_url(self) -> str:
        """Return the URL with its password replaced by ***."""
        return mask_url(self.url)


def mask_url(url: str) -> str:
    """Hide the password of a database URL: `postgresql://etl:***@host/airflow`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    at = rest.rfind("@", 0, end)
    if at == -1:
        # A password may hold an unescaped "/" — look for "@" in the whole remainder too.
        at = rest.rfind("@")
        if at == -1:
            return url
    credentials = rest[:at]
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{rest[at + 1 :]}"


def resolve_target(
    db_url: str | None = None,
    fernet_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """Find the database URL, Fernet key and schema from flags, environment and airflow.cfg."""
    env = os.environ if environ is None else environ
    cfg = _read_airflow_cfg(env)
    url, url_source = _first(
        ("--db-url", lambda: db_url),
        ("DCONN_DB_URL", lambda: env.get("DCONN_DB_URL")),
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", lambda: env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")),
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            lambda: _run_cmd(env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"),
        ),
        ("AIRFLOW__CORE__SQL_ALCHEMY_CONN", lambda: env.get("AIRFLOW__CORE__SQL_ALCHEMY_CONN")),
        ("AIRFLOW__CORE__SQL_ALCHEMY_CONN_CMD", lambda: _run_cmd(env, "AIRFLOW__CORE__SQL_ALCHEMY_CONN_CMD")),
        ("airflow.cfg [database] sql_alchemy_conn", lambda: _cfg(cfg, "database", "sql_alchemy_conn")),
        ("airflow.cfg [core] sql_alchemy_conn", lambda: _cfg(cfg, "core", "sql_alchemy_conn")),
    )
    if url is None:
        url, url_source = f"sqlite:///{airflow_home(env) / 'airflow.db'}", "Airflow's default"
    key, key_source = _first(
        ("--fernet-key", lambda: fernet_key),
        ("DCONN_FERNET_KEY", lambda: env.get("DCONN_FERNET_KEY")),
        ("AIRFLOW__CORE__FERNET_KEY", lambda: env.get("AIRFLOW__CORE__FERNET_KEY")),
        ("AIRFLOW__CORE__FERNET_KEY_CMD", lambda: _run_cmd(env, "AIRFLOW__CORE__FERNET_KEY_CMD")),
        ("airflow.cfg [core] fernet_key", lambda: _cfg(cfg, "core", "fernet_key")),
    )
    schema, _ = _first(
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA", lambda: env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA")),
        ("airflow.cfg", lambda: _cfg(cfg, "database", "sql_alchemy_schema")),
    )
    return Target(url, key, schema, url_source or "", key_source)


def airflow_home(env: Mapping[str, str]) -> Path:
    """Return $AIRFLOW_HOME, Airflow's default being ~/airflow."""
    return Path(env.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def _first(*candidates: tuple[str, object]) -> tuple[str | None, str | None]:
    """Return the first non-empty value of (source, getter) pairs, with its source."""
    for source, getter in candidates:
        value = getter()  # type: ignore[operator]
        if value:
            return str(value).strip(), source
    return None, None


def _read_airflow_cfg(env: Mapping[str, str]) -> configparser.ConfigParser | None:
    """Read $AIRFLOW_HOME/airflow.cfg (or $AIRFLOW_CONFIG) when it exists."""
    path = Path(env.get("AIRFLOW_CONFIG") or airflow_home(env) / "airflow.cfg").expanduser()
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot parse Airflow's configuration: {type(exc).__name__}") from None
    return parser


def _cfg(cfg: configparser.ConfigParser | None, section: str, key: str) -> str | None:
    """Read an option from airflow.cfg, honouring its `<key>_cmd` variant as Airflow does."""
    if cfg is None or not cfg.has_section(section):
        return None
    if cfg.get(section, key, fallback=None):
        return cfg.get(section, key)
    command = cfg.get(section, f"{key}_cmd", fallback=None)
    return _run(command, f"[{section}] {key}_cmd in airflow.cfg") if command else None


def _run_cmd(env: Mapping[str, str], name: str) -> str | None:
    """Run the command an Airflow `_CMD` variable names, as Airflow does (no shell)."""
    command = env.get(name)
    return _run(command, name) if command else None


def _run(command: str, where: str) -> str:
    """Run a configuration command and return its stdout, stripped."""
    try:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise TargetError(f"{where}: the command could not run ({type(exc).__name__})") from None
    if done.returncode != 0:
        raise TargetError(f"{where}: the command exited with code {done.returncode}")
    return done.stdout.strip()


def target_identity(url: str, schema: str | None) -> dict[str, str | int | None]:
    """Return what identifies a database across driver spellings: family, host, port, db, schema."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    family = {"postgres": "postgresql", "mariadb": "mysql"}.get(scheme, scheme)
    if family == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        database = str(Path(path.split("?", 1)[0]).expanduser().resolve()) if path else ""
        return {"family": "sqlite", "host": None, "port": None, "database": database, "schema": None}
    try:
        port = parts.port
    except ValueError:
        port = None
    default_port = {"postgresql": 5432, "mysql": 3306}.get(family)
    return {
        "family": family,
        "host": (parts.hostname or "localhost").lower(),
        "port": port or default_port,
        "database": parts.path.lstrip("/") or None,
        "schema": schema,
    }
