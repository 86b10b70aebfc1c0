"""`dconn validate`: check the TOML without a target (one environment's, or every environment's)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from declarative_conns.cli.common import (
    ConfigOpt,
    DebugOpt,
    EnvOpt,
    NoColorOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    StrictOpt,
    count,
    guarded,
    project_option,
    report_findings,
    select,
)
from declarative_conns.config.selection import Flags, Selection

if TYPE_CHECKING:
    from declarative_conns.config.validation import Validation


def validate(
    ctx: typer.Context,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    all_envs: Annotated[
        bool,
        typer.Option(
            "--all-envs", help="Check every environment of dconn.toml: its layers, vars and exclude."
        ),
    ] = False,
    project: ProjectOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="Output: text, or json (every problem with file, path, message, severity)."
        ),
    ] = "text",
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check the TOML files against the schema and each conn_type's rules; no database, no secrets.

    Exit codes: 0 valid, 1 invalid (with --all-envs: any environment invalid).
    """
    out = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.errors import InputError

        if fmt not in ("text", "json"):
            raise InputError(f"--format must be text or json, not {fmt!r}")
        if all_envs:
            checked = _all_envs(ctx, project, env, config, strict, out)
        else:
            selection = select(ctx, project, env, Flags(config), out)
            checked = [(selection.label, selection.validate(strict))]
        if fmt == "json":
            out.report(_json_report(checked))
            if not all(validation.valid for _, validation in checked):
                raise typer.Exit(1)
            return
        failed = [_text_report(label, validation, out) for label, validation in checked]
        if len(failed) == 1 and failed[0] is not None:
            raise failed[0]
        if any(failed):
            for error in failed:
                if error is not None:
                    out.error(str(error))
            raise typer.Exit(1)


def _all_envs(
    ctx: typer.Context, project: Any, env: str | None, config: Any, strict: bool, out: Output
) -> list[tuple[str, Validation]]:
    """Check every environment of the project; return (label, validation) of each, in file order."""
    from declarative_conns.config.project import load_project
    from declarative_conns.errors import InputError, ValidationFailed

    if env:
        raise InputError("--all-envs checks every environment: leave out --env")
    if config is not None:
        raise InputError("--all-envs checks each environment's own layers: leave out -c/--config")
    loaded = load_project(project_option(ctx, project))
    for warning in loaded.warnings:
        out.warn(warning)
    checked = []
    for environment in loaded.environments.values():
        selection = Selection(environment)
        try:
            validation = selection.validate(strict)
        except ValidationFailed:
            raise
        except InputError as error:  # a missing layer, a bad TOML file: this environment's problem
            validation = unreadable(selection, error)
        checked.append((selection.label, validation))
    return checked


def unreadable(selection: Selection, error: Exception) -> Validation:
    """Return the validation of an environment whose layers cannot be read: one error finding."""
    from declarative_conns.config.findings import Finding
    from declarative_conns.config.loader import DesiredState
    from declarative_conns.config.validation import Validation
    from declarative_conns.core.model import Settings

    env = selection.environment
    assert env is not None
    message = str(error).removeprefix(f"{selection.label}: ")
    finding = Finding(env.project, f"environments.{env.name}.config", message)
    return Validation(DesiredState({}, Settings(), ()), (finding,))


def _text_report(label: str, validation: Validation, out: Output) -> Exception | None:
    """Print one validation's warnings and its `Valid:` line; return the error when it is invalid."""
    from declarative_conns.errors import ValidationFailed

    where = f"{label}: " if label else ""
    for warning in validation.desired.warnings:
        out.warn(f"{where}{warning}" if where and not warning.startswith(where) else warning)
    report_findings(validation.findings, out)
    try:
        desired = validation.desired_or_raise()
    except ValidationFailed as error:
        if label:
            error.args = (f"{label}: {error}",)
        return error
    files = count(len(desired.files), "file")
    counts = [count(len(desired.of_kind(kind)), kind) for kind in desired.kinds]
    declared = counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]
    out.report(f"Valid: {where}{declared} in {files}.\n")
    return None


def _json_report(checked: list[tuple[str, Validation]]) -> str:
    """Return `{"problems": [...], "valid": bool}` (CONTRACT §13) as one JSON document.

    With environments, each problem names its `environment`, and `environments` lists each one
    with its own validity.
    """
    problems: list[dict[str, Any]] = []
    environments = []
    for label, validation in checked:
        name = label.partition('"')[2].rstrip('"') if label else None
        for finding in validation.report():
            problems.append({**finding.to_json(), **({"environment": name} if name else {})})
        if name:
            environments.append({"name": name, "valid": validation.valid})
    document: dict[str, Any] = {"problems": problems, "valid": all(v.valid for _, v in checked)}
    if environments:
        document["environments"] = environments
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
