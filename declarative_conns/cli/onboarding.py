"""`dconn export` and `dconn convert`: documents from a database or from Airflow's own files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from declarative_conns.onboarding.export import Onboarded

from declarative_conns.cli.common import (
    ApiTimeoutOpt,
    ApiUrlOpt,
    DbTimeoutOpt,
    DbUrlOpt,
    DebugOpt,
    DocumentOutOpt,
    EnvExampleOpt,
    EnvOpt,
    IncludeSecretsOpt,
    KeyOpt,
    NoColorOpt,
    NoCommandsOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    find_target,
    guarded,
    refusing_commands,
    select,
)
from declarative_conns.config.selection import Flags


def _deliver_document(
    result: Onboarded,
    output: Output,
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
        output.info(f"{verb} from {result.source}: {result.listed()}")


def parse_kinds(text: str) -> list[str]:
    """Return the kinds a `--kinds connections,variables,pools` option names; an unknown one is an error."""
    from declarative_conns.core.kinds import kind_named
    from declarative_conns.errors import InputError

    names = [part.strip() for part in text.split(",") if part.strip()]
    chosen = []
    for name in names:
        try:
            chosen.append(kind_named(name.lower()).name)
        except KeyError:
            raise InputError(
                f"--kinds: unknown kind {name!r}; use connections, variables and pools, comma-separated"
            ) from None
    if not chosen:
        raise InputError("--kinds: name at least one of connections, variables, pools")
    return chosen


def export(
    ctx: typer.Context,
    out: DocumentOutOpt = None,
    kinds: Annotated[
        Optional[str],
        typer.Option(
            "--kinds",
            help="The kinds to export, comma-separated: connections, variables, pools "
            "(default: every kind the database has).",
            show_default=False,
        ),
    ] = None,
    include_secrets: IncludeSecretsOpt = False,
    env_example: EnvExampleOpt = None,
    no_commands: NoCommandsOpt = False,
    env: EnvOpt = None,
    project: ProjectOpt = None,
    db_url: DbUrlOpt = None,
    fernet_key: KeyOpt = None,
    db_timeout: DbTimeoutOpt = None,
    api_url: ApiUrlOpt = None,
    api_timeout: ApiTimeoutOpt = None,
    quiet: QuietOpt = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="List the exported conn_ids on stderr.")
    ] = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write every connection, variable and pool of the database (or REST API) as a dconn TOML document, secrets as references.

    Sensitive values (passwords, secret extra keys, variables with a sensitive key) become
    { from_env = ... } placeholders. The document goes to stdout (or -o FILE); the environment
    variables to set and any warnings to stderr. Exit codes: 0 written, 1 error.
    """
    output = Output(quiet, no_color)
    # Export resolves no secret reference today; the flag is accepted so that one CI setting
    # (DCONN_NO_COMMANDS=1, or --no-commands on every command) holds for every command.
    with guarded(debug), refusing_commands(no_commands):
        from declarative_conns.onboarding.export import export_document, refuse_secrets_on_terminal

        refuse_secrets_on_terminal(out, include_secrets, sys.stdout)
        selection = select(
            ctx,
            project,
            env,
            Flags(None, db_url, fernet_key, None, db_timeout, api_url=api_url, api_timeout=api_timeout),
            output,
        )
        result = export_document(
            find_target(selection),
            include_secrets=include_secrets,
            kinds=None if kinds is None else parse_kinds(kinds),
        )
        _deliver_document(result, output, out, env_example, verbose=verbose, verb="Exported")


def convert(
    file: Annotated[
        Optional[Path],
        typer.Argument(
            help="A file written by `airflow connections export` (.json, .yaml/.yml or .env), "
            "`airflow variables export` or `airflow pools export` (.json).",
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
    kind: Annotated[
        Optional[str],
        typer.Option(
            "--kind",
            help="What FILE holds: connections, variables (`airflow variables export`) or pools "
            "(`airflow pools export`). Default: pools when every entry has slots and a description, "
            "else connections.",
            show_default=False,
        ),
    ] = None,
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
    """Turn Airflow's own export files (connections, variables, pools) or AIRFLOW_CONN_* variables into a dconn TOML document.

    Same secret rules as export; no database is read. Exit codes: 0 written, 1 error.
    """
    output = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.errors import InputError
        from declarative_conns.onboarding.export import (
            convert_environment,
            convert_file,
            refuse_secrets_on_terminal,
        )

        kinds = None if kind is None else parse_kinds(kind)
        if kinds is not None and (len(kinds) != 1 or from_env):
            raise InputError("--kind: name one of connections, variables, pools (not with --from-env)")
        if file is None and not from_env:
            raise InputError("give a FILE written by `airflow connections export`, or --from-env")
        refuse_secrets_on_terminal(out, include_secrets, sys.stdout)
        if from_env:
            result = convert_environment(os.environ, file=file, include_secrets=include_secrets)
        else:
            assert file is not None
            result = convert_file(file, include_secrets=include_secrets, kind=kinds[0] if kinds else None)
        _deliver_document(result, output, out, env_example, verbose=verbose, verb="Converted")
