"""`dconn validate`: check the TOML without a target."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from declarative_conns.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    DebugOpt,
    NoColorOpt,
    Output,
    QuietOpt,
    StrictOpt,
    count,
    guarded,
    report_findings,
)

if TYPE_CHECKING:
    from declarative_conns.config.validation import Validation


def validate(
    config: ConfigOpt = DEFAULT_CONFIG,
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

    Exit codes: 0 valid, 1 invalid.
    """
    out = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.config.validation import validate_config
        from declarative_conns.errors import InputError

        if fmt not in ("text", "json"):
            raise InputError(f"--format must be text or json, not {fmt!r}")
        validation = validate_config(config, strict)
        if fmt == "json":
            out.report(_json_report(validation))
            if not validation.valid:
                raise typer.Exit(1)
            return
        for warning in validation.desired.warnings:
            out.warn(warning)
        report_findings(validation.findings, out)
        desired = validation.desired_or_raise()
        files = count(len(desired.files), "file")
        out.report(f"Valid: {count(len(desired.connections), 'connection')} in {files}.\n")


def _json_report(validation: Validation) -> str:
    """Return `{"problems": [...], "valid": bool}` (CONTRACT §13) as one JSON document."""
    problems = [finding.to_json() for finding in validation.report()]
    return json.dumps({"problems": problems, "valid": validation.valid}, indent=2, ensure_ascii=False) + "\n"
