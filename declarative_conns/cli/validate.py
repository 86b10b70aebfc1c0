"""`dconn validate`: check the TOML without a target."""

from __future__ import annotations

from declarative_conns.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    DebugOpt,
    NoColorOpt,
    Output,
    QuietOpt,
    StrictOpt,
    guarded,
    report_findings,
)


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
    out = Output(quiet, no_color)
    with guarded(debug):
        from declarative_conns.config.validation import validate_config

        validation = validate_config(config, strict)
        for warning in validation.desired.warnings:
            out.warn(warning)
        report_findings(validation.findings, out)
        desired = validation.desired_or_raise()
        files = len(desired.files)
        out.report(
            f"Valid: {len(desired.connections)} connections in {files} file{'s' if files != 1 else ''}.\n"
        )
