"""`dconn restore`: put rows back as an apply's backup recorded them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from declarative_conns.cli.common import (
    DEFAULT_API_TIMEOUT,
    DEFAULT_DB_TIMEOUT,
    DEFAULT_STATE,
    ApiTimeoutOpt,
    ApiUrlOpt,
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
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = DEFAULT_API_TIMEOUT,
    state: StateOpt = DEFAULT_STATE,
    backups: BackupsOpt = None,
    lock_timeout: LockOpt = 30.0,
    db_timeout: DbTimeoutOpt = DEFAULT_DB_TIMEOUT,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Put rows back as an apply's backup recorded them (the undo of an apply); one transaction.

    Through a REST API: object by object, non-secret fields only (the API never showed secrets).

    Rows the restore overwrites are backed up first. Exit codes: 0 restored, 1 error (nothing changed).
    """
    output = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.restoring import plan_restore
        from declarative_conns.restoring import restore as carry_out

        workspace = make_workspace(
            find_target(db_url, fernet_key, lock_timeout, db_timeout, api_url, api_timeout),
            state,
            lock_timeout,
            backups=backups,
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
        noun = "row" if workspace.target.capabilities.transactional else "object"
        output.report(
            f"Restore complete: {count(written, noun)} written. Run dconn plan to see them against the TOML.\n"
        )
