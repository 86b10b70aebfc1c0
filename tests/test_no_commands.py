"""--no-commands and DCONN_NO_COMMANDS: every from_command is refused, named, before any runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from declarative_conns.config.loader import load_desired
from declarative_conns.config.secrets import refusing_commands, resolve_desired, resolve_secret
from declarative_conns.core.model import Address, SecretRef
from declarative_conns.errors import SecretError
from tests.helpers import run_dconn

CANARY = "canary-nocmd-2f81"
FIRST = """
[connections.warehouse]
conn_type = "postgres"
password = { from_command = ["sh", "-c", "touch ran-warehouse; echo canary-nocmd-2f81"] }
login = { from_env = "NOCMD_LOGIN" }
"""
SECOND = """
[connections.api]
conn_type = "http"
extra = { token = { from_command = ["./fetch-token", "--id", "api"] } }
"""
REFUSAL = (
    "Error: --no-commands (or DCONN_NO_COMMANDS) refuses every from_command, and no command was run: "
    "conf/b.toml: connections.api.extra.token runs './fetch-token'; "
    "conf/a.toml: connections.warehouse.password runs 'sh'"
)


@pytest.fixture
def project(make_db: Any, tmp_path: Path) -> tuple[Path, dict[str, str], Any]:
    """Two files with a from_command each (one writes ran-warehouse when it runs), a database."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.toml").write_text(FIRST)
    (tmp_path / "conf" / "b.toml").write_text(SECOND)
    script = tmp_path / "conf" / "fetch-token"
    script.write_text("#!/bin/sh\ntouch ran-api\necho token\n")
    script.chmod(0o755)
    env = {"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key, "NOCMD_LOGIN": "etl"}
    return tmp_path, env, db


def ran(folder: Path) -> list[str]:
    """Return which commands left their mark (they touch ran-* in the TOML's folder)."""
    return sorted(p.name for p in (folder / "conf").glob("ran-*"))


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["plan", "--no-commands"], {}),
        (["plan"], {"DCONN_NO_COMMANDS": "1"}),
        (["plan"], {"DCONN_NO_COMMANDS": "true"}),
        (["plan", "--format", "json"], {"DCONN_NO_COMMANDS": "yes"}),
        (["apply", "--auto-approve", "--no-commands"], {}),
        (["apply", "--auto-approve"], {"DCONN_NO_COMMANDS": "1"}),
    ],
)
def test_every_command_is_refused_by_name_before_any_runs(
    project: tuple[Path, dict[str, str], Any], args: list[str], env: dict[str, str]
) -> None:
    """plan and apply refuse each from_command (file, path, argv[0]) in one Error line; none runs."""
    cwd, target, db = project
    result = run_dconn(*args, "-c", "conf", cwd=cwd, env={**target, **env})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [REFUSAL]
    assert result.stdout == ""
    assert ran(cwd) == []
    assert db.rows() == []
    assert CANARY not in result.stderr


def test_a_saved_plan_is_refused_too(project: tuple[Path, dict[str, str], Any]) -> None:
    """apply PLANFILE --no-commands refuses the plan's from_command references; none runs again."""
    cwd, target, db = project
    saved = run_dconn("plan", "-c", "conf", "--out", "saved.plan", cwd=cwd, env=target)
    assert saved.returncode == 0, saved.stderr
    for mark in (cwd / "conf").glob("ran-*"):
        mark.unlink()
    result = run_dconn("apply", "saved.plan", "--no-commands", cwd=cwd, env=target)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: --no-commands (or DCONN_NO_COMMANDS) refuses every from_command, and no command was "
        "run: saved.plan: connections.api.extra.token runs './fetch-token'; "
        "saved.plan: connections.warehouse.password runs 'sh'"
    ]
    assert ran(cwd) == []
    assert db.rows() == []


def test_without_the_flag_the_commands_run(project: tuple[Path, dict[str, str], Any]) -> None:
    """The same configuration plans when commands are allowed (DCONN_NO_COMMANDS=0 allows them)."""
    cwd, target, _ = project
    result = run_dconn("plan", "-c", "conf", cwd=cwd, env={**target, "DCONN_NO_COMMANDS": "0"})
    assert result.returncode == 0, result.stderr
    assert ran(cwd) == ["ran-api", "ran-warehouse"]


def test_export_accepts_the_flag(project: tuple[Path, dict[str, str], Any]) -> None:
    """export takes --no-commands (one CI setting for every command) and exports as usual."""
    cwd, target, _ = project
    result = run_dconn("export", "--no-commands", cwd=cwd, env=target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#")


@pytest.mark.parametrize("command", ["plan", "apply", "export"])
def test_the_flag_is_in_the_help(tmp_path: Path, command: str) -> None:
    """plan, apply and export document --no-commands."""
    result = run_dconn(command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0 and "--no-commands" in result.stdout


def test_library_refuses_before_the_resolver_is_called(tmp_path: Path) -> None:
    """resolve_desired under refusing_commands names every command and calls no resolver at all."""
    (tmp_path / "a.toml").write_text(FIRST)
    desired = load_desired(tmp_path / "a.toml")
    called: list[SecretRef] = []

    def resolver(ref: SecretRef) -> str:
        """Record the call and give a value."""
        called.append(ref)
        return "value"

    with refusing_commands(), pytest.raises(SecretError) as info:
        resolve_desired(desired, resolver)
    assert str(info.value).endswith(f"{tmp_path / 'a.toml'}: connections.warehouse.password runs 'sh'")
    assert called == []
    assert (
        resolve_desired(desired, resolver)[Address("connection", "warehouse")].get("password") == "value"
    )  # allowed again


def test_resolve_secret_refuses_under_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DCONN_NO_COMMANDS=1 makes resolve_secret itself refuse a command, whoever calls it."""
    monkeypatch.setenv("DCONN_NO_COMMANDS", "1")
    mark = tmp_path / "ran"
    with pytest.raises(SecretError, match=r"^from_command touch .*ran is refused: --no-commands"):
        resolve_secret(SecretRef("command", ("touch", str(mark)), str(tmp_path)))
    assert not mark.exists()
    monkeypatch.setenv("DCONN_NO_COMMANDS", "0")
    resolve_secret(SecretRef("command", ("touch", str(mark)), str(tmp_path)))
    assert mark.exists()


def test_a_bad_variable_value_is_one_error_line(tmp_path: Path) -> None:
    """DCONN_NO_COMMANDS=maybe is refused by plan as a usage error: one Error line, exit 1."""
    result = run_dconn("plan", cwd=tmp_path, env={"DCONN_NO_COMMANDS": "maybe"})
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert "--no-commands" in result.stderr
