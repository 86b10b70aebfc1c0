"""The `dconn` command line: parse, call the library, render, map errors to exit codes.

The only module that imports typer and rich. stdout carries the plan or report only;
warnings, errors and progress go to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from declarative_conns import __version__
from declarative_conns.errors import ApplyRefused, DconnError

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun, Workspace
    from declarative_conns.config.loader import DesiredState
    from declarative_conns.config.typecheck import Finding
    from declarative_conns.onboarding.export import Onboarded
    from declarative_conns.targets.discovery import Target

app = typer.Typer(
    name="dconn",
    help="Manage Apache Airflow connections declaratively: TOML in git -> plan -> apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path,
    typer.Option("-c", "--config", help="A TOML file, or a folder whose *.toml files are read (sorted)."),
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
StateOpt = Annotated[Path, typer.Option("--state", help="State file.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print no warnings or progress.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="List unmanaged and ignored connections.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="Print without colour (also: NO_COLOR).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors (never secret values).")]
RotateOpt = Annotated[
    bool,
    typer.Option("--rotate", help="Re-encrypt rows under an older key of the ring with the first key."),
]
LockOpt = Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for another apply's lock.")]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail on conn_type warnings (unknown extras, unused fields); also: strict = true in [settings].",
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

DEFAULT_CONFIG = Path("connections.toml")
DEFAULT_STATE = Path(".dconn/state.json")


class _Output:
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
                console.print(Text(line, style=_line_style(line)))
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

    def info(self, message: str) -> None:
        """Print a progress message on stderr unless quiet."""
        if not self.quiet:
            sys.stderr.write(f"{message}\n")


def _line_style(line: str) -> str:
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


def _fail(error: BaseException, debug: bool) -> NoReturn:
    """Print one `Error:` line (the first line of the message leads) and exit 1."""
    if debug:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stderr.write(f"Error: {error}\n")
    raise typer.Exit(1)


def _guarded(debug: bool):  # type: ignore[no-untyped-def]
    """Map DconnError (and Ctrl-C) to exit code 1 with one clear line."""
    from contextlib import contextmanager

    @contextmanager
    def guard():  # type: ignore[no-untyped-def]
        try:
            yield
        except DconnError as error:
            _fail(error, debug)
        except KeyboardInterrupt:
            sys.stderr.write("Error: interrupted; nothing was changed\n")
            raise typer.Exit(1) from None

    return guard()


def _version(value: bool) -> None:
    """Print the version and exit."""
    if value:
        typer.echo(f"dconn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Manage Apache Airflow connections declaratively: TOML in git -> plan -> apply."""


