"""Put rows back as a backup recorded them: the undo of an apply.

`dconn apply` writes the pre-image of every row it changes or deletes, as stored, to
`backups/` beside the state file. Restoring rewrites those rows (re-inserting deleted ones
with their old ids) in one transaction under the apply lock, after backing up the rows it
overwrites, so a restore can itself be undone. No decryption is involved: Fernet tokens go
back exactly as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from declarative_conns.errors import InputError, TargetError
from declarative_conns.files.state import atomic_write, now
from declarative_conns.targets.database import engine as airflow_db
from declarative_conns.targets.discovery import Target, describe_identity, target_identity


@dataclass
class RestorePlan:
    """Describe what restoring a backup will do to the live table."""

    source: Path
    db: airflow_db.Database
    updates: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    #: Rows the apply created (absent before it): (id, conn_id), deleted by the restore.
    deletes: list[tuple[int, str]] = field(default_factory=list)
    #: Fields that cannot be restored: they were stored in clear and the backup holds a digest.
    kept: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return the restore as lines a person reads before approving it."""
        lines = [f"Restore from {self.source}:", ""]
        lines += [
            f'  ~ row {r["id"]} ("{r["conn_id"]}") will be rewritten as backed up' for r in self.updates
        ]
        lines += [f'  + row {r["id"]} ("{r["conn_id"]}") will be re-inserted' for r in self.inserts]
        lines += [
            f'  - row {i} ("{c}") was created by the apply and will be destroyed' for i, c in self.deletes
        ]
        lines += [f"  ! {k}" for k in self.kept]
        lines += [
            "",
            f"Restore: {len(self.inserts)} to re-insert, {len(self.updates)} to rewrite, "
            f"{len(self.deletes)} to destroy.",
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Release the database connections."""
        self.db.close()


def read_backup(path: Path) -> dict[str, Any]:
    """Read a backup file written by apply."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such backup file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable dconn backup ({type(exc).__name__})") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("rows"), list)
        or "target" not in document
    ):
        raise InputError(f"{path}: not a dconn backup file (they live in backups/ beside the state file)")
    return document


def plan_restore(path: Path, target: Target, lock_timeout: float = 30.0) -> RestorePlan:
    """Compare a backup with the live table and return what restoring it will do."""
    document = read_backup(path)
    identity = target_identity(target.url, target.schema)
    if document["target"].get("identity") != identity:
        raise TargetError(
            f"{path} was taken from {describe_identity(document['target'].get('identity'))}, "
            f"not from {describe_identity(identity)}"
        )
    db = airflow_db.open_database(target.url, target.schema, lock_timeout, target.db_timeout)
    try:
        with airflow_db.transaction(db, write=False) as conn:
            live = airflow_db.read_rows(conn, db)
    except BaseException:
        db.close()
        raise
    restore = RestorePlan(path, db)
    created = set(document.get("created", ())) - {r.get("conn_id") for r in document["rows"]}
    restore.deletes = [(int(r["id"]), str(r["conn_id"])) for r in live if r["conn_id"] in created]
    # SQLite reuses the ids of deleted rows, so a created row may hold a backed-up row's id:
    # it is deleted first, and the backed-up row re-inserted under its id.
    existing = {int(r["id"]) for r in live} - {i for i, _ in restore.deletes}
    for saved in document["rows"]:
        row = _restorable(saved, db, restore.kept)
        (restore.updates if row["id"] in existing else restore.inserts).append(row)
    return restore


def _restorable(saved: Mapping[str, Any], db: airflow_db.Database, kept: list[str]) -> dict[str, Any]:
    """Return the columns of a saved row that can be written back."""
    row = {k: v for k, v in saved.items() if k in db.table.c}
    for column in [c for c, v in row.items() if isinstance(v, dict)]:  # a digest: a secret in clear
        del row[column]
        kept.append(
            f'row {row["id"]} ("{row.get("conn_id")}"): its {column} was a secret stored in clear, '
            "so the backup holds only a digest; the current value stays"
        )
    row["id"] = int(row["id"])
    return row


def execute_restore(restore: RestorePlan, backups_dir: Path) -> int:
    """Write the backup's rows back in one transaction; return how many rows were written."""
    db = restore.db
    ids = {r["id"] for r in restore.updates} | {i for i, _ in restore.deletes}
    with airflow_db.transaction(db, write=True) as conn:
        airflow_db.acquire_lock(conn, db, db.lock_timeout)
        try:
            current = [r for r in airflow_db.read_rows(conn, db) if int(r["id"]) in ids]
            if current:
                _save_pre_image(backups_dir, restore, current)
            airflow_db.delete_rows(conn, db, [i for i, _ in restore.deletes])
            for group in _same_columns(restore.updates):
                airflow_db.update_rows(conn, db, group)
            for group in _same_columns(restore.inserts):
                airflow_db.insert_rows(conn, db, group)
        finally:
            airflow_db.release_lock(conn, db)
    return len(restore.updates) + len(restore.inserts) + len(restore.deletes)


def _same_columns(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group rows by their column set (executemany needs the same keys in every row)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _save_pre_image(backups_dir: Path, restore: RestorePlan, rows: Sequence[Mapping[str, Any]]) -> None:
    """Back up the rows a restore overwrites, so the restore can be undone too."""
    stamp = now().replace(":", "").replace("+0000", "Z")
    document = {
        "format_version": 1,
        "target": json.loads(restore.source.read_text(encoding="utf-8"))["target"],
        "taken_at": now(),
        "note": f"Rows as stored before `dconn restore {restore.source.name}`.",
        "rows": [_digest_clear(r) for r in rows],
    }
    atomic_write(
        backups_dir / f"{stamp}-before-restore.json",
        (json.dumps(document, indent=1, default=str) + "\n").encode(),
    )


def _digest_clear(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Keep no clear-text secret in a backup: such values become an unkeyed marker."""
    row = dict(raw)
    for column, flag in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
        if row.get(column) and not row.get(flag):
            row[column] = {"$omitted": "stored in clear without a Fernet key; not kept"}
    return row
