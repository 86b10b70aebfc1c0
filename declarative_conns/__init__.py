"""dconn: manage Apache Airflow connections, variables and pools declaratively, Terraform-style.

The library API (the CLI is a thin layer on it): `load`, `plan`, `apply`, `save_plan`,
`load_plan`, `Workspace`, `resolve_target` and the `DconnError` hierarchy. Heavy modules load on
first use. Reference: docs/api.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: Where each public name lives; `import declarative_conns` itself imports none of them.
_PUBLIC = {
    "Address": "declarative_conns.core.model",
    "ApplyInterrupted": "declarative_conns.errors",
    "ApplyRefused": "declarative_conns.errors",
    "Create": "declarative_conns.core.operations",
    "DatabaseError": "declarative_conns.errors",
    "DatabaseSettings": "declarative_conns.targets.discovery",
    "DconnError": "declarative_conns.errors",
    "DecryptionError": "declarative_conns.errors",
    "Delete": "declarative_conns.core.operations",
    "DeleteReason": "declarative_conns.core.operations",
    "DesiredConnection": "declarative_conns.config.loader",
    "DesiredObject": "declarative_conns.config.loader",
    "DesiredState": "declarative_conns.config.loader",
    "ApiError": "declarative_conns.targets.api.client",
    "ApplyFailed": "declarative_conns.errors",
    "Drift": "declarative_conns.core.operations",
    "FieldChange": "declarative_conns.core.model",
    "Finding": "declarative_conns.config.typecheck",
    "InputError": "declarative_conns.errors",
    "Plan": "declarative_conns.core.operations",
    "PlanIsStale": "declarative_conns.errors",
    "PlannedRun": "declarative_conns.api",
    "Reencrypt": "declarative_conns.core.operations",
    "SecretError": "declarative_conns.errors",
    "SecretRef": "declarative_conns.core.model",
    "StateError": "declarative_conns.errors",
    "Summary": "declarative_conns.core.operations",
    "Target": "declarative_conns.targets.base",
    "TargetError": "declarative_conns.errors",
    "Update": "declarative_conns.core.operations",
    "ValidationFailed": "declarative_conns.errors",
    "Workspace": "declarative_conns.workspace",
    "apply": "declarative_conns.api",
    "check_types": "declarative_conns.config.typecheck",
    "desired_from_dicts": "declarative_conns.config.loader",
    "load": "declarative_conns.api",
    "load_plan": "declarative_conns.saved_plans",
    "plan": "declarative_conns.api",
    "plan_restore": "declarative_conns.restoring",
    "resolve_target": "declarative_conns.targets.discovery",
    "restore": "declarative_conns.restoring",
    "save_plan": "declarative_conns.saved_plans",
}

__all__ = [
    "Address",
    "ApiError",
    "ApplyFailed",
    "ApplyInterrupted",
    "ApplyRefused",
    "Create",
    "DatabaseError",
    "DatabaseSettings",
    "DconnError",
    "DecryptionError",
    "Delete",
    "DeleteReason",
    "DesiredConnection",
    "DesiredObject",
    "DesiredState",
    "Drift",
    "FieldChange",
    "Finding",
    "InputError",
    "Plan",
    "PlanIsStale",
    "PlannedRun",
    "Reencrypt",
    "SecretError",
    "SecretRef",
    "StateError",
    "Summary",
    "Target",
    "TargetError",
    "Update",
    "ValidationFailed",
    "Workspace",
    "__version__",
    "apply",
    "check_types",
    "desired_from_dicts",
    "load",
    "load_plan",
    "plan",
    "plan_restore",
    "resolve_target",
    "restore",
    "save_plan",
]

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun, apply, load, plan
    from declarative_conns.config.loader import (
        DesiredConnection,
        DesiredObject,
        DesiredState,
        desired_from_dicts,
    )
    from declarative_conns.config.typecheck import Finding, check_types
    from declarative_conns.core.model import Address, FieldChange, SecretRef
    from declarative_conns.core.operations import (
        Create,
        Delete,
        DeleteReason,
        Drift,
        Plan,
        Reencrypt,
        Summary,
        Update,
    )
    from declarative_conns.errors import (
        ApplyInterrupted,
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
    from declarative_conns.restoring import plan_restore, restore
    from declarative_conns.saved_plans import load_plan, save_plan
    from declarative_conns.targets.base import Target
    from declarative_conns.targets.discovery import DatabaseSettings, resolve_target
    from declarative_conns.workspace import Workspace


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `dconn --version` stays fast."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    """List the public API for completion, though most of it is not imported yet."""
    return sorted(set(globals()) | set(__all__))
