"""What every dconn command shares: the typer app, its options, output to the terminal, errors.

The cli package is the only one that imports typer and rich. stdout carries the plan or report
only; warnings, errors and progress go to stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from declarative_conns import __version__
from declarative_conns.config.selection import (
    DEFAULT_DB_TIMEOUT,  # noqa: F401 (tests import it from here)
    Flags,
    Selection,
)
from declarative_conns.errors import ApplyRefused, DconnError, InputError

if TYPE_CHECKING:
    from declarative_conns.config.findings import Finding
    from declarative_conns.config.loader import DesiredState
    from declarative_conns.targets.api.settings import ApiSettings
    from declarative_conns.targets.base import Target
    from declarative_conns.workspace import Workspace


app = typer.Typer(
    name="dconn",
    help="Manage Apache Airflow connections declaratively: TOML in git -> plan -> apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "-c",
        "--config",
        help="A TOML file, or a folder whose *.toml files are read (sorted). Default: the "
        "environment's layers, else connections.toml.",
        show_default=False,
    ),
]
EnvOpt = Annotated[
    Optional[str],
    typer.Option(
        "--env",
        help="The environment of dconn.toml to work on (also: DCONN_ENV); flags given here override its values.",
        show_default=False,
    ),
]
DbUrlOpt = Annotated[
    Optional[str],
    typer.Option(
        "--db-url",
        help="Airflow metadata database URL. Default: as Airflow finds it (env, airflow.cfg).",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    Optional[str],
    typer.Option(
        "--fernet-key",
        help="Fernet key (comma-separated ring). Default: as Airflow finds it.",
        show_default=False,
    ),
]
StateOpt = Annotated[
    Optional[str],
    typer.Option(
        "--state",
        help="State file; or db: / db:NAME to keep the state in the target database (table dconn_state). "
        "Default: the environment's, else .dconn/state.json.",
        show_default=False,
    ),
]
BackupsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--backups",
        help="Folder of the row backups. Default: backups/ beside the state file; .dconn/backups "
        "for a state in the database.",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print no warnings or progress.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="List unmanaged and ignored connections.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="Print without colour (also: NO_COLOR).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors (never secret values).")]
RotateOpt = Annotated[
    bool,
    typer.Option("--rotate", help="Re-encrypt rows under an older key of the ring with the first key."),
]
LockOpt = Annotated[
    Optional[float],
    typer.Option(
        "--lock-timeout",
        help="Seconds to wait for another apply's lock. Default: the environment's, else 30.",
        show_default=False,
    ),
]
DbTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--db-timeout",
        help="Seconds any database statement may wait for an answer before dconn gives up "
        "(the apply lock's wait, --lock-timeout, comes on top). Default: the environment's, else 60.",
        show_default=False,
    ),
]
ApiUrlOpt = Annotated[
    Optional[str],
    typer.Option(
        "--api-url",
        help="Target Airflow's REST API at this base URL instead of the database (also: DCONN_API_URL); "
        "credentials from DCONN_API_TOKEN, DCONN_API_TOKEN_CMD or DCONN_API_USERNAME/DCONN_API_PASSWORD.",
        show_default=False,
    ),
]
ApiTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--api-timeout",
        help="Seconds any REST API request may take before dconn gives up. Default: the environment's, else 30.",
        show_default=False,
    ),
]
ResendSecretsOpt = Annotated[
    bool,
    typer.Option(
        "--resend-secrets",
        help="REST API targets: send every declared secret again (the API never shows secrets, so dconn "
        "otherwise sends only those whose declared value changed since it last sent them).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        # Help texts are rich markup: a bracketed word is a style tag unless escaped.
        help="Fail on conn_type warnings (unknown extras, unused fields); also: strict = true in \\[settings].",
    ),
]
NoCommandsOpt = Annotated[
    bool,
    typer.Option(
        "--no-commands",
        envvar="DCONN_NO_COMMANDS",
        help="Refuse every from_command secret reference before any runs (also: DCONN_NO_COMMANDS=1), "
        "for jobs that run untrusted configurations.",
        show_default=False,
    ),
]

DocumentOutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "-o", "--out", help="Write the document to this file instead of stdout.", show_default=False
    ),
]
IncludeSecretsOpt = Annotated[
    bool,
    typer.Option(
        "--include-secrets",
        help="Write secret values in clear, not as references (-o FILE gets mode 0600; "
        "refused when stdout is a terminal).",
    ),
]
EnvExampleOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--env-example",
        help="Also write the variables the document reads, values empty, to this file.",
        show_default=False,
    ),
]


class Output:
    """Write the report to stdout and messages to stderr, coloured only on a terminal."""

    def __init__(self, quiet: bool = False, no_color: bool = False) -> None:
        self.quiet = quiet
        self.color = not no_color and "NO_COLOR" not in os.environ

    def report(self, text: str) -> None:
        """Print the plan or report on stdout."""
        if self.color and sys.stdout.isatty():
            from rich.console import Console
            from rich.text import Text

            console = Console(highlight=False, soft_wrap=True)
            for line in text.rstrip("\n").split("\n"):
                console.print(Text(line, style=line_style(line)))
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def warn(self, message: str) -> None:
        """Print a warning on stderr unless quiet."""
        if not self.quiet:
            sys.stderr.write(f"Warning: {message}\n")

    def note(self, message: str) -> None:
        """Print a note on stderr unless quiet."""
        if not self.quiet:
            sys.stderr.write(f"Note: {message}\n")

    def error(self, message: str) -> None:
        """Print an error on stderr (even when quiet): `Error: ...`."""
        sys.stderr.write(f"Error: {message}\n")

    def info(self, message: str) -> None:
        """Print a progress message on stderr unless quiet."""
        if not self.quiet:
            sys.stderr.write(f"{message}\n")


def line_style(line: str) -> str:
    """Colour plan lines as Terraform does."""
    stripped = line.lstrip()
    if stripped.startswith("+ "):
        return "green"
    if stripped.startswith("~ "):
        return "yellow"
    if stripped.startswith("- "):
        return "red"
    if stripped.startswith(("Plan:", "No changes.")):
        return "bold"
    return ""


def fail(error: BaseException, debug: bool) -> NoReturn:
    """Print one `Error:` line (the first line of the message leads) and exit 1."""
    if debug:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stderr.write(f"Error: {error}\n")
    raise typer.Exit(1)


def guarded(debug: bool):  # type: ignore[no-untyped-def]
    """Map DconnError (and Ctrl-C) to exit code 1 with one clear line."""

    @contextmanager
    def guard():  # type: ignore[no-untyped-def]
        try:
            yield
        except DconnError as error:
            fail(error, debug)
        except KeyboardInterrupt:
            sys.stderr.write("Error: interrupted; nothing was changed\n")
            raise typer.Exit(1) from None

    return guard()


def _version(value: bool) -> None:
    """Print the version and exit."""
    if value:
        typer.echo(f"dconn {__version__}")
        raise typer.Exit()


ProjectOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--project",
        help="The project file dconn.toml (or its folder) declaring the environments. Default: found "
        "in the current directory or a parent. Works before or after the command.",
        show_default=False,
    ),
]


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    project: ProjectOpt = None,
) -> None:
    """Manage Apache Airflow connections declaratively: TOML in git -> plan -> apply."""
    ctx.obj = {"project": project}


def project_option(ctx: typer.Context, given: Path | None) -> Path | None:
    """Return the --project given after the command, else the one given before it, else None.

    Given on both sides with different files, it is an error rather than a silent choice.
    """
    root = ctx.find_root().obj
    before = root.get("project") if isinstance(root, dict) else None
    if given is not None and before is not None and given != before:
        raise InputError(f"--project is given twice, as {before} and as {given}: give it once")
    return given if given is not None else before


def select(
    ctx: typer.Context, project: Path | None, env: str | None, flags: Flags, output: Output
) -> Selection:
    """Return the environment picked (if any) with the flags over it; print the project's warnings."""
    from declarative_conns.config.selection import select as pick

    selection = pick(project_option(ctx, project), env, flags)
    for warning in selection.warnings:
        output.warn(warning)
    return selection


