"""Put rows back as a backup recorded them: the undo of an apply, on a database target.

`dconn apply` writes the pre-image of every row it changes or deletes, as stored, to `backups/`
beside the state file, and names the objects it creates. Restoring rewrites those rows
(re-inserting deleted ones with their old ids) and deletes the created ones, in one transaction
under the apply lock, after backing up the rows it overwrites, so a restore can itself be undone.
No decryption is involved: Fernet tokens go back exactly as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from declarative_conns.files.atomic import now
from declarative_conns.files.backups import write_backup
from declarative_conns.targets.database.tables import KIND_TABLES
from declarative_conns.targets.database.target import DatabaseTarget


@dataclass
class RestorePlan:
    """Describe what restoring a backup will do to the live tables."""

    source: Path
    target_record: Mapping[str, Any]
    #: Rows rewritten as backed up, and rows re-inserted under their old ids (each with its kind).
    updates: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    #: Rows the apply created (absent before it): (kind, id, key), deleted by the restore.
    deletes: list[tuple[str, int, str]] = field(default_factory=list)
    #: Fields that cannot be restored: stored in clear, the backup holds a digest.
    kept: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return the restore as lines a person reads before approving it."""
        lines = [f"Restore from {self.source}:", ""]
        lines += [
            f'  ~ {r["kind"]} row {r["id"]} ("{_key(r)}") will be rewritten as backed up'
            for r in self.updates
        ]
        lines += [f'  + {r["kind"]} row {r["id"]} ("{_key(r)}") will be re-inserted' for r in self.inserts]
        lines += [
            f'  - {k} row {i} ("{key}") was created by the apply and will be destroyed'
            for k, i, key in self.deletes
        ]
        lines += [f"  ! {k}" for k in self.kept]
        lines += [
            "",
            f"Restore: {len(self.inserts)} to re-insert, {len(self.updates)} to rewrite, {len(self.deletes)} to destroy.",
        ]
        return "\n".join(lines) + "\n"

    @property
    def total(self) -> int:
        """Return how many rows the restore writes or deletes."""
        return len(self.updates) + len(self.inserts) + len(self.deletes)


def _key(row: Mapping[str, Any]) -> str:
    """Return a backed-up row's key."""
    return str(row.get(KIND_TABLES[row["kind"]].key_column))


def plan_restore(source: Path, document: Mapping[str, Any], target: DatabaseTarget) -> RestorePlan:
    """Compare a backup with the live tables and return what restoring it will do."""
    target.open()
    restore = RestorePlan(source, document["target"])
    kinds = sorted({r["kind"] for r in document["rows"]} | {c["kind"] for c in document["created"]})
    live = target.raw_rows(kinds)
    for kind in kinds:
        spec = KIND_TABLES[kind]
        saved_keys = {r.get(spec.key_column) for r in document["rows"] if r["kind"] == kind}
        created = {c["key"] for c in document["created"] if c["kind"] == kind} - saved_keys
        restore.deletes += [
            (kind, int(r["id"]), str(r[spec.key_column])) for r in live[kind] if r[spec.key_column] in created
        ]
        # SQLite reuses the ids of deleted rows, so a created row may hold a backed-up row's id: it
        # is deleted first, and the backed-up row re-inserted under its id.
        existing = {int(r["id"]) for r in live[kind]} - {i for k, i, _ in restore.deletes if k == kind}
        table = target.table(kind)
        for saved in (r for r in document["rows"] if r["kind"] == kind):
            row = _restorable(saved, set(table.c.keys()), restore.kept)
            (restore.updates if row["id"] in existing else restore.inserts).append(row)
    return restore


def _restorable(saved: Mapping[str, Any], columns: set[str], kept: list[str]) -> dict[str, Any]:
    """Return the columns of a saved row that can be written back."""
    row = {k: v for k, v in saved.items() if k in columns}
    flags = KIND_TABLES[saved["kind"]].encrypted
    for column in [c for c, v in row.items() if isinstance(v, dict)]:  # a digest: a secret stored in clear
        del row[column]
        # The current value stays, and so must the flag that says how it is stored: writing the
        # backup's "in clear" over a Fernet token would make Airflow read the token as the value.
        row.pop(flags.get(column, ""), None)
        kept.append(
            f'{saved["kind"]} row {row["id"]} ("{_key(saved)}"): its {column} was a secret stored in clear, '
            "so the backup holds only a digest; the current value stays"
        )
    row["id"] = int(row["id"])
    return {"kind": saved["kind"], **row}


def execute_restore(
    restore: RestorePlan, target: DatabaseTarget, lock_timeout: float, backups_dir: Path
) -> int:
    """Write the backup's rows back in one transaction; return how many rows were written or deleted."""
    with target.session(lock_timeout) as session:
        ids = {(r["kind"], r["id"]) for r in restore.updates} | {(k, i) for k, i, _ in restore.deletes}
        kinds = sorted({k for k, _ in ids})
        current = [
            {"kind": kind, **_clear_omitted(r)}
            for kind in kinds
            for r in session.current_rows(kind)
            if (kind, int(r["id"])) in ids
        ]
        if current:
            write_backup(
                backups_dir,
                "before-restore",
                {
                    "format_version": 2,
                    "target": restore.target_record,
                    "taken_at": now(),
                    "note": f"Rows as stored before `dconn restore {restore.source.name}`.",
                    "rows": current,
                    "created": [],
                },
            )
        session.put_rows(restore.deletes, restore.updates, restore.inserts)
    return restore.total


def _clear_omitted(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Keep no clear-text secret in a backup: such values become an unkeyed marker."""
    row = dict(raw)
    for column, flag in (
        ("password", "is_encrypted"),
        ("extra", "is_extra_encrypted"),
        ("val", "is_encrypted"),
    ):
        if row.get(column) and flag in row and not row.get(flag):
            row[column] = {"$omitted": "stored in clear without a Fernet key; not kept"}
    return row
