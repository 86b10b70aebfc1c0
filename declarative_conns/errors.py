"""Errors a user can act on: each carries a message naming what, where and what to do.

Messages never contain secret values; callers pass names and references, not values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from declarative_conns.config.findings import Finding


class DconnError(Exception):
    """Raise for any failure the user can fix; the CLI prints it as one ``Error:`` line."""


class InputError(DconnError):
    """Raise when a configuration or input file is malformed or invalid."""


class ValidationFailed(InputError):
    """Raise when the desired state breaks the schema or the rules; carries every problem found.

    `findings` holds every problem as data (warnings and notes found alongside included);
    `problems` the errors among them as `file: path: message` lines, which the message lists.
    """

    def __init__(self, problems: Sequence[str | Finding]) -> None:
        from declarative_conns.config.findings import Finding

        self.findings: tuple[Finding, ...] = tuple(
            Finding(None, "", p) if isinstance(p, str) else p for p in problems
        )
        errors = [f for f in self.findings if f.severity == "error"]
        self.problems = [str(f) for f in errors]
        if len(errors) == 1 and errors[0].file is not None and not errors[0].path:
            # One file that cannot be read at all (a TOML syntax error): one line says it.
            super().__init__(self.problems[0])
            return
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"the configuration has {count} {noun}:\n  " + "\n  ".join(self.problems))


class ProjectError(InputError):
    """Raise when dconn.toml cannot be found or read, or an environment names a missing layer."""


class UnknownEnvironment(ProjectError):
    """Raise when the environment picked is not in dconn.toml, or none is picked among several."""


class SecretError(DconnError):
    """Raise when a secret reference cannot be resolved."""


class TargetError(DconnError):
    """Raise when the target database or its Fernet key cannot be found or used."""


class DatabaseError(DconnError):
    """Raise when the database cannot be reached, read or written."""


class DecryptionError(DconnError):
    """Raise when stored rows cannot be decrypted with any key of the Fernet key ring."""


class StateError(DconnError):
    """Raise when the state file is corrupt, foreign or cannot be written."""


class PlanIsStale(DconnError):
    """Raise when the database or a secret changed between plan and apply."""


class ApplyInterrupted(DconnError):
    """Raise when an apply is interrupted after its changes were committed (the message says so)."""


class ApplyRefused(DconnError):
    """Raise when apply is not approved or cannot ask for approval."""


class ApplyFailed(DconnError):
    """Raise when an apply on a target without transactions stopped part-way (the message says what was written)."""
