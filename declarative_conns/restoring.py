"""`dconn restore BACKUP`: put back what an apply changed, from the pre-images in its backup."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from declarative_conns.errors import InputError, TargetError
from declarative_conns.workspace import Workspace

if TYPE_CHECKING:
    from declarative_conns.targets.api.restore import ApiRestorePlan
    from declarative_conns.targets.database.restore import RestorePlan


def plan_restore(backup: Path | str, workspace: Workspace) -> RestorePlan | ApiRestorePlan:
    """Read an apply's backup and say what restoring it will do to the workspace's target.

    Through a REST API only non-secret fields come back (the API never showed the secrets);
    the plan says which values stay as they are.
    """
    from declarative_conns.files.backups import read_backup
    from declarative_conns.targets.database.restore import plan_restore as compare
    from declarative_conns.targets.database.target import DatabaseTarget
    from declarative_conns.targets.discovery import describe_identity

    path, target = Path(backup), workspace.target
    document = read_backup(path)
    if not isinstance(target, DatabaseTarget) and not _is_api(target):
        raise InputError("dconn restore writes rows back into a metadata database; this target is not one")
    if document["target"].get("identity") != dict(target.identity):
        raise TargetError(
            f"{path} was taken from {describe_identity(document['target'].get('identity') or {})}, "
            f"not from {describe_identity(target.identity)}"
        )
    try:
        if isinstance(target, DatabaseTarget):
            return compare(path, document, target)
        from declarative_conns.targets.api.restore import plan_restore as compare_api

        return compare_api(path, document, target)  # type: ignore[arg-type]
    except BaseException:
        target.close()
        raise


def _is_api(target: object) -> bool:
    """Tell whether a target is a REST API (without importing httpx for database targets)."""
    return type(target).__name__ == "ApiTarget"


def restore(prepared: RestorePlan | ApiRestorePlan, workspace: Workspace) -> int:
    """Carry out a restore under the apply lock (one transaction on a database); return objects written or deleted."""
    from declarative_conns.targets.database.restore import RestorePlan, execute_restore
    from declarative_conns.targets.database.target import DatabaseTarget

    target = workspace.target
    try:
        if isinstance(prepared, RestorePlan):
            assert isinstance(target, DatabaseTarget)
            return execute_restore(prepared, target, workspace.lock_timeout, workspace.state.backups_dir)
        from declarative_conns.targets.api.restore import execute_restore as execute_api

        return execute_api(prepared, target, workspace.lock_timeout, workspace.state.backups_dir)  # type: ignore[arg-type]
    finally:
        target.close()
