"""Row backups: what an apply or a restore overwrote, as stored, so that nothing is ever lost.

`backups/` beside the state file holds one JSON file per apply (and per restore): the pre-image
of every object it changed or deleted exactly as stored — Fernet tokens, never plaintext; a
secret the target held in clear is kept only as a digest — and the objects it created, so that
`dconn restore` can undo it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from declarative_conns.core.model import Address
from declarative_conns.core.state import State
from declarative_conns.errors import InputError
from declarative_conns.files.atomic import atomic_write, now, read_json_file

BACKUP_FORMAT_VERSION = 2


#: What an apply's backup holds, by whether the target showed its secrets (a database) or not (an API).
_NOTES = {
    True: "Objects as stored before a dconn apply. Encrypted values are Fernet tokens; "
    "secrets stored in clear (no Fernet key) are replaced by digests.",
    False: "Objects as the REST API showed them before a dconn apply: non-secret fields only; "
    "`hidden` names the secrets the API never showed, which a restore cannot put back.",
}


def write_apply_backup(
    folder: Path,
    state: State,
    rows: Sequence[Mapping[str, Any]],
    created: Sequence[Address] = (),
    *,
    sees_secrets: bool = True,
) -> Path | None:
    """Write the pre-images of an apply (before its commit); nothing when it overwrites and creates nothing."""
    if not rows and not created:
        return None
    document = {
        "format_version": BACKUP_FORMAT_VERSION,
        "target": state.target,
        "taken_at": now(),
        "note": _NOTES[sees_secrets],
        "rows": list(rows),
        "created": [{"kind": a.kind, "key": a.key} for a in sorted(created)],
    }
    return write_backup(folder, f"serial{state.serial + 1}", document)


def write_backup(folder: Path, label: str, document: Mapping[str, Any]) -> Path:
    """Write one backup file, named by time and label; return its path."""
    path = folder / f"{_stamp()}-{label}.json"
    atomic_write(path, (json.dumps(document, indent=1, default=str) + "\n").encode("utf-8"))
    return path


def _stamp() -> str:
    """Return the time as backup names spell it: 2026-12-01T101500Z."""
    return now().replace(":", "").replace("+0000", "Z")


def read_backup(path: Path) -> dict[str, Any]:
    """Read a backup file (format 1, connections only, or 2); rows and created objects get their kind."""
    document = read_json_file(path, "backup file")
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("rows"), list)
        or "target" not in document
    ):
        raise InputError(f"{path}: not a dconn backup file (they live in backups/ beside the state file)")
    document["rows"] = [{"kind": "connection", **row} for row in document["rows"]]
    document["created"] = [
        item if isinstance(item, dict) else {"kind": "connection", "key": item}
        for item in document.get("created", [])
    ]
    return document
