"""Write dconn's files so that a reader sees the old content or the new one, never a part.

Every file dconn writes — state, its backup, pending states, plans, row backups — goes through
`atomic_write`: a temporary file beside the target, fsync, rename, fsync of the folder, mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from declarative_conns.errors import InputError, StateError


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file atomically and privately (mode 0600)."""
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
        fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def fsync_dir(folder: Path) -> None:
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
    """Fail early, before touching the target, when a file cannot be written there."""
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise StateError(f"cannot write the state file {path}: {probe} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise StateError(f"cannot write the state file {path}: permission denied")


def now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> str:
    """Return the current UTC time for a file name: 2026-12-01T101500Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")


def read_json_file(path: Path, what: str) -> Any:
    """Read a JSON file dconn wrote (`what`: "plan file", "backup file"); one InputError line otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable dconn {what} ({type(exc).__name__})") from None
