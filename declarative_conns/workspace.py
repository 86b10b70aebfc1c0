"""Where dconn works: the target (with its key), where the state lives, and how to write.

A `Workspace` is what every library call takes: `plan`, `apply`, `load_plan`, `plan_restore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from declarative_conns.errors import InputError
from declarative_conns.files.state import StateFile
from declarative_conns.files.store import (
    DEFAULT_DB_BACKUPS,
    StateLocation,
    StateStore,
    parse_state_location,
)
from declarative_conns.targets.base import Target
from declarative_conns.targets.discovery import DEFAULT_DB_TIMEOUT_SECONDS, DatabaseSettings


@dataclass(frozen=True)
class Workspace:
    """Say where dconn works: the target (with its key), where the state lives, and how to write."""

    #: The target: a DatabaseTarget or an ApiTarget. (The DatabaseSettings resolve_target()
    #: returns are made a DatabaseTarget too; typed code says Workspace.from_url.)
    target: Target
    #: The state file; or "db:" / "db:NAME": a row of the target database's `dconn_state` table.
    state_path: Path | str = Path(".dconn/state.json")
    lock_timeout: float = 30.0
    #: Write nothing at all: no state, no backup, no lock (`dconn plan --read-only`).
    read_only: bool = False
    #: Where an apply's row backups go; None: `backups/` beside the state file, or
    #: `.dconn/backups/` in the current directory for a state in the database.
    backups_dir: Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.target, DatabaseSettings):
            # What resolve_target() finds (a URL and a key) names a database target.
            from declarative_conns.targets.database.target import DatabaseTarget

            object.__setattr__(self, "target", DatabaseTarget(self.target, self.lock_timeout))
        # A str may name the database ("db:NAME"); a file's path becomes a Path for the engine.
        location = parse_state_location(self.state_path)
        object.__setattr__(self, "state_path", location.path or location.spelling)
        if location.in_database and not self.target.capabilities.holds_state:
            raise InputError(
                f"--state {location.spelling} keeps the state in the target database, which is not "
                f"available for API targets ({self.target.display}): keep the state in a file committed "
                "to git (--state .dconn/state.json)"
            )

    @property
    def state_location(self) -> StateLocation:
        """Return where the state lives: a file, or a named row in the target database."""
        return parse_state_location(self.state_path)

    @property
    def state(self) -> StateStore:
        """Return the state store: the file, or the target database's `dconn_state` table."""
        location = self.state_location
        if location.db_name is None:
            return StateFile(Path(self.state_path), self.backups_dir)
        from declarative_conns.targets.database.state_table import DatabaseState
        from declarative_conns.targets.database.target import DatabaseTarget

        # Only a target whose capabilities hold the state gets here (checked above): a database.
        assert isinstance(self.target, DatabaseTarget)
        return DatabaseState(
            self.target, location.db_name, self.backups_dir or DEFAULT_DB_BACKUPS, self.lock_timeout
        )

    @classmethod
    def from_airflow_config(
        cls,
        state_path: Path | str = ".dconn/state.json",
        *,
        lock_timeout: float = 30.0,
        db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS,
        read_only: bool = False,
        backups_dir: Path | None = None,
    ) -> Workspace:
        """Target the database Airflow's own configuration names (environment, airflow.cfg)."""
        return cls.from_url(
            None,
            None,
            state_path=state_path,
            lock_timeout=lock_timeout,
            db_timeout=db_timeout,
            read_only=read_only,
            backups_dir=backups_dir,
        )

    @classmethod
    def from_api_url(
        cls,
        api_url: str | None = None,
        *,
        state_path: Path | str = ".dconn/state.json",
        lock_timeout: float = 30.0,
        api_timeout: float = 30.0,
        read_only: bool = False,
        backups_dir: Path | None = None,
    ) -> Workspace:
        """Target a REST API (the URL, else DCONN_API_URL); credentials from the DCONN_API_* variables."""
        from declarative_conns.targets.api import ApiTarget, resolve_api_settings

        settings = resolve_api_settings(api_url, api_timeout)
        if settings is None:
            raise InputError("no REST API URL: pass one, or set DCONN_API_URL")
        return cls(ApiTarget(settings), state_path, lock_timeout, read_only, backups_dir)

    @classmethod
    def from_url(
        cls,
        db_url: str | None,
        fernet_key: str | None = None,
        *,
        state_path: Path | str = ".dconn/state.json",
        lock_timeout: float = 30.0,
        db_timeout: float = DEFAULT_DB_TIMEOUT_SECONDS,
        read_only: bool = False,
        backups_dir: Path | None = None,
    ) -> Workspace:
        """Target a database URL and Fernet key; either, when None, is found as Airflow finds it."""
        from declarative_conns.targets.database.target import DatabaseTarget
        from declarative_conns.targets.discovery import resolve_target

        settings = resolve_target(db_url, fernet_key, db_timeout=db_timeout)
        return cls(DatabaseTarget(settings, lock_timeout), state_path, lock_timeout, read_only, backups_dir)
