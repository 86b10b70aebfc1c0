"""The state file: read, checked against its schema, and written only by compare-and-swap.

`.dconn/state.json` (or `--state PATH`) holds core.state.State's document, one entry per line so
that it reads and diffs well in git. Every write keeps the previous file as `state.json.backup`
and happens only when the file still holds the state the run read (same lineage and serial),
under an advisory lock on its folder: two applies a moment apart can never both win.

An apply writes the state it is about to commit as `state.json.pending` first, inside its
transaction; after the commit the pending file replaces the state. A run that finds a pending
file settles it against what the target holds (api.py): so the state follows the commit
whatever happens after it — Ctrl-C, a full disk, a killed process.

The state may live in the target database instead (`--state db:`,
targets.database.state_table); files.store says which, and what both stores do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from declarative_conns.config.resources import load_schema, schema_check
from declarative_conns.core.state import STATE_FORMAT_VERSION, State
from declarative_conns.errors import StateError
from declarative_conns.files.atomic import atomic_write, check_writable, now

#: (lineage, serial) of the state a run read, or None when there was none: what a write compares.
Version = tuple[str, int] | None


class StateChanged(StateError):
    """Raise when the state file changed since this run read it (another run wrote it)."""


@dataclass(frozen=True)
class StateFile:
    """The state kept in a file; its pending apply beside it."""

    path: Path
    #: Where the apply's row backups go; None: `backups/` beside the state file.
    backups: Path | None = None

    @property
    def pending_path(self) -> Path:
        """Return where an apply's state waits for its commit."""
        return self.path.with_name(self.path.name + ".pending")

    @property
    def backup_path(self) -> Path:
        """Return where the previous state is kept."""
        return self.path.with_name(self.path.name + ".backup")

    @property
    def backups_dir(self) -> Path:
        """Return the folder of the apply's row backups, beside the state file unless told otherwise."""
        return self.backups if self.backups is not None else self.path.parent / "backups"

    @property
    def inside_target(self) -> bool:
        """Tell that a file lives outside the target (so it is checked against the target's identity)."""
        return False

    def describe(self) -> str:
        """Return the state's location as messages name it."""
        return str(self.path)

    def check_writable(self) -> None:
        """Fail early, before touching the target, when the state cannot be written."""
        check_writable(self.path)

    def load(self) -> State | None:
        """Return the state, None when there is none yet (a first run)."""
        state = _read(self.path, "state file")
        if state is not None:
            # An apply's pending file becomes the state file as it is; what it recorded of the
            # rows before the apply only serves to settle a pending state, so it is not kept.
            state.before_apply = {}
        return state

    def load_pending(self) -> State | None:
        """Return the state of an apply that may not have been settled, if there is one."""
        return _read(self.pending_path, "pending state file")

    def save(self, state: State, expected: Version, *, create: bool = False) -> bool:
        """Write the state as the next serial, if the file still holds the `expected` version.

        A file is always written (`create` matters only to a store inside the target).
        """
        with self._locked():
            self._check_version(expected)
            self._write(self.path, state, keep_previous=True)
        return True

    def prepare(self, session: object) -> None:
        """Do nothing: a file needs nothing from the apply's session."""

    def stage(self, state: State, expected: Version, session: object = None) -> None:
        """Write the state an apply is about to commit beside the state file (before the commit).

        `session` is the apply's session on the target; a store inside the target (the database's
        `dconn_state` table) writes through it, in the apply's own transaction.
        """
        with self._locked():
            self._check_version(expected)
            self._write(self.pending_path, state, keep_previous=False)

    def promote(self) -> None:
        """Make the pending state the state (after the commit), keeping the previous one as backup."""
        with self._locked():
            if not self.pending_path.exists():
                return
            if self.path.exists():
                atomic_write(self.backup_path, self.path.read_bytes())
            try:
                os.replace(self.pending_path, self.path)
            except OSError as exc:
                raise StateError(f"cannot write {self.path}: {exc.strerror}") from None

    def discard_pending(self) -> None:
        """Remove the pending state of an apply that did not commit."""
        with contextlib.suppress(FileNotFoundError):
            self.pending_path.unlink()

    def _check_version(self, expected: Version) -> None:
        """Refuse to write when the file holds another state than the run read."""
        found = _version(_read(self.path, "state file"))
        if found != expected:
            raise StateChanged(
                f"state file {self.path} changed while this run was working (another dconn run wrote "
                f"serial {found[1] if found else '-'}); nothing was written to it: run dconn plan again"
            )

    def _write(self, path: Path, state: State, *, keep_previous: bool) -> None:
        """Write the state's next serial to a path."""
        state.serial += 1
        state.written_at = now()
        text = state_text(state)
        if keep_previous and path.exists():
            atomic_write(self.backup_path, path.read_bytes())
        try:
            atomic_write(path, text.encode("utf-8"))
        except BaseException:
            state.serial -= 1
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an advisory lock on the state's folder (POSIX), serialising every dconn writer."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the target's lock still serialises applies
            yield
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def state_text(state: State) -> str:
    """Return a state's document as written: one entry per line, so that it reads and diffs well."""
    return dumps_lines(state.to_json(), _STATE_LINES) + "\n"


