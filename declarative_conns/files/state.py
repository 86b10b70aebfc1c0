"""Read and write dconn's files: the state file, backups and saved plans.

Every write is atomic (temporary file, fsync, rename) and private (mode 0600). The previous
state is kept as `state.json.backup`. A corrupt or foreign state file is an error, never
silently replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from declarative_conns.config.resources import load_schema, schema_check
from declarative_conns.errors import StateError

STATE_FORMAT_VERSION = 1


@dataclass
class State:
    """Hold what dconn knows between runs: what it manages and how it last left it."""

    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    target: dict[str, Any] = field(default_factory=dict)
    digest_key: dict[str, Any] = field(default_factory=dict)
    managed: list[str] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    written_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the state as its JSON document."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "written_at": self.written_at,
            "target": self.target,
            "digest_key": self.digest_key,
            "managed": sorted(self.managed),
            "applied": {k: self.applied[k] for k in sorted(self.applied)},
            "snapshot": self.snapshot,
        }


def load_state(path: Path) -> State | None:
    """Return the state at a path, None when there is none yet (a first run)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"state file {path} cannot be read: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"state file {path} is corrupt ({exc.msg} at line {exc.lineno}); restore it from "
            f"{path.name}.backup or move it aside"
        ) from None
    _check_schema(document, path)
    return State(
        lineage=document["lineage"],
        serial=document["serial"],
        target=document["target"],
        digest_key=document["digest_key"],
        managed=list(document["managed"]),
        applied=dict(document["applied"]),
        snapshot=document["snapshot"],
        written_at=document["written_at"],
    )


def _check_schema(document: Any, path: Path) -> None:
    """Refuse a state file that is not dconn's, or of a newer format."""
    version = document.get("format_version") if isinstance(document, dict) else None
    if isinstance(version, int) and version > STATE_FORMAT_VERSION:
        raise StateError(f"state file {path} was written by a newer dconn; upgrade dconn")
    if schema_check("state.schema.json")(document):
        return
    from jsonschema import Draft202012Validator

    error = next(Draft202012Validator(load_schema("state.schema.json")).iter_errors(document), None)
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(document)"
        raise StateError(
            f"state file {path} is corrupt or not a dconn state file (at {where}: "
            f"{error.validator} check failed); restore it from {path.name}.backup or move it aside"
        )


def save_state(path: Path, state: State) -> None:
    """Write the state atomically, keeping the previous one as `<name>.backup`."""
    state.serial += 1
    state.written_at = now()
    text = dumps_lines(state.to_json(), _STATE_LINES) + "\n"
    if path.exists():
        atomic_write(path.with_name(path.name + ".backup"), path.read_bytes())
    atomic_write(path, text.encode("utf-8"))


#: Members of the state written one entry per line (the rest of an entry stays on its line).
_STATE_LINES = frozenset({("managed",), ("applied",), ("snapshot",), ("snapshot", "rows")})


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part; mode 0600."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable by syncing its folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: Path) -> None:
    """Fail early, before touching the database, when the state file cannot be written."""
    folder = path.parent
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise StateError(f"cannot write the state file {path}: {probe} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise StateError(f"cannot write the state file {path}: permission denied")


def now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
