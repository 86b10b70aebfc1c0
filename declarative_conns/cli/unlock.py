"""`dconn force-unlock`: remove the apply lock a killed run left on a REST API target."""

from __future__ import annotations

from typing import Annotated

import typer

from declarative_conns.cli.common import (
    ApiTimeoutOpt,
    ApiUrlOpt,
    DebugOpt,
    EnvOpt,
    NoColorOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    approve,
    find_target,
    guarded,
    select,
)
from declarative_conns.config.selection import Flags
from declarative_conns.errors import InputError


def force_unlock(
    ctx: typer.Context,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Remove the lock without asking.")
    ] = False,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Remove the apply lock a killed dconn run left on a REST API target, after saying whose it was.

    A database's lock ends with the session that holds it: there is nothing to remove there.
    Exit codes: 0 removed (or no lock), 1 error.
    """
    output = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.targets.api.target import ApiTarget, describe_holder

        selection = select(ctx, project, env, Flags(api_url=api_url, api_timeout=api_timeout), output)
        target = find_target(selection)
        if not isinstance(target, ApiTarget):
            target.close()
            raise InputError(
                "force-unlock removes the lock of a REST API target (--api-url or DCONN_API_URL); a database's "
                "lock ends with the session that holds it"
            )
        try:
            target.open()
            holder = target.lock_holder()
            if holder is None:
                output.report(f"No dconn lock is held on {target.display}.\n")
                return
            output.report(f"The dconn apply lock on {target.display} is held by {describe_holder(holder)}.\n")
            if not auto_approve:
                approve("force-unlock")
            target.release_lock()
            output.report("Lock removed.\n")
        finally:
            target.close()
