"""dconn: manage Apache Airflow connections declaratively, Terraform-style.

The library API (the CLI is a thin layer on it): `load`, `plan`, `apply`, `Workspace`,
`resolve_target` and the `DconnError` hierarchy. Heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DconnError",
    "PlannedRun",
    "Workspace",
    "__version__",
    "apply",
    "load",
    "plan",
    "resolve_target",
]

if TYPE_CHECKING:
    from .api import PlannedRun, Workspace, apply, load, plan
    from .errors import DconnError
    from .target import resolve_target


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `dconn --version` stays fast."""
    if name in ("PlannedRun", "Workspace", "apply", "load", "plan"):
        from . import api

        return getattr(api, name)
    if name == "DconnError":
        from .errors import DconnError

        return DconnError
    if name == "resolve_target":
        from .target import resolve_target

        return resolve_target
    raise AttributeError(name)
