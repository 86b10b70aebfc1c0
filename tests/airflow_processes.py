"""Start and stop the Airflow server processes of tests/airflow_servers.py.

Environments for Airflow's CLI and servers, the once-migrated template databases each server
copies, launching a server in a process group of its own, waiting for it, and stopping it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NoReturn

import pytest
from cryptography.fernet import Fernet

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
STARTUP_TIMEOUT = 120.0
CLI_TIMEOUT = 300.0

# Run by the Airflow 2 environment's Python: create the FAB roles and both users in one process
# (`airflow sync-perm` and two `airflow users create` cost about 12 s; this about 5 s).
FAB_USERS_SCRIPT = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
users = json.load(sys.stdin)
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    sm.sync_roles()
    for user in users:
        name = user["username"]
        role = sm.find_role(user["role"])
        if role is None or not sm.add_user(name, name, "Test", name + "@example.com", role, user["password"]):
            sys.exit("could not create user " + name)
"""


def base_env(venv: Path) -> dict[str, str]:
    """Return this process's environment without anything aimed at another Airflow or dconn."""
    drop = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "DCONN_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def airflow_env(venv: Path, home: Path, port: int) -> dict[str, str]:
    """Return the settings both servers share: home, SQLite database, Fernet key, no examples."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dags").mkdir(exist_ok=True)
    return {
        **base_env(venv),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
    }


def fresh_database(
    venv: Path,
    env: dict[str, str],
    work: Path,
    users: tuple[tuple[str, str], ...],
    teams: tuple[str, ...] = (),
) -> dict[str, str]:
    """Give the server a database of its own, migrated, with FAB `users`; return their passwords.

    `airflow db migrate` (and making the users and teams) runs once per Airflow environment
    into a template kept inside that environment, so that it goes when run_compat rebuilds the
    environment; each server then starts from a copy of it.
    """
    template = _template(venv, env, work, users, teams)
    with (
        contextlib.closing(sqlite3.connect(template / "airflow.db")) as source,
        contextlib.closing(sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")) as target,
    ):
        source.backup(target)
    with (work / "setup.log").open("a", encoding="utf-8") as out:
        out.write(f"database copied from {template}\n")
    passwords: dict[str, str] = json.loads((template / "users.json").read_text(encoding="utf-8"))
    return passwords


def _template(
    venv: Path, env: dict[str, str], work: Path, users: tuple[tuple[str, str], ...], teams: tuple[str, ...]
) -> Path:
    """Return the folder of the migrated template database (with users and teams), making it once."""
    recipe = (venv / "dconn-compat.json").read_text() + FAB_USERS_SCRIPT + repr((users, teams))
    final = venv / "dconn-test-db" / hashlib.sha256(recipe.encode()).hexdigest()[:12]
    if (final / "users.json").is_file():
        return final
    building = final.parent / f".building-{os.getpid()}-{secrets.token_hex(4)}"
    building.mkdir(parents=True)
    template_env = {
        **env,
        "AIRFLOW_HOME": str(building / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{building / 'airflow.db'}",
    }
    airflow = str(venv / "bin" / "airflow")
    _run_setup([airflow, "db", "migrate"], template_env, work, "airflow db migrate")
    for team in teams:
        _run_setup([airflow, "teams", "create", team], template_env, work, f"airflow teams create {team}")
    passwords = {name: secrets.token_urlsafe(12) for name, _ in users}
    if users:
        wanted = [{"username": n, "password": passwords[n], "role": r} for n, r in users]
        script = [str(venv / "bin" / "python"), "-c", FAB_USERS_SCRIPT]
        _run_setup(script, template_env, work, "create FAB users", json.dumps(wanted))
    shutil.rmtree(building / "home", ignore_errors=True)  # each server makes its own
    users_file = building / "users.json"
    users_file.touch(mode=0o600)
    users_file.write_text(json.dumps(passwords), encoding="utf-8")
    try:
        building.rename(final)
    except OSError:  # another session made it first
        shutil.rmtree(building, ignore_errors=True)
    return final


def _run_setup(argv: list[str], env: dict[str, str], work: Path, what: str, stdin: str | None = None) -> None:
    """Run one setup step, its output appended to setup.log; fail with its end on an error."""
    done = subprocess.run(
        argv,
        env=env,
        cwd=work,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    with (work / "setup.log").open("a", encoding="utf-8") as out:
        out.write(f"$ {what}: exit {done.returncode}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        pytest.fail(f"{what} exited {done.returncode} (log: {work / 'setup.log'}):\n{tail(done.stderr, 30)}")


_RUNNING: list[subprocess.Popen[bytes]] = []


def launch(venv: Path, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `airflow ARGS` in a process group of its own, output to `log`."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "airflow"), *args],
            env=env,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _RUNNING.append(process)
    return process


def wait_for(process: subprocess.Popen[bytes], version_url: str, log: Path) -> str:
    """Poll the version endpoint until it answers; return the version, or fail with the log's end."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _fail_start(process, f"the server exited with {process.returncode}", log)
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(version_url, timeout=2) as answer,
        ):
            version = str(json.load(answer)["version"])
            if process.poll() is None:  # else another server took the port first
                return version
        time.sleep(0.2)
    _fail_start(process, f"no answer from {version_url} within {STARTUP_TIMEOUT:.0f} s", log)


def _fail_start(process: subprocess.Popen[bytes], why: str, log: Path) -> NoReturn:
    """Stop a server that did not come up and fail with the end of its log."""
    stop_group(process)
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    pytest.fail(f"Airflow API server did not start: {why}. End of {log}:\n{tail(text, 40)}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM to the process group the server leads, then SIGKILL after 10 s."""
    if process in _RUNNING:
        _RUNNING.remove(process)
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)


@atexit.register
def _stop_leftovers() -> None:
    """Stop servers whose fixture never tore down (an interpreter exiting early)."""
    for process in list(_RUNNING):
        stop_group(process)


def free_port() -> int:
    """Return a loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(text: str, lines: int) -> str:
    """Return the last lines of a text."""
    return "\n".join(text.strip().splitlines()[-lines:])
