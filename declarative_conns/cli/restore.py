"""`dconn restore`: put rows back as an apply's backup recorded them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from declarative_conns.cli.common import (
    DEFAULT_DB_TIMEOUT,
    DEFAULT_STATE,
    BackupsOpt,
    DbTimeoutOpt,
    DbUrlOpt,
    DebugOpt,
    KeyOpt,
    LockOpt,
    NoColorOpt,
    Output,
    QuietOpt,
    StateOpt,
    approve,
    count,
    find_target,
    guarded,
    make_workspace,
)


def restore(
    backup: Annotated[Path, typer.Argument(help="A backup file from backups/ beside the state file.")],
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Restore without asking.")] = False,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    backups: BackupsOpt = None,
    lock_timeout: LockOpt = 30.0,
    db_timeout: DbTimeoutOpt = DEFAULT_DB_TIMEOUT,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Put rows back as an apply's backup recorded them (the undo of an apply); one transaction.

    Rows the restore overwrites are backed up first. Exit codes: 0 restored, 1 error (nothing changed).
    """
    output = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.restoring import plan_restore
        from declarative_conns.restoring import restore as carry_out

        workspace = make_workspace(
            find_target(db_url, fernet_key, lock_timeout, db_timeout), state, lock_timeout, backups=backups
        )
        prepared = plan_restore(backup, workspace)
        try:
            output.report(prepared.describe())
            if not auto_approve:
                approve("restore")
        except BaseException:
            workspace.target.close()
            raise
        written = carry_out(prepared, workspace)
        output.report(
            f"Restore complete: {count(written, 'row')} written. Run dconn plan to see them against the TOML.\n"
        )
