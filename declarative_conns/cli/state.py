"""`dconn state pull` and `dconn state push`: read the state, or replace it (file <-> database)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from declarative_conns.cli.common import (
    DbUrlOpt,
    DebugOpt,
    EnvOpt,
    KeyOpt,
    LockOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    StateOpt,
    find_target,
    guarded,
    make_workspace,
    select,
)
from declarative_conns.config.selection import Flags, Selection

if TYPE_CHECKING:
    from declarative_conns.files.store import StateStore
    from declarative_conns.targets.base import Target

state_app = typer.Typer(
    name="state",
    help="Read the state, or replace it: move it between a state file and the target database.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _store(selection: Selection) -> tuple[StateStore, Target]:
    """Return the store `--state` names and the target (a database store reads through its connection)."""
    target = find_target(selection)
    return make_workspace(target, selection).state, target


@state_app.command("pull")
def pull(
    ctx: typer.Context,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "-o", "--out", help="Write the state to this file instead of stdout.", show_default=False
        ),
    ] = None,
    state: StateOpt = None,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    lock_timeout: LockOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print the state document (from the state file, or from the database with --state db:).

    It holds no secret (keyed digests only). Exit codes: 0 printed, 1 error or no state yet.
    """
    output = Output(quiet)
    with guarded(debug):
        from declarative_conns.files.atomic import atomic_write
        from declarative_conns.files.state import StateFile, state_text
        from declarative_conns.files.store import parse_state_location
        from declarative_conns.files.transfer import pull_state

        selection = select(
            ctx, project, env, Flags(None, db_url, fernet_key, state, None, lock_timeout), output
        )
        location = parse_state_location(selection.state)
        if location.path is not None:
            store: StateStore = StateFile(location.path)  # a file needs no target
            target = None
        else:
            store, target = _store(selection)
        try:
            found = pull_state(store)
            if store.load_pending() is not None:
                output.warn(
                    f"an apply's state beside {store.describe()} is not settled yet: dconn plan settles it"
                )
        finally:
            if target is not None:
                target.close()
        text = state_text(found)
        if out is None:
            sys.stdout.write(text)
            return
        atomic_write(out, text.encode("utf-8"))
        output.info(
            f"Wrote the state of {store.describe()} (lineage {found.lineage}, serial {found.serial}) to {out}"
        )


@state_app.command("push")
def push(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A state document: a state file, or what `dconn state pull` wrote.")
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a state of another lineage, or a newer serial of this one."),
    ] = False,
    state: StateOpt = None,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    lock_timeout: LockOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Replace the state (the state file, or the database's with --state db:) with FILE.

    Refused when FILE was recorded for another target; without --force, when the state there has
    another lineage or a newer serial. Exit codes: 0 pushed, 1 error (nothing written).
    """
    output = Output(quiet)
    with guarded(debug):
        from declarative_conns.files.transfer import push_state, read_state_file

        selection = select(
            ctx, project, env, Flags(None, db_url, fernet_key, state, None, lock_timeout), output
        )
        pushed = read_state_file(file)
        store, target = _store(selection)
        try:
            written = push_state(store, pushed, target.identity, force=force)
        finally:
            target.close()
        output.info(
            f"Pushed {file} to {store.describe()} (lineage {written.lineage}, serial {written.serial})."
        )
