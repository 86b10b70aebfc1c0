"""`dconn plan --all-envs`: plan every environment of dconn.toml in turn, one section each.

Each environment has its own target, key and state; one that fails (a database down, a secret
missing) is reported with its error and the others are still planned.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from declarative_conns.cli.common import (
    Output,
    find_target,
    guarded,
    make_workspace,
    project_option,
    refusing_commands,
)
from declarative_conns.config.selection import Flags
from declarative_conns.errors import DconnError, InputError

#: Flags that name one environment's own target, key, state or layers: meaningless for all of them.
_PER_ENVIRONMENT = {
    "config": "-c/--config",
    "db_url": "--db-url",
    "fernet_key": "--fernet-key",
    "state": "--state",
}


class _Labelled(Output):
    """Write warnings and notes of one environment, each naming the environment."""

    def __init__(self, output: Output, label: str) -> None:
        super().__init__(output.quiet, not output.color)
        self.label = label

    def warn(self, message: str) -> None:
        super().warn(message if message.startswith(self.label) else f"{self.label}: {message}")

    def note(self, message: str) -> None:
        super().note(f"{self.label}: {message}")


def plan_all(
    ctx: typer.Context,
    project: Path | None,
    env: str | None,
    flags: Flags,
    output: Output,
    *,
    fmt: str,
    out: Path | None,
    strict: bool,
    verbose: bool,
    rotate: bool,
    read_only: bool,
    no_commands: bool,
    debug: bool,
) -> int:
    """Plan every environment, print all sections; return the --detailed-exitcode code (0, 1, 2)."""
    from declarative_conns.cli.plan import _check_format, _plan
    from declarative_conns.config.project import load_project
    from declarative_conns.config.selection import Selection
    from declarative_conns.output.environments import EnvironmentPlan, exit_code, render

    with guarded(debug):
        _check_format(fmt)
        if env:
            raise InputError("--all-envs plans every environment: leave out --env")
        given = [flag for name, flag in _PER_ENVIRONMENT.items() if getattr(flags, name) is not None]
        if given:
            raise InputError(
                f"--all-envs takes each environment's own values from dconn.toml: leave out {', '.join(given)}"
            )
        if out is not None:
            raise InputError("--out saves one environment's plan: run dconn plan --env NAME --out FILE")
        loaded = load_project(project_option(ctx, project))
        for warning in loaded.warnings:
            output.warn(warning)
    results = []
    for environment in loaded.environments.values():
        selection = Selection(
            environment, Flags(db_timeout=flags.db_timeout, lock_timeout=flags.lock_timeout)
        )
        labelled = _Labelled(output, selection.label)
        target = environment.describe_target()
        try:
            with refusing_commands(no_commands):
                run = _plan(
                    selection,
                    make_workspace(find_target(selection), selection, read_only=read_only),
                    labelled,
                    strict=strict,
                    verbose=verbose,
                    rotate=rotate,
                    refresh=True,
                )
            run.close()
            results.append(EnvironmentPlan(environment.name, target, run.plan, run.context))
        except DconnError as error:
            if debug:
                import traceback

                traceback.print_exception(type(error), error, error.__traceback__)
            output.error(f"{selection.label}: {error}")
            results.append(EnvironmentPlan(environment.name, target, error=str(error)))
        except KeyboardInterrupt:
            sys.stderr.write("Error: interrupted; nothing was changed\n")
            raise typer.Exit(1) from None
    output.report(render(results, fmt))
    return exit_code(results)
