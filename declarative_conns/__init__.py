"""dconn: manage Apache Airflow connections declaratively, Terraform-style.

The library API (the CLI is a thin layer on it): `load`, `plan`, `apply`, `Workspace`,
`resolve_target` and the `DconnError` hierarchy. Heavy modules load on first use.
Reference: docs/api.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ApplyRefused",
    "DatabaseError",
    "DconnError",
    "DecryptionError",
    "DesiredConnection",
    "DesiredState",
    "Finding",
    "InputError",
    "Plan",
    "PlanIsStale",
    "PlannedRun",
    "SecretError",
    "SecretRef",
    "StateError",
    "Target",
    "TargetError",
    "ValidationFailed",
    "Workspace",
    "__version__",
    "apply",
    "check_types",
    "desired_from_dicts",
    "load",
    "plan",
    "resolve_target",
]

#: The error classes, each a DconnError (docs/api.md lists the hierarchy).
_ERRORS = (
    "ApplyRefused",
    "DatabaseError",
    "DconnError",
    "DecryptionError",
    "InputError",
    "PlanIsStale",
    "SecretError",
    "StateError",
    "TargetError",
    "ValidationFailed",
)

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun, Workspace, apply, load, plan
    from declarative_conns.config.loader import DesiredConnection, DesiredState, desired_from_dicts
    from declarative_conns.config.typecheck import Finding, check_types
    from declarative_conns.core.model import Plan, SecretRef
    from declarative_conns.errors import (
        ApplyRefused,
        DatabaseError,
        DconnError,
        DecryptionError,
        InputError,
        PlanIsStale,
        SecretError,
        StateError,
        TargetError,
        ValidationFailed,
    )
    from declarative_conns.targets.discovery import Target, resolve_target


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `dconn --version` stays fast."""
    if name in ("PlannedRun", "Workspace", "apply", "load", "plan"):
        from declarative_conns import api

        return getattr(api, name)
    if name == "DconnError":
        from declarative_conns.errors import DconnError

        return DconnError
    if name == "resolve_target":
        from declarative_conns.targets.discovery import resolve_target

        return resolve_target
    if name in _ERRORS:
        from declarative_conns import errors

        return getattr(errors, name)
    if name in ("DesiredConnection", "DesiredState", "desired_from_dicts"):
        from declarative_conns.config import loader as desired

        return getattr(desired, name)
    if name in ("Plan", "SecretRef"):
        from declarative_conns.core import model

        return getattr(model, name)
    if name == "Target":
        from declarative_conns.targets.discovery import Target

        return Target
    if name in ("Finding", "check_types"):
        from declarative_conns.config import typecheck

        return getattr(typecheck, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the public API for completion, though most of it is not imported yet."""
    return sorted(set(globals()) | set(__all__))
