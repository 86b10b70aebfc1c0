"""`dconn plan` and `dconn apply`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun
    from declarative_conns.core.model import Address
    from declarative_conns.workspace import Workspace

from declarative_conns.cli.common import (
    ApiTimeoutOpt,
    ApiUrlOpt,
    BackupsOpt,
    ConfigOpt,
    DbTimeoutOpt,
    DbUrlOpt,
    DebugOpt,
    EnvOpt,
    KeyOpt,
    LockOpt,
    NoColorOpt,
    NoCommandsOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    ResendSecretsOpt,
    RotateOpt,
    StateOpt,
    StrictOpt,
    VerboseOpt,
    approve,
    count,
    find_target,
    guarded,
    load_checked,
    make_workspace,
    refuse_configuration_as_plan,
    refusing_commands,
    select,
)
from declarative_conns.config.selection import Flags, Selection

TargetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--target",
        help="Limit the plan (and apply) to this object, KIND.KEY (e.g. connection.warehouse); repeatable. "
        "For emergencies: the plan says it is partial.",
        show_default=False,
    ),
]
AllEnvsOpt = Annotated[
    bool,
    typer.Option(
        "--all-envs",
        help="Work on every environment of dconn.toml in turn, each with its own target, key and state.",
    ),
]


def plan(
    ctx: typer.Context,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    all_envs: AllEnvsOpt = False,
    project: ProjectOpt = None,
    only: TargetOpt = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Save the plan to this file for `dconn apply FILE`.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output: text, json or markdown.")] = "text",
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 when there are no changes, 2 when there are, 1 on error."
        ),
    ] = False,
    strict: StrictOpt = False,
    rotate: RotateOpt = False,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Write nothing: no state, no backup, no lock (pull requests, read-only checkouts).",
        ),
    ] = False,
    no_commands: NoCommandsOpt = False,
    resend_secrets: ResendSecretsOpt = False,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = None,
    state: StateOpt = None,
    lock_timeout: LockOpt = None,
    db_timeout: DbTimeoutOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Snapshot the target into the state, diff it with the TOML and print the plan.

    Exit codes: 0 success; with --detailed-exitcode 0 no changes, 2 changes; 1 error.
    --all-envs plans every environment: 1 if any failed (the others still reported),
    else with --detailed-exitcode 2 if any has changes or drift, else 0.
    """
    output = Output(quiet, no_color)
    flags = Flags(config, db_url, fernet_key, state, db_timeout, lock_timeout, api_url, api_timeout)
    if all_envs:
        from declarative_conns.cli.all_envs import plan_all

        if only:
            with guarded(debug):
                raise _refused(
                    "--target limits one environment's plan: use it with --env NAME, not --all-envs"
                )

        code = plan_all(
            ctx,
            project,
            env,
            flags,
            output,
            fmt=fmt,
            out=out,
            strict=strict,
            verbose=verbose,
            rotate=rotate,
            read_only=read_only,
            no_commands=no_commands,
            debug=debug,
        )
        raise typer.Exit(code if detailed_exitcode or code == 1 else 0)
    with guarded(debug), refusing_commands(no_commands):
        _check_format(fmt)
        selection = select(ctx, project, env, flags, output)
        target = find_target(selection)
        run = _plan(
            selection,
            make_workspace(target, selection, read_only=read_only),
            output,
            strict=strict,
            verbose=verbose,
            rotate=rotate,
            refresh=True,
            resend_secrets=resend_secrets,
            targets=parse_targets(only),
        )
        try:
            output.report(run.render(fmt))
            if out is not None:
                from declarative_conns.saved_plans import save_plan

                save_plan(run, out)
                output.info(f"Saved the plan to {out}; apply it with: dconn apply {out}")
        finally:
            run.close()
    if detailed_exitcode and run.plan.summary.has_changes:
        raise typer.Exit(2)


def parse_targets(given: list[str] | None) -> list[Address] | None:
    """Return the objects `--target KIND.KEY` names (KIND singular or plural); None when not given."""
    if not given:
        return None
    from declarative_conns.core.kinds import BY_NAME, BY_PLURAL
    from declarative_conns.core.model import Address
    from declarative_conns.errors import InputError

    kinds = {**{k: k for k in BY_NAME}, **{p: kind.name for p, kind in BY_PLURAL.items()}}
    targets = []
    for text in given:
        kind, dot, key = text.partition(".")
        if not dot or not key or kind not in kinds:
            raise InputError(
                f"--target {text!r}: write KIND.KEY, e.g. connection.warehouse (kinds: {', '.join(BY_NAME)})"
            )
        targets.append(Address(kinds[kind], key))
    return targets


