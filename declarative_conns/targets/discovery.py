"""Find the target database and Fernet key the way Airflow itself finds them.

Airflow's own lookup (its configuration parser, 2.3 to 3.3) for an option such as
`[database] sql_alchemy_conn`, the first found wins:

1. `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`, then `..._CMD` (a command), then `..._SECRET`;
2. the same for the deprecated `[core]` name (`AIRFLOW__CORE__SQL_ALCHEMY_CONN`, `_CMD`, `_SECRET`);
3. airflow.cfg: `[database] sql_alchemy_conn`, then `[core] sql_alchemy_conn`;
4. airflow.cfg commands: `[database] sql_alchemy_conn_cmd`, then `[core] sql_alchemy_conn_cmd`;
5. the default, `sqlite:///$AIRFLOW_HOME/airflow.db`.

dconn puts its own `--db-url` flag and `DCONN_DB_URL` in front, and does the same for the
Fernet key (`--fernet-key`, `DCONN_FERNET_KEY`, `AIRFLOW__CORE__FERNET_KEY`, `_CMD`, `[core]
fernet_key`, `fernet_key_cmd`). Like Airflow, an `AIRFLOW__` variable or an airflow.cfg option
that is present but empty still wins: `AIRFLOW__CORE__FERNET_KEY=''` (as in Airflow's Docker
Compose file) means "no key", whatever airflow.cfg says. Values from variables and from
airflow.cfg have `$VARS` and `~` expanded, and airflow.cfg uses `%%` for a literal `%`, as in
Airflow. `_SECRET` variants need Airflow's secrets backend, which dconn does not load: they are
an error that says to pass the value another way.

One parser reads database URLs: SQLAlchemy's `make_url`, the one Airflow's engine uses. The
target's identity, the masked URL in every message and the engine dconn opens all come from
it, so a password holding `#`, `/` or `?` cannot make one database look like another.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from declarative_conns.commands import CommandFailed, run_command
from declarative_conns.errors import TargetError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

#: How long any database statement may wait for an answer (`--db-timeout`), CONTRACT §13.
DEFAULT_DB_TIMEOUT_SECONDS = 60.0

#: URL schemes per backend family (the part before any `+driver`).
_FAMILIES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True, repr=False)
class DatabaseSettings:
    """Hold where the database is and which key encrypts it; secrets hidden from repr."""

    url: str
    fernet_key: str | None
    schema: str | None
    url_source: str
    key_source: str | None
    #: Longest wait for an answer to any database statement, in seconds (`--db-timeout`).
    db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS

    def __repr__(self) -> str:
        return f"DatabaseSettings({mask_url(self.url)!r}, from {self.url_source})"

    @property
    def masked_url(self) -> str:
        """Return the URL with its password replaced by ***."""
        return mask_url(self.url)


_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def parse_url(url: str) -> URL:
    """Parse a database URL as Airflow's engine does (SQLAlchemy's make_url), or raise TargetError."""
    parsed = parse_url_or_none(url)
    if parsed is None:
        raise TargetError(f"not a database URL: {mask_url(url)}")
    if parsed.host and "@" in parsed.host:
        # make_url ends the password at the first "@": the rest would be taken for the host.
        raise TargetError(
            f"{mask_url(url)}: the password holds an '@', which a URL must spell %40 "
            "(percent-encode the password)"
        )
    return parsed


def backend_family(parsed: URL) -> str:
    """Return the URL's backend family: sqlite, postgresql or mysql (MariaDB included)."""
    backend = parsed.drivername.partition("+")[0]
    family = _FAMILIES.get(backend)
    if family is None:
        raise TargetError(
            f"unsupported database {backend!r} in {mask_url(parsed)}: Airflow's metadata database "
            "is SQLite, PostgreSQL or MySQL/MariaDB"
        )
    return family


def mask_url(url: str | URL) -> str:
    """Hide the password of a database URL: `postgresql://etl:***@host/airflow`."""
    parsed = parse_url_or_none(url) if isinstance(url, str) else url
    if parsed is None or (parsed.host and "@" in parsed.host):
        return _mask_unparsed(str(url))
    return _QUERY_SECRET.sub(r"\1***", parsed.render_as_string(hide_password=True))


