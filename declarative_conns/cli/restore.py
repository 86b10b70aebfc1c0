"""`dconn restore`: put rows back as an apply's backup recorded them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from declarative_conns.cli.common import (
    ApiTimeoutOpt,
    ApiUrlOpt,
    BackupsOpt,
    DbTimeoutOpt,
    DbUrlOpt,
    DebugOpt,
    EnvOpt,
    KeyOpt,
    LockOpt,
    NoColorOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    StateOpt,
    approve,
    count,
    find_target,
    guarded,
    make_workspace,
    select,
)
from declarative_conns.config.selection import Flags


def restore(
    ctx: typer.Context,
    backup: Annotated[Path, typer.Argument(help="A backup file from backups/ beside the state file.")],
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Restore without asking.")] = False,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = None,
    state: StateOpt = None,
    backups: BackupsOpt = None,
    lock_timeout: LockOpt = None,
    db_timeout: DbTimeoutOpt = None,
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

        flags = Flags(None, db_url, fernet_key, state, db_timeout, lock_timeout, api_url, api_timeout)
        selection = select(ctx, project, env, flags, output)
        workspace = make_workspace(find_target(selection), selection, backups=backups)
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