def _refused(message: str) -> Exception:
    """Return the error for a combination of options that cannot work together."""
    from declarative_conns.errors import InputError

    return InputError(message)


def _check_format(fmt: str) -> None:
    """Refuse an unknown --format."""
    from declarative_conns.errors import InputError

    if fmt not in ("text", "json", "markdown"):
        raise InputError(f"--format must be text, json or markdown, not {fmt!r}")


def _plan(
    selection: Selection,
    workspace: Workspace,
    output: Output,
    *,
    strict: bool,
    verbose: bool,
    rotate: bool,
    refresh: bool,
    resend_secrets: bool = False,
    targets: list[Address] | None = None,
) -> PlannedRun:
    """Load and type-check the TOML, compute the plan against the target, print warnings."""
    from declarative_conns.api import plan

    try:
        desired = load_checked(selection, strict, output)
    except BaseException:
        workspace.target.close()
        raise
    run = plan(
        desired,
        workspace,
        verbose=verbose,
        rotate=rotate,
        refresh_state=refresh,
        targets=targets,
        resend_secrets=resend_secrets,
    )
    for warning in run.warnings:
        output.warn(warning)
    return run


def apply(
    ctx: typer.Context,
    planfile: Annotated[
        Optional[Path], typer.Argument(help="A plan saved with `dconn plan --out`.", show_default=False)
    ] = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    only: TargetOpt = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")] = False,
    strict: StrictOpt = False,
    rotate: RotateOpt = False,
    no_commands: NoCommandsOpt = False,
    resend_secrets: ResendSecretsOpt = False,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = None,
    state: StateOpt = None,
    backups: BackupsOpt = None,
    lock_timeout: LockOpt = None,
    db_timeout: DbTimeoutOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Carry out a saved plan, or plan now, show it and ask; one transaction (REST API: object by object).

    Exit codes: 0 applied or nothing to do, 1 error (nothing changed).
    """
    output = Output(quiet, no_color)
    with guarded(debug), refusing_commands(no_commands):
        if planfile is not None:
            refuse_configuration_as_plan(planfile)
            if only:
                raise _refused(
                    f"--target is for planning: {planfile} applies the objects it was planned for "
                    "(plan with --target to save a partial plan)"
                )
        selection = select(
            ctx,
            project,
            env,
            Flags(config, db_url, fernet_key, state, db_timeout, lock_timeout, api_url, api_timeout),
            output,
        )
        target = find_target(selection)
        if planfile is not None:
            from declarative_conns.saved_plans import load_plan

            run = load_plan(planfile, make_workspace(target, selection, backups=backups))
            for warning in run.warnings:
                output.warn(warning)
        else:
            run = _plan(
                selection,
                make_workspace(target, selection, backups=backups),
                output,
                strict=strict,
                verbose=verbose,
                rotate=rotate,
                refresh=False,
                resend_secrets=resend_secrets,
                targets=parse_targets(only),
            )
        try:
            _apply(run, output, ask=planfile is None and not auto_approve)
        finally:
            run.close()


def _apply(run: PlannedRun, output: Output, *, ask: bool) -> None:
    """Show the plan, get approval, execute it and report."""
    from declarative_conns.api import apply as execute

    output.report(run.render("text"))
    summary = run.plan.summary
    if not summary.has_changes:
        execute(run)
        return
    if ask:
        approve()
    with _progress(output) as progress:
        changed = execute(run, progress)
    output.report(
        f"Apply complete! Resources: {summary.add} added, {summary.change} changed, "
        f"{summary.destroy} destroyed ({count(changed, 'row')}).\n"
    )


@contextmanager
def _progress(output: Output) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a progress callback drawing a bar on a terminal's stderr; None when piped or quiet."""
    if output.quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("Applying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, no_color=not output.color), transient=True) as bar:
        task = bar.add_task("apply", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield show
