"""The `dconn` command line: parse, call the library, render, map errors to exit codes.

One module per command (validate, envs, plan/apply, export/convert, restore, state pull/push)
around `common`, which holds the typer app, the shared options and the terminal output.
"""

from __future__ import annotations

import logging
import sys

import typer

from declarative_conns.cli import envs, onboarding, plan, restore, state, unlock, validate
from declarative_conns.cli.common import app

# In the order `dconn --help` lists them.
for _command in (
    validate.validate,
    envs.envs,
    plan.plan,
    plan.apply,
    onboarding.export,
    onboarding.convert,
    restore.restore,
    unlock.force_unlock,
):
    app.command()(_command)
app.add_typer(state.state_app, name="state")

__all__ = ["app", "main"]


def main() -> None:
    """Run the dconn command line; a usage error is one `Error:` line and exit code 1.

    click prints a usage block and a boxed message, and exits 2 — which means "changes" to
    `plan --detailed-exitcode` users. So dconn runs click without its own error handling.
    """
    # typer re-exports click's BadParameter (recent typer vendors click): find the classes from it.
    usage_error: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    click_exception: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    # Drivers log what they also raise (psycopg: "error ignored terminating <Pipeline>"); dconn
    # reports the error once, as its own Error: line.
    for name in ("psycopg", "pymysql"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    try:
        # prog_name: the usage lines and hints say `dconn`, also under `python -m declarative_conns`.
        code = app(prog_name="dconn", standalone_mode=False)
    except usage_error as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            _show_help(error)
        else:
            sys.stderr.write(f"Error: {_one_line(error)}\n")
        sys.exit(1)
    except click_exception as error:
        sys.stderr.write(f"Error: {_one_line(error)}\n")
        sys.exit(1)
    except typer.Abort:
        sys.stderr.write("Error: aborted; nothing was changed\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(error: Exception) -> str:
    """Return click's message with its suggestion on one line, and where to find the options."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    return f"{message} (see `{context.command_path} --help`)"


def _show_help(error: Exception) -> None:
    """Print the help of `dconn` run without arguments, unless typer already printed it."""
    text = error.format_message()  # type: ignore[attr-defined]
    if text.strip():
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
