"""`dconn restore BACKUP`: put back what an apply changed, from the pre-images in its backup."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from declarative_conns.api import Workspace
from declarative_conns.errors import InputError, TargetError

if TYPE_CHECKING:
    from declarative_conns.targets.database.restore import RestorePlan


def plan_restore(backup: Path | str, workspace: Workspace) -> RestorePlan:
    """Read an apply's backup and say what restoring it will do to the workspace's target."""
    from declarative_conns.files.backups import read_backup
    from declarative_conns.targets.database.restore import plan_restore as compare
    from declarative_conns.targets.database.target import DatabaseTarget
    from declarative_conns.targets.discovery import describe_identity

    path, target = Path(backup), workspace.target
    document = read_backup(path)
    if not isinstance(target, DatabaseTarget):
        raise InputError("dconn restore writes rows back into a metadata database; this target is not one")
    if document["target"].get("identity") != dict(target.identity):
        raise TargetError(
            f"{path} was taken from {describe_identity(document['target'].get('identity') or {})}, "
            f"not from {describe_identity(target.identity)}"
        )
    try:
        return compare(path, document, target)
    except BaseException:
        target.close()
        raise


def restore(prepared: RestorePlan, workspace: Workspace) -> int:
    """Carry out a restore in one transaction under the apply lock; return rows written or deleted."""
    from declarative_conns.targets.database.restore import execute_restore
    from declarative_conns.targets.database.target import DatabaseTarget

    target = workspace.target
    assert isinstance(target, DatabaseTarget)
    try:
        return execute_restore(prepared, target, workspace.lock_timeout, workspace.state.backups_dir)
    finally:
        target.close()