def parse_url_or_none(url: str) -> URL | None:
    """Return SQLAlchemy's reading of a URL, or None where it cannot read one (for masking)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _mask_unparsed(text: str) -> str:
    """Mask text make_url cannot read: everything before the last "@" of the authority goes."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    rest = _QUERY_SECRET.sub(r"\1***", rest)
    end = min([i for i in (rest.find(c) for c in "/?#") if i != -1] or [len(rest)])
    at = rest.rfind("@", 0, end)
    if at == -1:
        at = rest.rfind("@")  # a password may hold an unescaped "/", "?" or "#"
    if at == -1:
        return f"{scheme}://{rest}" if sep else rest
    user = rest[:at].split(":", 1)[0] if ":" in rest[:at] else ""
    shown = f"{user}:***@{rest[at + 1 :]}" if user else f"***@{rest[at + 1 :]}"
    return f"{scheme}://{shown}" if sep else shown


def resolve_target(
    db_url: str | None = None,
    fernet_key: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS,
) -> DatabaseSettings:
    """Find the database URL, Fernet key and schema from flags, environment and airflow.cfg."""
    if not 0 < db_timeout < float("inf"):
        raise TargetError(f"--db-timeout must be a number of seconds above 0, not {db_timeout:g}")
    env = os.environ if environ is None else environ
    cfg = _read_airflow_cfg(env)
    url, url_source = _lookup(
        env,
        cfg,
        db_url,
        "--db-url",
        "DCONN_DB_URL",
        [("database", "sql_alchemy_conn"), ("core", "sql_alchemy_conn")],
    )
    if url is None:
        url, url_source = f"sqlite:///{airflow_home(env) / 'airflow.db'}", "Airflow's default ($AIRFLOW_HOME)"
    elif not url:
        raise TargetError(f"{url_source} is set but empty: give the metadata database URL")
    key, key_source = _lookup(
        env, cfg, fernet_key, "--fernet-key", "DCONN_FERNET_KEY", [("core", "fernet_key")]
    )
    schema, _ = _lookup(
        env,
        cfg,
        None,
        "",
        "",
        [("database", "sql_alchemy_schema"), ("core", "sql_alchemy_schema")],
        sensitive=False,
    )
    schema = (schema or "").strip() or None
    return DatabaseSettings(url, key or None, schema, url_source or "", key_source, db_timeout)


def airflow_home(env: Mapping[str, str]) -> Path:
    """Return $AIRFLOW_HOME, Airflow's default being ~/airflow."""
    return Path(_expand(env.get("AIRFLOW_HOME") or "~/airflow", env))


def airflow_config_path(env: Mapping[str, str]) -> Path:
    """Return the airflow.cfg Airflow reads: $AIRFLOW_CONFIG, else $AIRFLOW_HOME/airflow.cfg."""
    configured = env.get("AIRFLOW_CONFIG")
    return Path(_expand(configured, env)) if configured else airflow_home(env) / "airflow.cfg"


def _lookup(
    env: Mapping[str, str],
    cfg: configparser.ConfigParser | None,
    flag: str | None,
    flag_name: str,
    dconn_var: str,
    options: list[tuple[str, str]],
    *,
    sensitive: bool = True,
) -> tuple[str | None, str | None]:
    """Return (value, where it came from) for one option, in Airflow's order after dconn's own.

    `options` lists the current (section, key) first, then its deprecated name. None means
    "not set anywhere"; "" means set but empty, which stops the search as it does in Airflow.
    Airflow honours `_CMD` and `_SECRET` only for its sensitive options (the URL, the key).
    """
    if flag:
        return flag.strip(), flag_name
    if dconn_var and env.get(dconn_var):
        return env[dconn_var].strip(), dconn_var
    for section, key in options:
        found = _from_environment(env, section, key, sensitive)
        if found[1] is not None:
            return found
    path = airflow_config_path(env)
    for section, key in options:
        if cfg is not None and cfg.has_option(section, key):
            return _expand(_cfg_get(cfg, path, section, key), env).strip(), f"{path} [{section}] {key}"
    if not sensitive or cfg is None:
        return None, None
    for section, key in options:
        command = cfg.get(section, f"{key}_cmd", fallback=None)
        if command:
            where = f"{path} [{section}] {key}_cmd"
            return _run(command, where), where
    for section, key in options:
        if cfg.has_option(section, f"{key}_secret"):
            raise _secret_backend_error(f"{path} [{section}] {key}_secret")
    return None, None