@app.command()
def validate(
    config: ConfigOpt = DEFAULT_CONFIG,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check the TOML files against the schema and each conn_type's rules; no database, no secrets.

    Exit codes: 0 valid, 1 invalid.
    """
    out = _Output(quiet, no_color)
    with _guarded(debug):
        from declarative_conns.api import load

        desired = load(config)
        for warning in desired.warnings:
            out.warn(warning)
        _check_types(desired, strict, out)
        files = len(desired.files)
        out.report(
            f"Valid: {len(desired.connections)} connections in {files} file{'s' if files != 1 else ''}.\n"
        )


def _check_types(desired: DesiredState, strict: bool, output: _Output) -> None:
    """Print conn_type warnings and notes on stderr; raise ValidationFailed on errors."""
    from declarative_conns.config.typecheck import check_types

    _report_types(check_types(desired, strict), output)


def _report_types(findings: list[Finding], output: _Output) -> None:
    """Print conn_type warnings and notes on stderr; raise ValidationFailed on errors."""
    from declarative_conns.config.typecheck import raise_for_errors

    for finding in findings:
        if finding.severity == "warning":
            output.warn(str(finding))
        elif finding.severity == "note":
            output.note(str(finding))
    raise_for_errors(findings)


@app.command()
def plan(
    config: ConfigOpt = DEFAULT_CONFIG,
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
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    lock_timeout: LockOpt = 30.0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Snapshot the database into the state file, diff it with the TOML and print the plan.

    Exit codes: 0 success; with --detailed-exitcode 0 no changes, 2 changes; 1 error.
    """
    output = _Output(quiet, no_color)
    with _guarded(debug):
        _check_format(fmt)
        target = _target(db_url, fernet_key)
        run = _plan(
            config,
            _workspace(target, state, lock_timeout),
            output,
            strict=strict,
            verbose=verbose,
            rotate=rotate,
            refresh=True,
        )
        try:
            output.report(run.render(fmt))
            if out is not None:
                from declarative_conns.files.planfile import save_plan

                save_plan(out, run)
                output.info(f"Saved the plan to {out}; apply it with: dconn apply {out}")
        finally:
            run.close()
    if detailed_exitcode and run.plan.summary.has_changes:
        raise typer.Exit(2)


def _check_format(fmt: str) -> None:
    """Refuse an unknown --format."""
    from declarative_conns.errors import InputError

    if fmt not in ("text", "json", "markdown"):
        raise InputError(f"--format must be text, json or markdown, not {fmt!r}")


def _target(db_url: str | None, fernet_key: str | None) -> Target:
    """Find the target database and key: flags, environment, airflow.cfg (a light import)."""
    from declarative_conns.targets.discovery import resolve_target

    return resolve_target(db_url, fernet_key)


def _workspace(target: Target, state: Path, lock_timeout: float) -> Workspace:
    """Pair the target with the state file (imports the library, SQLAlchemy included)."""
    from declarative_conns.api import Workspace

    return Workspace(target, state, lock_timeout)


def _plan(
    config: Path,
    workspace: Workspace,
    output: _Output,
    *,
    strict: bool,
    verbose: bool,
    rotate: bool,
    refresh: bool,
) -> PlannedRun:
    """Load and type-check the TOML, compute the plan against the target, print warnings."""
    from declarative_conns.api import load, plan

    desired = load(config)
    _check_types(desired, strict, output)
    run = plan(desired, workspace, verbose=verbose, rotate=rotate, refresh_state=refresh)
    for warning in run.warnings:
        output.warn(warning)
    return run


@app.command()
def apply(
    planfile: Annotated[
        Optional[Path], typer.Argument(help="A plan saved with `dconn plan --out`.", show_default=False)
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")] = False,
    strict: StrictOpt = False,
    rotate: RotateOpt = False,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    lock_timeout: LockOpt = 30.0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Carry out a saved plan, or plan now, show it and ask; one transaction.

    Exit codes: 0 applied or nothing to do, 1 error (nothing changed).
    """
    output = _Output(quiet, no_color)
    with _guarded(debug):
        target = _target(db_url, fernet_key)
        if planfile is not None:
            from declarative_conns.files.planfile import load_plan

            run = load_plan(planfile, _workspace(target, state, lock_timeout))
            for warning in run.warnings:
                output.warn(warning)
        else:
            run = _plan(
                config,
                _workspace(target, state, lock_timeout),
                output,
                strict=strict,
                verbose=verbose,
                rotate=rotate,
                refresh=False,
            )
        try:
            _apply(run, output, ask=planfile is None and not auto_approve)
        finally:
            run.close()


def _apply(run: PlannedRun, output: _Output, *, ask: bool) -> None:
    """Show the plan, get approval, execute it and report."""
    from declarative_conns.api import apply as execute

    output.report(run.render("text"))
    summary = run.plan.summary
    if not summary.has_changes:
        execute(run)
        return
    if ask:
        _approve()
    with _progress(output) as progress:
        changed = execute(run, progress)
    output.report(
        f"Apply complete! Resources: {summary.add} added, {summary.change} changed, "
        f"{summary.destroy} destroyed ({changed} rows).\n"
    )


def _approve() -> None:
    """Ask on the terminal; only `yes` proceeds."""
    if not sys.stdin.isatty():
        raise ApplyRefused(
            "no terminal to ask for approval: pass --auto-approve, or apply a plan saved with "
            "`dconn plan --out FILE`; nothing was changed"
        )
    sys.stderr.write(
        "\nDo you want to perform these actions?\n"
        "  dconn will perform the actions described above.\n"
        "  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != "yes":
        raise ApplyRefused("apply cancelled; nothing was changed")


@contextmanager
def _progress(output: _Output) -> Iterator[Callable[[int, int], None] | None]:
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


def _deliver_document(
    result: Onboarded,
    output: _Output,
    out: Path | None,
    env_example: Path | None,
    *,
    verbose: bool,
    verb: str,
) -> None:
    """Write an exported or converted document; warnings, variables and (-v) conn_ids to stderr."""
    from declarative_conns.onboarding.export import deliver, secret_warnings, variable_lines

    for warning in [*result.notes, *secret_warnings(result, out, sys.stdout)]:
        output.warn(warning)
    for line in [*deliver(result, out, env_example, sys.stdout), *variable_lines(result)]:
        output.info(line)
    if verbose:
        output.info(f"{verb} from {result.source}: " + (", ".join(result.conn_ids) or "nothing"))


@app.command()
def export(
    out: DocumentOutOpt = None,
    include_secrets: IncludeSecretsOpt = False,
    env_example: EnvExampleOpt = None,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    quiet: QuietOpt = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="List the exported conn_ids on stderr.")
    ] = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write every connection of the database as a dconn TOML document, secrets as references.

    The document goes to stdout (or -o FILE); the variables to set and any warnings to stderr.
    Exit codes: 0 written, 1 error.
    """
    output = _Output(quiet, no_color)
    with _guarded(debug):
        from declarative_conns.onboarding.export import export_document, refuse_secrets_on_terminal
        from declarative_conns.targets.discovery import resolve_target

        refuse_secrets_on_terminal(out, include_secrets, sys.stdout)
        result = export_document(resolve_target(db_url, fernet_key), include_secrets=include_secrets)
        _deliver_document(result, output, out, env_example, verbose=verbose, verb="Exported")


@app.command()
def convert(
    file: Annotated[
        Optional[Path],
        typer.Argument(
            help="A file written by `airflow connections export`: .json, .yaml/.yml or .env.",
            show_default=False,
        ),
    ] = None,
    from_env: Annotated[
        bool,
        typer.Option(
            "--from-env",
            help="Convert AIRFLOW_CONN_* variables: this environment's, or FILE's (NAME=value lines).",
        ),
    ] = False,
    out: DocumentOutOpt = None,
    include_secrets: IncludeSecretsOpt = False,
    env_example: EnvExampleOpt = None,
    quiet: QuietOpt = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="List the converted conn_ids on stderr.")
    ] = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Turn Airflow's own connection files or AIRFLOW_CONN_* variables into a dconn TOML document.

    Same secret rules as export; no database is read. Exit codes: 0 written, 1 error.
    """
    output = _Output(quiet, no_color)
    with _guarded(debug):
        from declarative_conns.errors import InputError
        from declarative_conns.onboarding.export import (
            convert_environment,
            convert_file,
            refuse_secrets_on_terminal,
        )

        if file is None and not from_env:
            raise InputError("give a FILE written by `airflow connections export`, or --from-env")
        refuse_secrets_on_terminal(out, include_secrets, sys.stdout)
        if from_env:
            result = convert_environment(os.environ, file=file, include_secrets=include_secrets)
        else:
            assert file is not None
            result = convert_file(file, include_secrets=include_secrets)
        _deliver_document(result, output, out, env_example, verbose=verbose, verb="Converted")


@app.command()
def restore(
    backup: Annotated[Path, typer.Argument(help="A backup file from backups/ beside the state file.")],
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Restore without asking.")] = False,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    lock_timeout: LockOpt = 30.0,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Put rows back as an apply's backup recorded them (the undo of an apply); one transaction.

    Rows the restore overwrites are backed up first. Exit codes: 0 restored, 1 error (nothing changed).
    """
    output = _Output(quiet, no_color)
    with _guarded(debug):
        from declarative_conns.targets.database.restore import execute_restore, plan_restore

        workspace = _workspace(_target(db_url, fernet_key), state, lock_timeout)
        prepared = plan_restore(backup, workspace.target, lock_timeout)
        try:
            output.report(prepared.describe())
            if not auto_approve:
                _approve()
            written = execute_restore(prepared, state.parent / "backups")
        finally:
            prepared.close()
        output.report(
            f"Restore complete: {written} rows written. Run dconn plan to see them against the TOML.\n"
        )


def main() -> None:
    """Run the dconn command line."""
    # click exits 2 on a usage error; 2 means "changes" to `plan --detailed-exitcode` users, so 1.
    # typer re-exports click's BadParameter (recent typer vendors click), so find UsageError from it.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    setattr(usage_error, "exit_code", 1)  # noqa: B010 - a class attribute of a class found at run time
    app()
