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
    "DatabaseError": "declarative_conns.errors",
    "DconnError": "declarative_conns.errors",
    "DecryptionError": "declarative_conns.errors",
    "DesiredConnection": "declarative_conns.config.loader",
    "DesiredObject": "declarative_conns.config.loader",
    "DesiredState": "declarative_conns.config.loader",
    "ApiError": "declarative_conns.targets.api.client",
    "ApplyFailed": "declarative_conns.errors",
    "Finding": "declarative_conns.config.typecheck",
    "InputError": "declarative_conns.errors",
    "Plan": "declarative_conns.core.operations",
    "PlanIsStale": "declarative_conns.errors",
    "PlannedRun": "declarative_conns.api",
    "SecretError": "declarative_conns.errors",
    "SecretRef": "declarative_conns.core.model",
    "StateError": "declarative_conns.errors",
    "Target": "declarative_conns.targets.base",
    "TargetError": "declarative_conns.errors",
    "ValidationFailed": "declarative_conns.errors",
    "Workspace": "declarative_conns.api",
    "apply": "declarative_conns.api",
    "check_types": "declarative_conns.config.typecheck",
    "desired_from_dicts": "declarative_conns.config.loader",
    "load": "declarative_conns.api",
    "load_plan": "declarative_conns.saved_plans",
    "plan": "declarative_conns.api",
    "resolve_target": "declarative_conns.targets.discovery",
    "save_plan": "declarative_conns.saved_plans",
}

__all__ = [
    "Address",
    "ApiError",
    "ApplyFailed",
    "ApplyInterrupted",
    "ApplyRefused",
    "DatabaseError",
    "DconnError",
    "DecryptionError",
    "DesiredConnection",
    "DesiredObject",
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
    "load_plan",
    "plan",
    "resolve_target",
    "save_plan",
]

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun, Workspace, apply, load, plan
    from declarative_conns.config.loader import (
        DesiredConnection,
        DesiredObject,
        DesiredState,
        desired_from_dicts,
    )
    from declarative_conns.config.typecheck import Finding, check_types
    from declarative_conns.core.model import Address, SecretRef
    from declarative_conns.core.operations import Plan
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
    from declarative_conns.saved_plans import load_plan, save_plan
    from declarative_conns.targets.base import Target
    from declarative_conns.targets.discovery import resolve_target


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `dconn --version` stays fast."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    """List the public API for completion, though most of it is not imported yet."""
    return sorted(set(globals()) | set(__all__))