def _from_environment(
    env: Mapping[str, str], section: str, key: str, sensitive: bool
) -> tuple[str | None, str | None]:
    """Return Airflow's `AIRFLOW__SECTION__KEY`, its `_CMD` output, or (None, None)."""
    name = f"AIRFLOW__{section.upper()}__{key.upper()}"
    if name in env:
        return _expand(env[name], env).strip(), name
    if not sensitive:
        return None, None
    if env.get(f"{name}_CMD"):
        return _run(env[f"{name}_CMD"], f"{name}_CMD"), f"{name}_CMD"
    if env.get(f"{name}_SECRET"):
        raise _secret_backend_error(f"{name}_SECRET")
    return None, None


def _secret_backend_error(where: str) -> TargetError:
    """Explain that a value kept in Airflow's secrets backend must be given another way."""
    return TargetError(
        f"{where} is set: the value lives in Airflow's secrets backend, which dconn does not read; "
        "pass it with --db-url/--fernet-key or DCONN_DB_URL/DCONN_FERNET_KEY"
    )


_VAR = re.compile(r"\$(\w+)|\$\{([^}]*)\}")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Expand `$VAR`, `${VAR}` and `~` until nothing changes, as Airflow's expand_env_var does."""
    for _ in range(10):
        expanded = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)
        expanded = os.path.expanduser(expanded) if expanded.startswith("~") else expanded
        if expanded == value:
            break
        value = expanded
    return value


def _read_airflow_cfg(env: Mapping[str, str]) -> configparser.ConfigParser | None:
    """Read airflow.cfg when it exists, with the `%` interpolation Airflow's parser uses."""
    path = airflow_config_path(env)
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise TargetError(f"{path}: cannot parse Airflow's configuration: {type(exc).__name__}") from None
    return parser


def _cfg_get(cfg: configparser.ConfigParser, path: Path, section: str, key: str) -> str:
    """Read one option; a stray `%` is an error in Airflow too (write `%%`)."""
    try:
        return cfg.get(section, key)
    except configparser.InterpolationError:
        raise TargetError(
            f"{path} [{section}] {key}: a '%' must be written '%%' in airflow.cfg (Airflow reads it so too)"
        ) from None


def _run(command: str, where: str) -> str:
    """Run a configuration command as Airflow does (split, no shell) and return stdout, stripped."""
    try:
        argv = shlex.split(command)
        output = run_command(argv) if argv else b""
    except ValueError as exc:
        raise TargetError(f"{where}: the command could not run ({exc})") from None
    except CommandFailed as exc:
        raise TargetError(f"{where}: the command {exc}") from None
    if not argv:
        raise TargetError(f"{where}: the command is empty")
    return output.decode("utf-8", errors="replace").strip()


def target_identity(url: str, schema: str | None) -> dict[str, str | int | None]:
    """Return what identifies a database: family, host, port, database, schema; never driver or password.

    Hosts are case-folded and the default port filled in; a Unix socket (`?host=/path`, or
    MySQL's `?unix_socket=`) is the host. A SQLite database is its resolved absolute file path.
    """
    parsed = parse_url(url)
    family = backend_family(parsed)
    if family == "sqlite":
        path = parsed.database or ""
        database = str(Path(path).expanduser().resolve()) if path and path != ":memory:" else ""
        return {"family": "sqlite", "host": None, "port": None, "database": database, "schema": None}
    socket = parsed.query.get("host" if family == "postgresql" else "unix_socket")
    host = parsed.host or (socket if isinstance(socket, str) else None) or "localhost"
    return {
        "family": family,
        "host": host if host.startswith("/") else host.casefold(),
        "port": parsed.port or _DEFAULT_PORTS[family],
        "database": parsed.database or None,
        "schema": schema,
    }


def describe_identity(identity: object) -> str:
    """Name a recorded target for people: `postgresql://prod:5432/airflow (schema public)`."""
    if not isinstance(identity, dict) or not identity.get("family"):
        return "an unnamed database (no identity recorded)"
    if "url" in identity:
        return str(identity["url"])  # an API target
    family, host, database = identity["family"], identity.get("host") or "", identity.get("database") or ""
    if family == "sqlite":
        return f"sqlite:///{database}"
    if "@" in f"{host}{database}":
        # Identities recorded before make_url read URLs could hold part of a password.
        return f"a {family} database recorded by an older dconn (its identity is not shown)"
    if host.startswith("/"):
        host = quote(host, safe="")  # a socket directory, spelled as libpq's URLs spell it
    elif ":" in host:
        host = f"[{host}]"  # IPv6
    schema = identity.get("schema")
    return f"{family}://{host}:{identity.get('port')}/{database}" + (f" (schema {schema})" if schema else "")
