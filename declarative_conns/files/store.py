"""Where the state lives: a file (files.state.StateFile) or a table of the target database.

`--state PATH` (and an environment's `state = "PATH"`) names a file; `--state db:` / `db:NAME`
(and `state = "db"` / `"db:NAME"`) names a row of the `dconn_state` table in the target
database (targets.database.state_table.DatabaseState). Both stores keep the same document and
give the same guarantees: a write happens only when the store still holds the version the run
read (compare-and-swap), and an apply's state follows its commit. `parse_state_location` is the
one parser of both spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from declarative_conns.core.state import State
from declarative_conns.errors import InputError, StateError
from declarative_conns.files.state import Version

#: The spelling that names the target database as the state's home.
DB_PREFIX = "db:"
#: The state's name in the target database when `db:` names none (CONTRACT §11).
DEFAULT_DB_STATE_NAME = "default"
#: Names are ASCII so that every backend compares them the same way (MySQL's default collations
#: would take `Prod` and `prod` for one name).
_DB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
#: Where an apply's row backups go when the state is in the database (relative to the current
#: directory): backups hold row pre-images, Fernet tokens included, and stay files.
DEFAULT_DB_BACKUPS = Path(".dconn/backups")


class StateNotSaved(StateError):
    """Raise when a plan could not refresh the state's snapshot (it is kept in memory; the plan goes on)."""


@dataclass(frozen=True)
class StateLocation:
    """Say where a state lives: a file, or a named row of the target database's `dconn_state` table."""

    path: Path | None = None
    db_name: str | None = None

    @property
    def in_database(self) -> bool:
        """Tell whether the state lives in the target database."""
        return self.db_name is not None

    @property
    def spelling(self) -> str:
        """Return the location as `--state` takes it: a path, or `db:NAME`."""
        return f"{DB_PREFIX}{self.db_name}" if self.db_name is not None else str(self.path)


def parse_state_location(spelling: str | Path, base: Path | None = None) -> StateLocation:
    """Parse `--state` or an environment's `state`: `db`, `db:` or `db:NAME`, else a file path.

    A relative path is taken relative to `base` when one is given (dconn.toml's folder). To
    name a file called `db`, write `./db`.
    """
    if isinstance(spelling, Path):
        return StateLocation(path=_under(spelling, base))
    if spelling == "db" or spelling.startswith(DB_PREFIX):
        name = spelling[len(DB_PREFIX) :] or DEFAULT_DB_STATE_NAME
        if not _DB_NAME.fullmatch(name):
            raise InputError(
                f"state {spelling!r}: a state name in the database is 1 to 200 letters, digits, "
                "'_', '.' or '-' (db:NAME)"
            )
        return StateLocation(db_name=name)
    if not spelling:
        raise InputError("the state location is empty: give a file path, or db: / db:NAME")
    return StateLocation(path=_under(Path(spelling), base))


def _under(path: Path, base: Path | None) -> Path:
    """Return a path relative to `base` (when given and the path is relative)."""
    return base / path if base is not None and not path.is_absolute() else path


class StateStore(Protocol):
    """Keep the state between runs: read it, and write it only by compare-and-swap.

    The apply pipeline calls `prepare` at the start of its session (before any write), `stage`
    inside its session just before the commit, and `promote` after the commit.
    """

    @property
    def backups_dir(self) -> Path:
        """Return the folder of the apply's row backups."""
        ...

    @property
    def inside_target(self) -> bool:
        """Tell whether the store lives in the target itself (then it cannot belong to another)."""
        ...

    def describe(self) -> str:
        """Return the state's location as messages name it."""
        ...

    def check_writable(self) -> None:
        """Fail early, before touching the target, when the state cannot be written."""
        ...

    def load(self) -> State | None:
        """Return the state, None when there is none yet (a first run)."""
        ...

    def load_pending(self) -> State | None:
        """Return the state of an apply that may not have been settled, if there is one."""
        ...

    def save(self, state: State, expected: Version, *, create: bool = False) -> bool:
        """Write the state as the next serial if the store still holds `expected`; return whether it was written.

        Only an apply (or `dconn state push`) passes `create`: a plan never creates the store's
        table, and a store that has none yet keeps the plan's state in memory (False).
        """
        ...

    def prepare(self, session: object) -> None:
        """Make ready, at the start of an apply's session and before any write, what `stage` needs."""
        ...

    def stage(self, state: State, expected: Version, session: object = None) -> None:
        """Write the state an apply is about to commit (inside its session, before the commit)."""
        ...

    def promote(self) -> None:
        """Make the staged state the state, after the commit."""
        ...

    def discard_pending(self) -> None:
        """Forget the staged state of an apply that did not commit."""
        ...