def load_checked(selection: Selection, strict: bool, output: Output) -> DesiredState:
    """Load the TOML and check each conn_type; print warnings and notes, raise on any error.

    The ValidationFailed lists every error of every file at once: schema, extra_json, conn_type.
    """
    validation = selection.validate(strict)
    for warning in validation.desired.warnings:
        output.warn(warning)
    report_findings(validation.findings, output)
    return validation.desired_or_raise()


def report_findings(findings: Iterable[Finding], output: Output) -> None:
    """Print the warnings and notes among findings on stderr (errors are the caller's to raise)."""
    for finding in findings:
        if finding.severity == "warning":
            output.warn(str(finding))
        elif finding.severity == "note":
            output.note(str(finding))


@contextmanager
def refusing_commands(no_commands: bool) -> Iterator[None]:
    """Refuse every from_command inside the block when --no-commands (or DCONN_NO_COMMANDS) is set."""
    from declarative_conns.config import secrets

    with secrets.refusing_commands(no_commands):
        yield


def find_target(selection: Selection) -> Target:
    """Find the target: flags, then the environment of dconn.toml, then DCONN_*, then Airflow's settings.

    A REST API (--api-url, an environment's api_url, DCONN_API_URL) or a database. A database
    and an API both given explicitly (flags, DCONN_* variables, or one environment) are an
    error; a database inherited from an Airflow host's configuration is ignored for an API.
    """
    api = _api_settings(selection)
    if api is not None:
        from declarative_conns.targets.api import ApiTarget

        return ApiTarget(api)
    from declarative_conns.targets.database.target import DatabaseTarget

    return DatabaseTarget(selection.database(), selection.lock_timeout)


