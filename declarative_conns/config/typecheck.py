"""Check every declared connection against the rules of its conn_type.

    from declarative_conns.api import load
    from declarative_conns.config.typecheck import check_types, raise_for_errors
    desired = load("connections.toml")
    findings = check_types(desired)                 # strict: as [settings] says, or pass True
    for finding in findings:
        print(finding.severity, finding)            # "file: connections.x.extra.y: message"
    raise_for_errors(findings)                      # ValidationFailed when any is an error

Runs on a loaded (schema-valid) DesiredState, so what the document schema reports (a port
given as text, a missing conn_type) is never reported twice. Secrets are not resolved: a
reference counts as text. Findings name files, paths and expected types, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from declarative_conns.config.conn_types import Severity, check_connection, load_type_rules
from declarative_conns.config.loader import DesiredState
from declarative_conns.core.kinds import canonical_conn_type
from declarative_conns.errors import ValidationFailed


@dataclass(frozen=True)
class Finding:
    """One problem found in a declared connection: its file, its path, what, and how serious."""

    file: Path
    path: str
    message: str
    severity: Severity

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


def check_types(desired: DesiredState, strict: bool = False) -> list[Finding]:
    """Return the findings of every connection, in declaration order.

    With `strict` (or `strict = true` in `[settings]`) warnings are errors; notes stay notes.
    A `type_rules` file named in `[settings]` adds or replaces types (InputError if it is bad).
    """
    strict = strict or desired.settings.strict
    user_rules = desired.settings.type_rules
    rules = load_type_rules(Path(user_rules) if user_rules else None)
    return [
        Finding(conn.source, found.path, found.message, found.severity)
        for conn_id, conn in desired.connections.items()
        for found in check_connection(rules, conn_id, _as_stored(conn.fields), strict=strict)
    ]


def _as_stored(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the fields with conn_type as Airflow stores it ('postgresql' is 'postgres')."""
    conn_type = fields.get("conn_type")
    canonical = canonical_conn_type(conn_type) if isinstance(conn_type, str) else conn_type
    return fields if canonical == conn_type else {**fields, "conn_type": canonical}


def raise_for_errors(findings: list[Finding]) -> None:
    """Raise ValidationFailed listing every error finding, if there is one."""
    errors = [str(f) for f in findings if f.severity == "error"]
    if errors:
        raise ValidationFailed(errors)
