"""Plan from TOML files as `dconn plan` and `dconn apply` do, using a second CPU when it pays.

A large configuration is loaded in a forked child (background.py) while this process imports
the library and reads and decrypts the rows; the child then type-checks it while this process
computes the plan. A small one is loaded and checked first, in this process. Either way:

- the configuration's problems (TOML, schema, conn_type errors) are reported before any other,
  a database or state error included;
- conn_type findings are reported once, before the state file is written, and their errors stop
  the run before anything is written;
- the output is the same, warning for warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import PlannedRun, Workspace
    from .desired import DesiredState
    from .typecheck import Finding


def plan_files(
    config: Path,
    make_workspace: Callable[[], Workspace],
    *,
    strict: bool,
    report_types: Callable[[list[Finding]], None],
    verbose: bool = False,
    rotate: bool = False,
    refresh_state: bool = True,
) -> PlannedRun:
    """Load, type-check and plan the configuration at `config` against the workspace's database.

    `report_types` receives the conn_type findings and raises to stop the run (on errors).
    `make_workspace` is called once the child, if any, has started: importing the library
    (SQLAlchemy) then overlaps with the child's parsing.
    """
    from .background import Pending, start

    reported = False

    def check_types() -> None:
        nonlocal reported
        if not reported:
            reported = True
            report_types(pending.then_result())

    pending: Pending[DesiredState, list[Finding]]
    with start(
        lambda: _load(config), [config], then=lambda desired: _type_findings(desired, strict)
    ) as pending:
        if not pending.in_background:
            check_types()
        from .api import plan

        workspace = make_workspace()
        failed: Exception | None = None
        try:
            run = plan(
                pending.result if pending.in_background else pending.result(),
                workspace,
                verbose=verbose,
                rotate=rotate,
                refresh_state=refresh_state,
                check=check_types,
            )
        except Exception as error:
            failed = error
        if failed is not None:
            if pending.has_result:
                check_types()  # the configuration's problems first (outside `except`: unchained)
            raise failed
    return run


def _load(config: Path) -> DesiredState:
    """Load the TOML files (not through api: a child process loading them needs no SQLAlchemy)."""
    from .desired import load_desired

    return load_desired(config)


def _type_findings(desired: DesiredState, strict: bool) -> list[Finding]:
    """Check each connection against its conn_type's rules."""
    from .typecheck import check_types

    return check_types(desired, strict)