def _api_settings(selection: Selection) -> ApiSettings | None:
    """Return the REST API the selection targets, None for a database."""
    flags, env = selection.flags, selection.environment
    env_db = env is not None and env.db_url is not None
    environ = dict(os.environ)
    if flags.db_url and (flags.api_url or environ.get("DCONN_API_URL")):
        raise InputError(
            "both a database (--db-url) and a REST API (--api-url or DCONN_API_URL) are given: pick one target"
        )
    if flags.db_url or (not flags.api_url and env_db):
        return None
    if selection.api_url is not None:  # the environment's API, its credentials over DCONN_API_*
        environ = {k: v for k, v in environ.items() if not k.startswith(_API_CREDENTIALS)}
        environ.update(selection.api_environ())
    elif not flags.api_url and not environ.get("DCONN_API_URL"):
        return None
    if not flags.api_url and selection.api_url is None and environ.get("DCONN_DB_URL"):
        raise InputError(
            "both a database (DCONN_DB_URL) and a REST API (DCONN_API_URL) are given: unset one of them"
        )
    if flags.fernet_key:
        raise InputError(
            "--fernet-key has no use with a REST API target: Airflow encrypts what the API stores"
        )
    from declarative_conns.targets.api import resolve_api_settings

    timeout = next(
        (t for t in (flags.api_timeout, selection.api_timeout) if t is not None), DEFAULT_API_TIMEOUT
    )
    return resolve_api_settings(flags.api_url, timeout, environ)


#: The variables an environment's own API credentials replace.
_API_CREDENTIALS = ("DCONN_API_URL", "DCONN_API_TOKEN", "DCONN_API_USERNAME", "DCONN_API_PASSWORD")
#: --api-timeout's default; the same as declarative_conns.targets.api.settings' (a light import).
DEFAULT_API_TIMEOUT = 30.0


def make_workspace(
    target: Target,
    selection: Selection,
    *,
    read_only: bool = False,
    backups: Path | None = None,
) -> Workspace:
    """Pair the target with where the state lives (`--state PATH`, or `db:NAME` in the target database)."""
    from declarative_conns.workspace import Workspace

    try:
        return Workspace(target, selection.state, selection.lock_timeout, read_only, backups)
    except BaseException:
        target.close()
        raise


def approve(command: str = "apply") -> None:
    """Ask on the terminal; only `yes` proceeds. `command` names what is asked for in the refusals."""
    if not sys.stdin.isatty():
        alternative = ", or apply a plan saved with `dconn plan --out FILE`" if command == "apply" else ""
        raise ApplyRefused(
            f"no terminal to ask for approval: pass --auto-approve{alternative}; nothing was changed"
        )
    sys.stderr.write(
        "\nDo you want to perform these actions?\n"
        "  dconn will perform the actions described above.\n"
        "  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != "yes":
        raise ApplyRefused(f"{command} cancelled; nothing was changed")


def count(number: int, noun: str) -> str:
    """Return `1 row` / `2 rows`: a count with its noun in the right number."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def refuse_configuration_as_plan(planfile: Path) -> None:
    """Refuse a TOML file or folder given where `dconn apply` takes a saved plan, suggesting -c."""
    from declarative_conns.errors import InputError

    if planfile.is_dir() or planfile.suffix.lower() == ".toml":
        raise InputError(
            f"{planfile} is a configuration, not a plan saved with `dconn plan --out`: "
            f"to plan it and apply, run `dconn apply -c {planfile}`"
        )
