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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from declarative_conns.config.conn_types import check_connection, load_type_rules
from declarative_conns.config.findings import Finding, dotted_path, is_within
from declarative_conns.config.loader import DesiredState
from declarative_conns.core.kinds import canonical_conn_type
from declarative_conns.errors import ValidationFailed

__all__ = ["Finding", "check_types", "raise_for_errors"]


def check_types(
    desired: DesiredState, strict: bool = False, *, known: Sequence[Finding] = ()
) -> list[Finding]:
    """Return the findings of every connection, in declaration order.

    With `strict` (or `strict = true` in `[settings]`) warnings are errors; notes stay notes.
    A `type_rules` file named in `[settings]` adds or replaces types (InputError if it is bad).
    `known` are problems the document already has: a finding at, inside or around a field one
    of them names is left out, so nothing is reported twice.
    """
    strict = strict or desired.settings.strict
    user_rules = desired.settings.type_rules
    if not desired.connections and not user_rules:
        return []  # nothing to check: the conn_type rules are not even compiled
    rules = load_type_rules(Path(user_rules) if user_rules else None)
    findings = []
    for conn_id, conn in desired.connections.items():
        found = check_connection(rules, conn_id, _as_stored(conn.fields), strict=strict, file=conn.source)
        if found and known:
            found = _not_known(found, conn_id, conn.source, known)
        findings.extend(found)
    return findings


def _not_known(found: list[Finding], conn_id: str, source: Path, known: Sequence[Finding]) -> list[Finding]:
    """Drop findings on a field (or inside it) that a known problem of the document names."""
    inside = dotted_path(["connections", conn_id]) + "."
    # Problems of the connection as a whole (an unknown field) do not hide its other findings.
    fields = [k.path for k in known if k.file == source and k.path.startswith(inside)]
    return [
        f for f in found if not any(is_within(f.path, path) or is_within(path, f.path) for path in fields)
    ]


def _as_stored(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the fields with conn_type as Airflow stores it ('postgresql' is 'postgres')."""
    conn_type = fields.get("conn_type")
    canonical = canonical_conn_type(conn_type) if isinstance(conn_type, str) else conn_type
    return fields if canonical == conn_type else {**fields, "conn_type": canonical}


def raise_for_errors(findings: list[Finding]) -> None:
    """Raise ValidationFailed listing every error finding, if there is one."""
    if any(f.severity == "error" for f in findings):
        raise ValidationFailed(findings)