def version_of(state: State | None) -> Version:
    """Return the (lineage, serial) a later write compares with."""
    return _version(state)


def _version(state: State | None) -> Version:
    """Return a state's (lineage, serial), None for no state."""
    return None if state is None else (state.lineage, state.serial)


def _read(path: Path, what: str) -> State | None:
    """Read and check one state document; None when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{what} {path} cannot be read: {exc}") from None
    return parse_state(text, str(path), what)


def parse_state(text: str, where: str, what: str = "state file", hint: str | None = None) -> State:
    """Parse a state document's text; a corrupt or foreign one is an error, never replaced.

    `hint` says what to do about a corrupt one (default: the file's backup).
    """
    hint = hint or f"restore it from {Path(where).name}.backup or move it aside"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{what} {where} is corrupt ({exc.msg} at line {exc.lineno}); {hint}") from None
    version = document.get("format_version") if isinstance(document, dict) else None
    if isinstance(version, int) and version > STATE_FORMAT_VERSION:
        raise StateError(f"{what} {where} was written by a newer dconn; upgrade dconn")
    schema = "state-v1.schema.json" if version == 1 else "state.schema.json"
    if not schema_check(schema)(document):
        from jsonschema import Draft202012Validator

        error = next(Draft202012Validator(load_schema(schema)).iter_errors(document), None)
        place = ".".join(map(str, error.absolute_path)) or "(document)" if error else "(document)"
        check = error.validator if error else "schema"
        raise StateError(
            f"{what} {where} is corrupt or not a dconn state file (at {place}: {check} check failed); {hint}"
        )
    return State.from_json(document)


#: Members of the state written one entry per line (the rest of an entry stays on its line).
_STATE_LINES = frozenset(
    {("managed",), ("applied",), ("snapshot",), ("snapshot", "objects"), ("sent",)}
    | {
        (member, kind)
        for member in ("managed", "applied", "sent")
        for kind in ("connection", "variable", "pool")
    }
)


def dumps_lines(
    document: Any, expand: Collection[tuple[str, ...]] = (), default: Callable[[Any], Any] | None = None
) -> str:
    """Return JSON text with one line per top-level member and per entry of the `expand` members.

    The file reads (and diffs in git) by line, and each entry is written by the json module's
    C encoder (`indent=` would switch the whole document to the pure-Python one).
    """
    encode = json.JSONEncoder(ensure_ascii=False, default=default).encode

    def write(value: Any, path: tuple[str, ...]) -> str:
        if (path and path not in expand) or not isinstance(value, (dict, list)) or not value:
            return encode(value)
        pad = " " * (len(path) + 1)
        if isinstance(value, dict):
            members = [
                f"{pad}{encode(k)}: {write(v, (*path, k)) if (*path, k) in expand else encode(v)}"
                for k, v in value.items()
            ]
            return "{\n" + ",\n".join(members) + f"\n{pad[1:]}}}"
        return "[\n" + ",\n".join([pad + encode(v) for v in value]) + f"\n{pad[1:]}]"

    return write(document, ())
