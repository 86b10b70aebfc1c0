"""Check a configuration completely, in one report: the documents, then each conn_type's rules.

    validation = validate_config(Path("connections.toml"), strict=False)
    for finding in validation.findings:             # errors, warnings and notes, as data
        print(finding.severity, finding)
    desired = validation.desired_or_raise()         # ValidationFailed listing every error

A connection's conn_type is checked even when the document has problems elsewhere, or in that
connection's other fields, so every problem shows at once; a field the document schema already
faults gets no second finding from the type check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from declarative_conns.config.findings import Finding, errors_of
from declarative_conns.config.loader import DesiredState, ignore_findings, read_desired
from declarative_conns.config.typecheck import check_types
from declarative_conns.core.model import Settings
from declarative_conns.errors import ValidationFailed


@dataclass(frozen=True)
class Validation:
    """Hold what a configuration declares and every finding on it."""

    #: What could be read; not fit to plan when `valid` is false.
    desired: DesiredState
    #: Document problems (in file order), then conn_type findings (in declaration order).
    findings: tuple[Finding, ...]

    @property
    def valid(self) -> bool:
        """Tell whether no finding is an error."""
        return not errors_of(self.findings)

    def desired_or_raise(self) -> DesiredState:
        """Return the desired state; raise ValidationFailed carrying every finding when invalid."""
        if not self.valid:
            raise ValidationFailed(self.findings)
        return self.desired

    def report(self) -> list[Finding]:
        """Return every finding with the ignore-pattern warnings too (what `validate` reports)."""
        declared = self.desired.connections.values()
        return [*self.findings, *ignore_findings(declared, self.desired.settings)]


def validate_config(path: Path, strict: bool = False) -> Validation:
    """Read a configuration and check each connection against its conn_type's rules.

    Raise InputError when the path names nothing or a `type_rules` file is unusable.
    """
    desired, problems = read_desired(path)
    findings = check_types(desired, strict, known=problems)
    return Validation(desired, (*problems, *findings))


def validate_layers(
    layers: Sequence[Path],
    variables: Mapping[str, str | int | float | bool],
    exclude: Sequence[str],
    strict: bool = False,
    *,
    label: str = "",
    skip: Path | None = None,
) -> Validation:
    """Read an environment's layers (vars filled in, exclude applied) and check each connection.

    Problems of the layers themselves are findings of an empty desired state, so that a report
    lists them as it lists a single file's; a missing layer is still a ProjectError.
    """
    from declarative_conns.config.layers import load_layers

    try:
        desired = load_layers(layers, variables, exclude, label=label, skip=skip)
    except ValidationFailed as failed:
        return Validation(DesiredState({}, Settings(), tuple(layers)), failed.findings)
    return Validation(desired, tuple(check_types(desired, strict)))
