"""The `dconn` command line: parse, call the library, render, map errors to exit codes.

One module per command (validate, plan/apply, export/convert, restore, state pull/push) around
`common`, which holds the typer app, the shared options and the terminal output.
"""

from __future__ import annotations

import logging

import typer

from declarative_conns.cli import onboarding, plan, restore, state, validate
from declarative_conns.cli.common import app

# In the order `dconn --help` lists them.
for _command in (
    validate.validate,
    plan.plan,
    plan.apply,
    onboarding.export,
    onboarding.convert,
    restore.restore,
):
    app.command()(_command)
app.add_typer(state.state_app, name="state")

__all__ = ["app", "main"]


def main() -> None:
    """Run the dconn command line."""
    # click exits 2 on a usage error; 2 means "changes" to `plan --detailed-exitcode` users, so 1.
    # typer re-exports click's BadParameter (recent typer vendors click), so find UsageError from it.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    setattr(usage_error, "exit_code", 1)  # noqa: B010 - a class attribute of a class found at run time
    # Drivers log what they also raise (psycopg: "error ignored terminating <Pipeline>"); dconn
    # reports the error once, as its own Error: line.
    for name in ("psycopg", "pymysql"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    app()
