"""Real Airflow REST API servers for tests: Airflow 3.3 `airflow api-server`, Airflow 2.11 webserver.

Two session fixtures, `airflow3_api` and `airflow2_api`, each start one server on a free loopback
port, from the Airflow environments `make compat` installs (compat/run_compat.py), with its own
AIRFLOW_HOME and SQLite metadata database in a temporary folder (a copy of one `airflow db
migrate` made once per environment), a generated Fernet key and two users (an admin and a
viewer). Use them from a test module with

    pytest_plugins = ("tests.airflow_servers",)

and read back what Airflow itself decrypts with `server.airflow("connections", "get", ID, "-o",
"json")`. The server lives for the whole session: tests share it, so each uses ids of its own, or
calls `server.clear()` first.

When the Airflow environment is missing: outside CI the fixture skips, naming `make compat`
(DCONN_BUILD_AIRFLOW=1 builds it instead); with CI=true it is built and never skipped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.airflow_processes import (
    CLI_TIMEOUT,
    PY,
    airflow_env,
    free_port,
    fresh_database,
    launch,
    stop_group,
    tail,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BUILD = os.environ.get("DCONN_BUILD_AIRFLOW", "") == "1"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
FAB_BASIC_AUTH = "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth"
DEFAULT_POOL = {"slots": 128, "description": "Default pool", "include_deferred": 0}


@dataclass
class AirflowServer:
    """A running Airflow API server, the environment it runs in, and its users."""

    version: str  # the installed Airflow, e.g. "3.3.2"
    base_url: str  # the deployment's base, e.g. "http://127.0.0.1:41234"
    api_url: str  # base_url + "/api/v2" (Airflow 3) or "/api/v1" (Airflow 2)
    admin_username: str
    admin_password: str
    viewer_username: str
    viewer_password: str
    fernet_key: str
    airflow_home: Path
    db_url: str  # Airflow's SQLAlchemy URL of its SQLite database
    env: dict[str, str]  # every variable Airflow runs with (for its CLI, or dconn's database target)
    venv: Path
    log_file: Path
    startup_seconds: float  # from preparing the database to the version endpoint's first answer
    jwt_secret: str | None = None  # Airflow 3: the key its tokens are signed with (HS512)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def major(self) -> int:
        """Return Airflow's major version: 2 or 3."""
        return int(self.version.split(".")[0])

    @property
    def db_path(self) -> Path:
        """Return the SQLite file of the metadata database."""
        return Path(self.db_url.removeprefix("sqlite:///"))

    def airflow(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run this Airflow's CLI (`airflow ARGS`) in the server's environment; text output.

        With check (the default), a non-zero exit fails the test with the end of both streams.
        """
        done = subprocess.run(
            [str(self.venv / "bin" / "airflow"), *args],
            env=self.env,
            cwd=self.airflow_home,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"airflow {' '.join(args)} exited {done.returncode}:\n"
                + tail(done.stdout, 10)
                + "\n"
                + tail(done.stderr, 30)
            )
        return done

    def access_token(self, username: str | None = None, password: str | None = None) -> str:
        """Return a JWT from Airflow 3's POST /auth/token (the admin's unless told otherwise)."""
        if self.major < 3:
            raise TypeError("Airflow 2 has no token endpoint: use basic auth")
        body = json.dumps(
            {"username": username or self.admin_username, "password": password or self.admin_password}
        )
        request = urllib.request.Request(
            self.base_url + "/auth/token",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(json.load(answer)["access_token"])

    def signed_token(
        self, expires_in: int, username: str | None = None, role: str = "admin", key: str | None = None
    ) -> str:
        """Return an Airflow 3 JWT signed with the server's key, expiring in `expires_in` seconds.

        Negative values give an expired token (Airflow allows 10 s of leeway); another `key`
        gives a forged one. Signed here with the standard library because no JWT library is
        among the test dependencies.
        """
        if self.jwt_secret is None:
            raise TypeError("only Airflow 3 servers sign tokens")
        key = key or self.jwt_secret
        now = int(time.time())
        claims = {
            "sub": username or self.admin_username,
            "role": role,
            "teams": [],
            "jti": secrets.token_hex(16),
            "aud": "apache-airflow",
            "iat": now - 3600,
            "nbf": now - 3600,
            "exp": now + expires_in,
        }
        header = {"alg": "HS512", "kid": "not-used", "typ": "JWT"}
        signing_input = f"{_b64url(header)}.{_b64url(claims)}"
        signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha512).digest()
        return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    def clear(self) -> None:
        """Remove every connection, variable and pool; reset default_pool to Airflow's defaults.

        Writes the SQLite database directly (milliseconds, where the CLI takes seconds per call);
        the server reads the database on every request, so it sees the change at once.
        """
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=30)) as db, db:
            db.execute("DELETE FROM connection")
            db.execute("DELETE FROM variable")
            db.execute("DELETE FROM slot_pool WHERE pool != 'default_pool'")
            db.execute(
                "UPDATE slot_pool SET slots = :slots, description = :description,"
                " include_deferred = :include_deferred WHERE pool = 'default_pool'",
                DEFAULT_POOL,
            )

    def stop(self) -> None:
        """Stop the server: its whole process group, politely first."""
        if self.process is not None:
            stop_group(self.process)
            self.process = None


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def airflow3_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """Start Airflow 3.3's `airflow api-server` (simple auth manager: admin and viewer)."""
    server = start_airflow3(airflow_venv("3.3"), tmp_path_factory.mktemp("airflow3-api"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow3_teams_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """Start Airflow 3.3's api-server in multi-team mode, with teams team_a and team_b."""
    work = tmp_path_factory.mktemp("airflow3-teams-api")
    server = start_airflow3(airflow_venv("3.3"), work, teams=("team_a", "team_b"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow2_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """Start Airflow 2.11's webserver with basic auth (FAB users: Admin and Viewer)."""
    server = start_airflow2(airflow_venv("2.11"), tmp_path_factory.mktemp("airflow2-api"))
    yield server
    server.stop()


# ---------------------------------------------------------------- environments


def compat_cache() -> Path:
    """Return the folder where compat/run_compat.py keeps its Airflow environments."""
    return Path(os.environ.get("DCONN_COMPAT_CACHE", "~/.cache/dconn-compat")).expanduser()


def airflow_venv(version: str) -> Path:
    """Return the Airflow `version` environment; build it in CI or when asked, else skip."""
    venv = compat_cache() / f"airflow-{version}-py{PY}"  # as run_compat.ensure_airflow names it
    ready = (venv / "dconn-compat.json").is_file() and (venv / "bin" / "airflow").is_file()
    if ready and not IN_CI:
        return venv
    if not (IN_CI or BUILD):
        pytest.skip(
            f"no Airflow {version} environment in {venv}: run `make compat` once "
            "(or set DCONN_BUILD_AIRFLOW=1 to let the tests build it)"
        )
    compat = _load_run_compat()
    try:
        compat.ensure_build_deps()
        return Path(compat.ensure_airflow(version, compat_cache()))
    except SystemExit as stop:  # run_compat reports failures with sys.exit(message)
        pytest.fail(f"could not build the Airflow {version} environment: {stop}")


def _load_run_compat() -> ModuleType:
    """Import compat/run_compat.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("run_compat", ROOT / "compat" / "run_compat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- starting servers


def start_airflow3(venv: Path, work: Path, teams: tuple[str, ...] = ()) -> AirflowServer:
    """Start `airflow api-server` with the simple auth manager on a fresh database.

    The simple auth manager keeps its users' passwords in a JSON file and generates those it
    lacks; writing the file first gives each user a password chosen here. With `teams`,
    multi-team mode is on and those teams exist.
    """
    started = time.monotonic()
    port = free_port()
    home = work / "airflow-home"
    env = airflow_env(venv, home, port)
    passwords = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
    password_file = home / "simple_auth_manager_passwords.json.generated"
    password_file.write_text(json.dumps(passwords), encoding="utf-8")
    jwt_secret = secrets.token_urlsafe(64)
    env |= {
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__MULTI_TEAM": str(bool(teams)),
    }
    fresh_database(venv, env, work, users=(), teams=teams)
    # Only the public API ("core"), not the task execution API: starts about 2 s sooner.
    argv = ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--apps", "core"]
    return _serve(venv, argv, env, "/api/v2", started, passwords, jwt_secret)


def start_airflow2(venv: Path, work: Path, workers: int = 1) -> AirflowServer:
    """Start Airflow 2's webserver (basic auth) on a fresh database with an Admin and a Viewer.

    One synchronous gunicorn worker starts fastest; it serves one request at a time, and each
    basic-auth request costs it a password hash.
    """
    started = time.monotonic()
    port = free_port()
    home = work / "airflow-home"
    env = airflow_env(venv, home, port)
    env |= {
        "AIRFLOW__API__AUTH_BACKENDS": FAB_BASIC_AUTH,
        "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port),
    }
    passwords = fresh_database(venv, env, work, users=(("admin", "Admin"), ("viewer", "Viewer")))
    argv = ["webserver", "--hostname", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--workerclass", "sync"]
    return _serve(venv, argv, env, "/api/v1", started, passwords)


def _serve(
    venv: Path,
    argv: list[str],
    env: dict[str, str],
    prefix: str,
    started: float,
    passwords: dict[str, str],
    jwt_secret: str | None = None,
) -> AirflowServer:
    """Launch `airflow ARGV`, wait for its version endpoint, and describe the running server."""
    home = Path(env["AIRFLOW_HOME"])
    log = home.parent / "server.log"
    base_url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
    process = launch(venv, argv, env, log)
    version = wait_for(process, f"{base_url}{prefix}/version", log)
    return AirflowServer(
        version=version,
        base_url=base_url,
        api_url=base_url + prefix,
        admin_username="admin",
        admin_password=passwords["admin"],
        viewer_username="viewer",
        viewer_password=passwords["viewer"],
        fernet_key=env["AIRFLOW__CORE__FERNET_KEY"],
        airflow_home=home,
        db_url=env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        env=env,
        venv=venv,
        log_file=log,
        startup_seconds=time.monotonic() - started,
        jwt_secret=jwt_secret,
        process=process,
    )


def _b64url(data: dict[str, Any]) -> str:
    """Encode a JSON object as unpadded base64url, as JWTs do."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
